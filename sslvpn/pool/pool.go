// Package pool hands out client addresses of one SSL-VPN server.
//
// Two topologies, as OpenVPN names them:
//
//	subnet  the server takes the pool's first host address; each client one host address, the pool's netmask
//	        and the server as gateway (10.8.0.0/24: server 10.8.0.1, clients 10.8.0.2 … 10.8.0.254)
//	net30   each client a /30 of its own: the client the third address, its point-to-point peer the second; the
//	        first /30 is the server's (10.8.0.0/24: server 10.8.0.1, clients 10.8.0.6/.5, 10.8.0.10/.9 …)
//
// A user who disconnects keeps their address for a grace period, so a reconnect (a laptop waking up, a client
// restarting) gets the same address back; only after it does the address go to others, as the cloud services
// release a client's resources some minutes after it disconnects. A pool whose every address is in use or held is
// exhausted. A Pool is safe for concurrent use.
package pool

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// ErrExhausted means every address is in use.
var ErrExhausted = errors.New("pool: address pool exhausted")

// Topology is how addresses are handed out.
type Topology string

const (
	Subnet Topology = "subnet"
	Net30  Topology = "net30"
)

// Lease is the address a client got.
type Lease struct {
	Addr    netip.Addr   // the client's address
	Peer    netip.Addr   // net30: the client's point-to-point peer; subnet: the server (the gateway)
	Netmask netip.Prefix // subnet: the pool; net30: the client's /30
	slot    int
}

// Pool is one server's address pool.
type Pool struct {
	prefix   netip.Prefix
	topology Topology
	grace    time.Duration
	now      func() time.Time

	mu    sync.Mutex
	slots []slot
	byKey map[string]int // user → slot held for them or last used by them
}

type slot struct {
	inUse    bool
	owner    string    // the user it belongs to while in use or held
	heldTill time.Time // after a release: the owner's claim ends then
}

// New returns a pool over prefix (IPv4, at most 2^24 addresses).
func New(prefix netip.Prefix, topology Topology, grace time.Duration) (*Pool, error) {
	if !prefix.Addr().Is4() || prefix.Masked() != prefix {
		return nil, fmt.Errorf("pool: %s is not an IPv4 network", prefix)
	}
	if prefix.Bits() < 8 {
		return nil, fmt.Errorf("pool: %s is larger than a /8", prefix)
	}
	p := &Pool{prefix: prefix, topology: topology, grace: grace, now: time.Now, byKey: map[string]int{}}
	n := p.capacity()
	if n <= 0 {
		return nil, fmt.Errorf("pool: %s holds no client in %s topology", prefix, topology)
	}
	p.slots = make([]slot, n)
	return p, nil
}

func (p *Pool) size() int { return 1 << (32 - p.prefix.Bits()) }

func (p *Pool) capacity() int {
	switch p.topology {
	case Net30:
		return p.size()/4 - 1
	default:
		return p.size() - 3
	}
}

// Capacity is how many clients the pool holds.
func (p *Pool) Capacity() int { return len(p.slots) }

// Server is the server's own address in the pool (the TUN device's address).
func (p *Pool) Server() netip.Addr { return p.prefix.Addr().Next() }

// Prefix is the whole pool, routed to the server's TUN device.
func (p *Pool) Prefix() netip.Prefix { return p.prefix }

// Topology is the pool's topology.
func (p *Pool) Topology() Topology { return p.topology }

func (p *Pool) lease(i int) Lease {
	base := p.prefix.Addr()
	if p.topology == Net30 {
		net := addN(base, 4*(i+1))
		return Lease{Addr: addN(net, 2), Peer: addN(net, 1), Netmask: netip.PrefixFrom(net, 30), slot: i}
	}
	return Lease{Addr: addN(base, i+2), Peer: p.Server(), Netmask: p.prefix, slot: i}
}

func addN(a netip.Addr, n int) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Acquire gives user an address: the one held for them if any, else the lowest one neither in use nor held for
// someone else. A user with a session already gets a second address.
func (p *Pool) Acquire(user string) (Lease, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if i, ok := p.byKey[user]; ok {
		if s := &p.slots[i]; !s.inUse && s.owner == user {
			s.inUse, s.heldTill = true, time.Time{}
			return p.lease(i), nil
		}
	}
	free, held := -1, 0
	for i := range p.slots {
		s := &p.slots[i]
		if s.inUse {
			continue
		}
		if s.owner == "" || now.After(s.heldTill) {
			free = i
			break
		}
		held++
	}
	if free < 0 {
		return Lease{}, fmt.Errorf("%w: %d addresses in %s, %d of them held for disconnected users for up to %s",
			ErrExhausted, len(p.slots), p.prefix, held, p.grace)
	}
	s := &p.slots[free]
	if s.owner != "" && p.byKey[s.owner] == free {
		delete(p.byKey, s.owner)
	}
	*s = slot{inUse: true, owner: user}
	p.byKey[user] = free
	return p.lease(free), nil
}

// Release gives a lease back; the address stays held for its user for the grace period.
func (p *Pool) Release(l Lease) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l.slot < 0 || l.slot >= len(p.slots) || !p.slots[l.slot].inUse {
		return
	}
	s := &p.slots[l.slot]
	s.inUse = false
	s.heldTill = p.now().Add(p.grace)
}

// InUse is how many leases are out.
func (p *Pool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.slots {
		if s.inUse {
			n++
		}
	}
	return n
}
