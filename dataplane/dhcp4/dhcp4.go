// Package dhcp4 keeps a DHCPv4 lease on one interface, as RFC 2131's client does: discover and request, renew
// from T1 until it runs out (the renewal is broadcast, so it is also the rebinding of T2), start over when the lease runs out; and reports every lease as it changes. It programs
// nothing itself: the caller puts the address, the default route and the name servers in place, and takes them
// away when the report says the lease is gone.
package dhcp4

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// Lease is what the server gave: the interface's address and what the box needs around it.
type Lease struct {
	Address  netip.Prefix
	Router   netip.Addr   // the first router offered; zero when none was
	DNS      []netip.Addr // name servers, in the server's order
	Domain   string
	Server   netip.Addr // the server that granted it
	Obtained time.Time
	Duration time.Duration // 0: infinite
	Renew    time.Duration // T1, from Obtained
}

// Equal reports whether two leases put the same things on the box (a renewal that changes nothing is not worth a
// log line).
func (l *Lease) Equal(o *Lease) bool {
	if l == nil || o == nil {
		return l == o
	}
	return l.Address == o.Address && l.Router == o.Router && slices.Equal(l.DNS, o.DNS) && l.Domain == o.Domain
}

func (l *Lease) String() string {
	return fmt.Sprintf("%s router %v dns %v from %s for %s", l.Address, l.Router, l.DNS, l.Server, l.Duration)
}

// exchange is the protocol on the wire, the part the tests replace.
type exchange interface {
	Request(ctx context.Context, modifiers ...dhcpv4.Modifier) (*nclient4.Lease, error)
	Renew(ctx context.Context, lease *nclient4.Lease, modifiers ...dhcpv4.Modifier) (*nclient4.Lease, error)
	Close() error
}

// Client keeps one interface's lease. Its zero value is not usable: fill the fields, then Run.
type Client struct {
	Interface string
	HostName  string // sent as option 12, so that the server's lease list names the box; "" sends none
	Log       *slog.Logger
	// Report is called with each lease obtained or renewed (a renewal moves its expiry, which the address's
	// lifetime follows), and with nil when the lease is lost. Calls come from Run's goroutine, one at a time.
	Report func(*Lease)

	open func(ifname string) (exchange, error) // nil: the real one, a raw socket on the interface
	// Backoff bounds the wait between attempts to get a lease; a real network needs no other than the default.
	minWait, maxWait time.Duration
}

func (c *Client) dial() (exchange, error) {
	if c.open != nil {
		return c.open(c.Interface)
	}
	// A short timeout and few retries per attempt: the loop below backs off between attempts, so that a cable
	// plugged in later is noticed within a minute.
	return openRaw(c.Interface, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(2))
}

// Run keeps a lease until ctx ends. It leaves the lease in place when it returns (a daemon restarting must not
// take the box off the network); the caller removes what it put on the interface if it no longer wants it.
func (c *Client) Run(ctx context.Context) {
	minWait, maxWait := c.minWait, c.maxWait
	if minWait == 0 {
		minWait, maxWait = 2*time.Second, time.Minute
	}
	var (
		cur    *Lease
		raw    *nclient4.Lease
		ex     exchange
		failed int
	)
	defer func() {
		if ex != nil {
			_ = ex.Close()
		}
	}()
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	backoff := func() time.Duration {
		d := minWait << min(failed, 10)
		d = min(d, maxWait)
		return d/2 + rand.N(d/2+1) // jitter, so that boxes rebooted together do not ask together
	}
	var opts []dhcpv4.Modifier
	if c.HostName != "" {
		opts = append(opts, dhcpv4.WithOption(dhcpv4.OptHostName(c.HostName)))
	}
	for ctx.Err() == nil {
		if ex == nil {
			var err error
			if ex, err = c.dial(); err != nil {
				c.Log.Warn("DHCP: cannot open the interface", "interface", c.Interface, "err", err)
				failed++
				if !wait(backoff()) {
					return
				}
				continue
			}
		}
		if cur == nil {
			l, err := ex.Request(ctx, opts...)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if failed == 0 || failed%10 == 0 {
					c.Log.Info("DHCP: no lease yet; asking again", "interface", c.Interface, "err", err)
				}
				failed++
				if !wait(backoff()) {
					return
				}
				continue
			}
			next, err := leaseOf(l)
			if err != nil {
				c.Log.Warn("DHCP: unusable lease; asking again", "interface", c.Interface, "err", err)
				failed++
				if !wait(backoff()) {
					return
				}
				continue
			}
			failed, raw, cur = 0, l, next
			c.Log.Info("DHCP: lease", "interface", c.Interface, "lease", cur.String())
			c.Report(cur)
		}
		if cur.Duration == 0 {
			<-ctx.Done()
			return
		}
		// Renew from T1; keep trying, at half the time left each time (RFC 2131 4.4.5), until the lease ends.
		expires := cur.Obtained.Add(cur.Duration)
		if !wait(time.Until(cur.Obtained.Add(cur.Renew))) {
			return
		}
		for cur != nil {
			rctx, cancel := context.WithDeadline(ctx, expires)
			l, err := ex.Renew(rctx, raw, opts...)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				next, perr := leaseOf(l)
				if perr == nil {
					raw = l
					if !next.Equal(cur) {
						c.Log.Info("DHCP: lease changed", "interface", c.Interface, "lease", next.String())
					}
					cur = next
					c.Report(cur)
					break
				}
				err = perr
			}
			var nak *nclient4.ErrNak
			left := time.Until(expires)
			if errors.As(err, &nak) || left <= 0 {
				c.Log.Warn("DHCP: lease lost", "interface", c.Interface, "address", cur.Address, "err", err)
				cur, raw = nil, nil
				c.Report(nil)
				break
			}
			if !wait(max(left/2, min(left, minWait))) {
				return
			}
		}
	}
}

// leaseOf reads what the box needs from the server's ACK.
func leaseOf(l *nclient4.Lease) (*Lease, error) {
	ack := l.ACK
	if ack == nil {
		return nil, errors.New("no ACK")
	}
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || !ip.IsGlobalUnicast() {
		return nil, fmt.Errorf("address %v is not a host address", ack.YourIPAddr)
	}
	mask := ack.SubnetMask()
	if mask == nil {
		mask = ack.YourIPAddr.DefaultMask() // the option is optional: the address's class says the rest
	}
	bits, size := mask.Size()
	if size != 32 || bits == 0 {
		return nil, fmt.Errorf("subnet mask %v is not a prefix", net.IP(mask))
	}
	out := &Lease{Address: netip.PrefixFrom(ip, bits), Domain: ack.DomainName(), Obtained: l.CreationTime}
	if out.Obtained.IsZero() {
		out.Obtained = time.Now()
	}
	for _, r := range ack.Router() {
		if a, ok := netip.AddrFromSlice(r.To4()); ok && a.IsGlobalUnicast() && out.Address.Contains(a) {
			out.Router = a
			break
		}
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok && !a.IsUnspecified() {
			out.DNS = append(out.DNS, a)
		}
	}
	if s, ok := netip.AddrFromSlice(ack.ServerIdentifier().To4()); ok {
		out.Server = s
	}
	if d := ack.IPAddressLeaseTime(0); d != 0 && d != 0xffffffff*time.Second {
		out.Duration = d
		out.Renew = d / 2
		if t1 := ack.IPAddressRenewalTime(0); t1 > 0 && t1 < d {
			out.Renew = t1
		}
	}
	return out, nil
}
