package dhcp4

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// script is a DHCP server in memory: each Request and Renew takes the next answer of its list (the last one
// repeats), an error or an ACK.
type script struct {
	mu       sync.Mutex
	requests []answer
	renews   []answer
	asked    map[string]int
}

type answer struct {
	ack *dhcpv4.DHCPv4
	err error
}

func (s *script) next(kind string, list *[]answer) (*nclient4.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked[kind]++
	a := (*list)[0]
	if len(*list) > 1 {
		*list = (*list)[1:]
	}
	if a.err != nil {
		return nil, a.err
	}
	return &nclient4.Lease{Offer: a.ack, ACK: a.ack, CreationTime: time.Now()}, nil
}

func (s *script) Request(context.Context, ...dhcpv4.Modifier) (*nclient4.Lease, error) {
	return s.next("request", &s.requests)
}

func (s *script) Renew(context.Context, *nclient4.Lease, ...dhcpv4.Modifier) (*nclient4.Lease, error) {
	return s.next("renew", &s.renews)
}

func (s *script) Close() error { return nil }

func ack(t testing.TB, ip string, lease time.Duration, dns ...string) *dhcpv4.DHCPv4 {
	t.Helper()
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.ParseIP(ip)),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithRouter(net.ParseIP("192.0.2.1")),
		dhcpv4.WithServerIP(net.ParseIP("192.0.2.1")),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("192.0.2.1"))),
		dhcpv4.WithLeaseTime(uint32(lease / time.Second)),
	}
	var servers []net.IP
	for _, d := range dns {
		servers = append(servers, net.ParseIP(d))
	}
	if len(servers) > 0 {
		mods = append(mods, dhcpv4.WithDNS(servers...))
	}
	m, err := dhcpv4.New(mods...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestLeaseKeptRenewedAndLost drives the client through a server that first does not answer, then grants a
// 2-second lease, renews it unchanged (reported: its expiry moved), renews it with other name servers, then
// refuses (NAK): the lease is reported lost and a new one asked for at once.
func TestLeaseKeptRenewedAndLost(t *testing.T) {
	s := &script{asked: map[string]int{},
		requests: []answer{{err: errors.New("timeout")}, {ack: ack(t, "192.0.2.10", 2*time.Second, "192.0.2.53")},
			{ack: ack(t, "192.0.2.11", time.Hour, "192.0.2.53")}},
		renews: []answer{{ack: ack(t, "192.0.2.10", 2*time.Second, "192.0.2.53")}, {ack: ack(t, "192.0.2.10", 2*time.Second, "192.0.2.54")},
			{err: &nclient4.ErrNak{Nak: ack(t, "0.0.0.0", 0)}}},
	}
	reports := make(chan *Lease, 10)
	c := &Client{Interface: "eth0", Log: slog.New(slog.DiscardHandler), Report: func(l *Lease) { reports <- l },
		open: func(string) (exchange, error) { return s, nil }, minWait: 10 * time.Millisecond, maxWait: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	next := func() *Lease {
		t.Helper()
		select {
		case l := <-reports:
			return l
		case <-time.After(5 * time.Second):
			t.Fatal("no report")
			return nil
		}
	}
	l := next()
	if l == nil || l.Address != netip.MustParsePrefix("192.0.2.10/24") || l.Router != netip.MustParseAddr("192.0.2.1") ||
		len(l.DNS) != 1 || l.DNS[0] != netip.MustParseAddr("192.0.2.53") || l.Duration != 2*time.Second || l.Renew != time.Second {
		t.Fatalf("first lease: %v", l)
	}
	if l = next(); l == nil || l.DNS[0] != netip.MustParseAddr("192.0.2.53") || l.Address != netip.MustParsePrefix("192.0.2.10/24") {
		t.Fatalf("the unchanged renewal: %v", l)
	}
	if l = next(); l == nil || l.DNS[0] != netip.MustParseAddr("192.0.2.54") {
		t.Fatalf("after the second renewal, want the new name server: %v", l)
	}
	if l = next(); l != nil {
		t.Fatalf("after the NAK, want the lease lost: %v", l)
	}
	if l = next(); l == nil || l.Address != netip.MustParsePrefix("192.0.2.11/24") {
		t.Fatalf("after the loss, want a new lease: %v", l)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.asked["request"] != 3 || s.asked["renew"] != 3 {
		t.Errorf("asked %v, want 3 requests and 3 renewals", s.asked)
	}
}

// TestUnusableAck: an ACK without a host address is not a lease.
func TestUnusableAck(t *testing.T) {
	if _, err := leaseOf(&nclient4.Lease{ACK: ack(t, "0.0.0.0", time.Hour)}); err == nil {
		t.Error("an ACK of 0.0.0.0 made a lease")
	}
	l, err := leaseOf(&nclient4.Lease{ACK: ack(t, "10.1.2.3", 0)})
	if err != nil || l.Duration != 0 || l.Address.Bits() != 24 {
		t.Errorf("an infinite lease: %v, %v", l, err)
	}
}
