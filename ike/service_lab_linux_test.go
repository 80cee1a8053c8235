package ike

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"toride/dataplane/nft"
	"toride/ike/charon"
	"toride/tests/lab"
)

// Both tunnels come up from one Set, LAN-to-LAN traffic flows, a second identical Set changes nothing, a removed
// tunnel is unloaded and its SAs are gone on both sides, and it comes back when re-added.
func TestLabBringUpIKEv2(t *testing.T) { testBringUp(t, 2) }

// The same with IKEv1 main mode (a probe CHILD_SA besides the LAN one).
func TestLabBringUpIKEv1(t *testing.T) { testBringUp(t, 1) }

func testBringUp(t *testing.T, version int) {
	tp := newTopo(t, labOpts{})
	fw, err := nft.New(nft.Options{NetnsPath: "/run/netns/" + tp.App.Name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fw.Close() })
	s := tp.startService(t, func(o *Opts) { o.Firewall = fw })
	ctx := lab.Within(t, 90*time.Second)
	cfg := tp.labConfig(version)

	start := time.Now()
	if err := s.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	cs := tp.waitStatus(ctx, t, s, "both tunnels up, traffic on the preferred one", upOnPreferred)
	upAfter := time.Since(start)
	tp.WaitPing(ctx, t)
	t.Logf("IKEv%d: Set → both tunnels up in %v, → LAN ping in %v; active tunnel %d",
		version, upAfter.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), cs.ActiveTunnel)
	if st := s.Status(); st.Backend != charon.BackendLibipsec || st.Capabilities.ESP {
		t.Errorf("backend %s with ESP=%v; this kernel has no ESP", st.Backend, st.Capabilities.ESP)
	}
	for _, tn := range cs.Tunnels {
		if tn.IKESA != "ESTABLISHED" || tn.ChildSA != "INSTALLED" || tn.IKEAlgorithms == "" {
			t.Errorf("tunnel %+v", tn)
		}
	}

	// The firewall admits IKE and ESP from both gateways (and the tunnels work through it).
	table := tp.App.MustRun("nft", "list", "table", "inet", "toride")
	for _, want := range []string{"jump ike", "ip saddr 203.0.113.2 udp dport 4500", "ip saddr 203.0.113.6 meta l4proto esp"} {
		if !strings.Contains(table, want) {
			t.Errorf("firewall table lacks %q:\n%s", want, table)
		}
	}

	// Idempotent: the same configuration again keeps every SA.
	before := saIDs(t, ctx, s)
	if err := s.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if after := saIDs(t, ctx, s); !slices.Equal(before, after) {
		t.Errorf("second Set changed SAs: %v → %v", before, after)
	}

	// Remove tunnel 2: unloaded, terminated on our side and, by the DELETE, on the gateway's.
	one := cfg.Clone()
	delete(one.Connections["aws"].Tunnels, "tunnel2")
	if err := s.Set(ctx, one); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitFor(ctx, 200*time.Millisecond, func() error {
		sas, err := gatewaySAs(ctx, tp.GWs[1])
		if err != nil {
			return err
		}
		if len(sas) != 0 {
			return fmt.Errorf("gateway 2 still has %d IKE SAs", len(sas))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if names := connNames(t, ctx, s); !slices.Equal(names, []string{"aws-t1"}) {
		t.Errorf("loaded connections after removal: %v", names)
	}
	tp.WaitPing(ctx, t)

	// And back.
	if err := s.Set(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	tp.waitStatus(ctx, t, s, "both tunnels up again", bothUp)
}

func saIDs(t *testing.T, ctx context.Context, s *Service) []string {
	t.Helper()
	c := dialEngineCharon(t, ctx, s)
	defer c.Close()
	sas, err := c.ListSAs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, sa := range sas {
		ids = append(ids, fmt.Sprintf("%s#%d", sa.Name, sa.UniqueID))
		for _, ch := range sa.ChildSAs {
			ids = append(ids, fmt.Sprintf("%s{%d}", ch.Name, ch.UniqueID))
		}
	}
	slices.Sort(ids)
	return ids
}

func connNames(t *testing.T, ctx context.Context, s *Service) []string {
	t.Helper()
	c := dialEngineCharon(t, ctx, s)
	defer c.Close()
	names, err := c.ListConns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}
