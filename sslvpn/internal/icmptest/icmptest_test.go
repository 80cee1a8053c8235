package icmptest

import (
	"net/netip"
	"testing"
)

func TestEchoRoundTrip(t *testing.T) {
	client, gw := netip.MustParseAddr("10.8.0.2"), netip.MustParseAddr("10.8.0.1")
	req := EchoRequest(client, gw, 7, 56)
	if Checksum(req[:20]) != 0 || Checksum(req[20:]) != 0 {
		t.Fatal("request checksums do not verify")
	}
	reply, ok := EchoReply(req, gw)
	if !ok {
		t.Fatal("no reply to a request for gw")
	}
	if reply[20] != 0 || netip.AddrFrom4([4]byte(reply[12:16])) != gw || netip.AddrFrom4([4]byte(reply[16:20])) != client {
		t.Fatalf("reply type %d from %v to %v", reply[20], reply[12:16], reply[16:20])
	}
	if Checksum(reply[:20]) != 0 || Checksum(reply[20:]) != 0 || string(reply[24:]) != string(req[24:]) {
		t.Fatal("reply checksums or identifier, sequence and data are wrong")
	}
	if _, ok := EchoReply(req, client); ok {
		t.Fatal("answered a request addressed to someone else")
	}
	if _, ok := EchoReply(reply, client); ok {
		t.Fatal("answered an echo reply")
	}
	if _, ok := EchoReply(req[:27], gw); ok {
		t.Fatal("answered a truncated request")
	}
}
