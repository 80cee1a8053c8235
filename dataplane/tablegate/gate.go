// Package tablegate decides which destinations reach charon's routing table. kernel-libipsec installs a route
// into its TUN device (table 220, looked up by charon's rule of priority 220) for every outbound policy, whatever
// charon's install_routes says; a CHILD_SA of 0.0.0.0/0, which dynamic routing needs, would draw all of the box's
// traffic into it, IKE's aside. A Gate puts two kinds of rules before charon's:
//
//   - one rule per chosen destination, "to PREFIX lookup 220" (priority PassPriority): these reach charon's routes;
//   - one rule for everything else, "lookup main" (priority GuardPriority): the rest never sees table 220.
//
// So the engine routes the remote networks, what BGP learned and the far inside addresses into the tunnels, and
// nothing else. A destination with no route in table 220 (its CHILD_SA is down) falls through to the main table,
// as it does without a gate.
//
// It owns only the rules at those two priorities, and removes them all when given nothing.
package tablegate

import (
	"errors"
	"net/netip"
)

// The rules' priorities, just before charon's (routing_table_prio, 220 by default), and charon's table.
const (
	PassPriority  = 218
	GuardPriority = 219
	CharonTable   = 220
)

// Gate is the set of destinations allowed into charon's table in one network namespace. Safe for concurrent use.
type Gate struct{ k kernel }

// kernel is the rules of one namespace; netlink's in gate_linux.go, a fake in tests.
type kernel interface {
	// rules returns the namespace's rules at PassPriority (their destinations) and whether the guard is there,
	// per address family (4 or 6).
	rules() (pass []netip.Prefix, guard map[int]bool, err error)
	addPass(dst netip.Prefix) error
	delPass(dst netip.Prefix) error
	setGuard(family int, on bool) error
	close()
}

// Set makes the allowed destinations exactly want. With any destination of a family the guard of that family is
// in place; with none of either, no rule of the gate is left.
func (g *Gate) Set(want []netip.Prefix) error {
	have, guard, err := g.k.rules()
	if err != nil {
		return err
	}
	wantSet := map[netip.Prefix]bool{}
	families := map[int]bool{}
	for _, p := range want {
		p = p.Masked()
		wantSet[p] = true
		families[family(p)] = true
	}
	var errs []error
	// The guard first: while the pass rules are being added, nothing else may reach table 220.
	for _, f := range []int{4, 6} {
		if families[f] && !guard[f] {
			errs = append(errs, g.k.setGuard(f, true))
		}
	}
	haveSet := map[netip.Prefix]bool{}
	for _, p := range have {
		haveSet[p] = true
		if !wantSet[p] {
			errs = append(errs, g.k.delPass(p))
		}
	}
	for p := range wantSet {
		if !haveSet[p] {
			errs = append(errs, g.k.addPass(p))
		}
	}
	for _, f := range []int{4, 6} {
		if !families[f] && guard[f] {
			errs = append(errs, g.k.setGuard(f, false))
		}
	}
	return errors.Join(errs...)
}

// Close releases the netlink socket; the rules stay (Set(nil) removes them).
func (g *Gate) Close() { g.k.close() }

func family(p netip.Prefix) int {
	if p.Addr().Unmap().Is4() {
		return 4
	}
	return 6
}
