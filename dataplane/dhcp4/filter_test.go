package dhcp4

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/bpf"
)

// ipv4 builds an IPv4 packet of protocol proto with ihl 32-bit words of header, the flags/fragment field frag, and
// a transport header whose destination port (bytes 2–3) is dport.
func ipv4(proto byte, ihl int, frag uint16, dport uint16) []byte {
	p := make([]byte, ihl*4+8+20)
	p[0] = 0x40 | byte(ihl)
	binary.BigEndian.PutUint16(p[6:], frag)
	p[9] = proto
	binary.BigEndian.PutUint16(p[ihl*4+2:], dport)
	return p
}

func TestReplyFilterPassesDHCPRepliesAlone(t *testing.T) {
	vm, err := bpf.NewVM(mustDisassemble(t, replyFilter))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		pkt  []byte
		pass bool
	}{
		{"an offer to port 68", ipv4(17, 5, 0, 68), true},
		{"an offer with IP options", ipv4(17, 6, 0, 68), true},
		{"an offer with don't-fragment set", ipv4(17, 5, 0x4000, 68), true},
		{"the first fragment of an offer", ipv4(17, 5, 0x2000, 68), true},
		{"OpenVPN over UDP", ipv4(17, 5, 0, 1194), false},
		{"DTLS on 443", ipv4(17, 5, 0, 443), false},
		{"IKE", ipv4(17, 5, 0, 500), false},
		{"TCP to port 68", ipv4(6, 5, 0, 68), false},
		{"ESP", ipv4(50, 5, 0, 68), false},
		{"a later fragment whose bytes read as port 68", ipv4(17, 5, 0x0010, 68), false},
		{"a request to a server's port 67", ipv4(17, 5, 0, 67), false},
	} {
		n, err := vm.Run(c.pkt)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if (n > 0) != c.pass {
			t.Errorf("%s: filter kept %d bytes, want pass=%v", c.name, n, c.pass)
		}
	}
}

func mustDisassemble(t *testing.T, raw []bpf.RawInstruction) []bpf.Instruction {
	prog, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("the filter does not disassemble")
	}
	return prog
}
