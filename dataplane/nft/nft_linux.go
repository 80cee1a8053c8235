package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

type netlinkBackend struct {
	nsFD int // -1: the caller's namespace
}

func newBackend(netnsPath string) (backend, error) {
	b := &netlinkBackend{nsFD: -1}
	if netnsPath != "" {
		fd, err := unix.Open(netnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("%w: open network namespace %s: %w", ErrNFT, netnsPath, err)
		}
		b.nsFD = fd
	}
	return b, nil
}

func (b *netlinkBackend) conn() (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if b.nsFD >= 0 {
		opts = append(opts, nftables.WithNetNSFd(b.nsFD))
	}
	return nftables.New(opts...)
}

func (b *netlinkBackend) close() error {
	if b.nsFD >= 0 {
		err := unix.Close(b.nsFD)
		b.nsFD = -1
		return err
	}
	return nil
}

func (b *netlinkBackend) remove(name string) error {
	c, err := b.conn()
	if err != nil {
		return err
	}
	t := &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
	// Adding first makes the delete valid whether or not the table exists; one batch, so never half-done.
	c.AddTable(t)
	c.DelTable(t)
	return c.Flush()
}

func (b *netlinkBackend) apply(name string, st state) error {
	c, err := b.conn()
	if err != nil {
		return err
	}
	t := &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	accept := nftables.ChainPolicyAccept
	input := c.AddChain(&nftables.Chain{
		Name:     "input",
		Table:    t,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookInput,
		Priority: nftables.ChainPriorityFilter,
		Policy:   &accept,
	})
	for _, owner := range st.owners() {
		ch := c.AddChain(&nftables.Chain{Name: owner, Table: t})
		c.AddRule(&nftables.Rule{Table: t, Chain: input, Exprs: []expr.Any{
			&expr.Verdict{Kind: expr.VerdictJump, Chain: owner},
		}})
		for _, r := range st.rules[owner] {
			for _, exprs := range ruleExprs(r) {
				nr := &nftables.Rule{Table: t, Chain: ch, Exprs: exprs}
				if r.Comment != "" {
					nr.UserData = userdata.AppendString(nil, userdata.TypeComment, r.Comment)
				}
				c.AddRule(nr)
			}
		}
	}
	if clamps := st.allClamps(); len(clamps) > 0 {
		// Mangle priority: before any filter sees the SYN, as iptables' TCPMSS did.
		fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityMangle, Policy: &accept})
		for _, cl := range clamps {
			for _, key := range []expr.MetaKey{expr.MetaKeyOIFNAME, expr.MetaKeyIIFNAME} {
				c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: clampExprs(key, cl),
					UserData: userdata.AppendString(nil, userdata.TypeComment, fmt.Sprintf("toride: MSS %d on %s", cl.MSS, cl.Interface))})
			}
		}
	}
	if masqs := st.allMasquerades(); len(masqs) > 0 {
		post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
		for _, mq := range masqs {
			comment := userdata.AppendString(nil, userdata.TypeComment, fmt.Sprintf("toride: masquerade %s", mq.Source))
			// An exempt destination ends the chain for the packet: no NAT.
			for _, ex := range mq.Exempt {
				e := append(matchSource(mq.Source), matchAddr(ex, 16)...)
				e = append(e, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept})
				c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: e, UserData: comment})
			}
			e := append(matchSource(mq.Source), &expr.Counter{}, &expr.Masq{})
			c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: e, UserData: comment})
		}
	}
	return c.Flush()
}

// clampExprs: meta KEY "IF" meta l4proto tcp tcp flags & (syn|rst) == syn tcp option maxseg size > MSS
// tcp option maxseg size set MSS.
func clampExprs(key expr.MetaKey, cl Clamp) []expr.Any {
	ifname := make([]byte, 16) // IFNAMSIZ, zero-padded: an exact name, not a prefix
	copy(ifname, cl.Interface)
	mss := binary.BigEndian.AppendUint16(nil, cl.MSS)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(ProtoTCP)}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x06}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x02}},
		&expr.Exthdr{DestRegister: 1, Type: 2, Offset: 2, Len: 2, Op: expr.ExthdrOpTcpopt},
		&expr.Cmp{Op: expr.CmpOpGt, Register: 1, Data: mss},
		&expr.Immediate{Register: 1, Data: mss},
		&expr.Exthdr{SourceRegister: 1, Type: 2, Offset: 2, Len: 2, Op: expr.ExthdrOpTcpopt},
		&expr.Counter{},
	}
}

// ruleExprs expands one Rule into kernel rules: one per (source, port) pair, so no sets are needed.
func ruleExprs(r Rule) [][]expr.Any {
	sources := r.Sources
	if len(sources) == 0 {
		sources = []netip.Prefix{{}} // any
	}
	ports := r.Ports
	if len(ports) == 0 {
		ports = []uint16{0} // any
	}
	var out [][]expr.Any
	for _, src := range sources {
		for _, port := range ports {
			var e []expr.Any
			if src.IsValid() {
				e = append(e, matchSource(src)...)
			}
			e = append(e,
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(r.Protocol)}},
			)
			if port != 0 {
				e = append(e,
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)},
				)
			}
			e = append(e, &expr.Counter{})
			kind := expr.VerdictAccept
			if r.Verdict == Drop {
				kind = expr.VerdictDrop
			}
			e = append(e, &expr.Verdict{Kind: kind})
			out = append(out, e)
		}
	}
	return out
}

// matchSource matches the network-layer source address against p, after checking the family (the table is inet:
// it sees IPv4 and IPv6).
func matchSource(p netip.Prefix) []expr.Any {
	if p.Addr().Is6() {
		return matchAddr(p, 8)
	}
	return matchAddr(p, 12)
}

// matchAddr matches the network-layer address at offset (IPv4: source 12, destination 16; IPv6: 8 and 24)
// against p, after checking the family.
func matchAddr(p netip.Prefix, offset uint32) []expr.Any {
	p = p.Masked()
	family := byte(unix.NFPROTO_IPV4)
	if p.Addr().Is6() {
		family = byte(unix.NFPROTO_IPV6)
	}
	addr := p.Addr().AsSlice()
	n := uint32(len(addr))
	mask := make([]byte, n)
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{family}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: n},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: mask, Xor: make([]byte, n)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr},
	}
}
