package dhcp4

import (
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// FuzzLeaseOf: whatever a server (or anyone on the segment) sends, reading a lease from it never panics, and a
// lease it gives has a host address and a router inside its network. Seeds: testdata/fuzz/FuzzLeaseOf.
func FuzzLeaseOf(f *testing.F) {
	f.Add(ack(f, "192.0.2.10", time.Hour, "192.0.2.53").ToBytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		l, err := leaseOf(&nclient4.Lease{ACK: m})
		if err != nil {
			return
		}
		if !l.Address.Addr().IsGlobalUnicast() || l.Router.IsValid() && !l.Address.Contains(l.Router) {
			t.Fatalf("lease %v from %x", l, b)
		}
	})
}
