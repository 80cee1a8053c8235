package ike

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"toride/ike/internal/vici"
	"toride/tests/cloudlab"
	"toride/tests/lab"
)

// The lab is tests/cloudlab: two cloud gateways with their own charons, a site LAN, a cloud LAN, optionally a NAT.
// The appliance namespace runs the engine under test.
type labOpts struct {
	behindNAT  bool          // the appliance's WAN is 192.168.100.2 behind a masquerading router
	inactivity time.Duration // the gateways close idle CHILD_SAs after this (0: never)
}

type topo struct{ *cloudlab.Topo }

func newTopo(t testing.TB, o labOpts) *topo {
	t.Helper()
	return &topo{cloudlab.New(t, cloudlab.Options{BehindNAT: o.behindNAT, Inactivity: o.inactivity})}
}

// gatewaySAs lists a gateway's SAs.
func gatewaySAs(ctx context.Context, g *cloudlab.Gateway) ([]vici.IKESA, error) {
	c, err := vici.Dial(ctx, g.Socket())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ListSAs(ctx)
}

// syncBuffer collects the engine's log for the test output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startService starts the engine in the appliance namespace.
func (tp *topo) startService(t testing.TB, extra func(*Opts)) *Service {
	t.Helper()
	dir, err := os.MkdirTemp("", "toride-ike-")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	opts := Opts{
		RunDir:         dir,
		NetnsPath:      "/run/netns/" + tp.App.Name,
		ResyncInterval: time.Second,
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if extra != nil {
		extra(&opts)
	}
	s, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- engine log ----\n%s---- appliance charon log ----\n%s", logs.String(), s.CharonLog())
		}
		s.Close()
		os.RemoveAll(dir)
	})
	return s
}

// labConfig is the appliance's configuration for the lab's two tunnels.
func (tp *topo) labConfig(version int) Config {
	local := netip.MustParseAddr(tp.LocalIP)
	c := &Connection{
		LocalNetworks:  []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")},
		RemoteNetworks: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/24")},
		Failover:       Failover{HoldDown: Duration(5 * time.Second)},
		Tunnels:        map[string]*Tunnel{},
	}
	for i := range 2 {
		psk := cloudlab.PSK1
		if i == 1 {
			psk = cloudlab.PSK2
		}
		c.Tunnels[fmt.Sprintf("tunnel%d", i+1)] = &Tunnel{
			LocalAddress:  local,
			LocalID:       tp.CGWID,
			RemoteAddress: netip.MustParseAddr(cloudlab.GWOutside[i]),
			PreSharedKey:  PSK(psk),
			InsideCIDR:    netip.MustParsePrefix(cloudlab.GWInside[i]),
			IKEVersion:    version,
			IKE:           Phase{Encryption: []Encryption{AES128}, Integrity: []Integrity{SHA2256}, DHGroups: []int{14}},
			ESP:           Phase{Encryption: []Encryption{AES128}, Integrity: []Integrity{SHA2256}, DHGroups: []int{14}},
		}
	}
	return Config{Connections: map[string]*Connection{"aws": c}}
}

// waitStatus waits until cond holds for the first connection's status; on timeout it prints the lab's state
// (while everything still runs) and fails.
func (tp *topo) waitStatus(ctx context.Context, t testing.TB, s *Service, what string, cond func(ConnectionStatus) error) ConnectionStatus {
	t.Helper()
	var cs ConnectionStatus
	err := lab.WaitFor(ctx, 100*time.Millisecond, func() error {
		st := s.Status()
		if len(st.Connections) == 0 {
			return fmt.Errorf("no connections in status (last error %q)", st.LastError)
		}
		cs = st.Connections[0]
		return cond(cs)
	})
	if err != nil {
		tp.Diagnose(t)
		t.Fatalf("waiting for %s: %v\nstatus: %+v", what, err, s.Status())
	}
	return cs
}

// waitCarriedBy waits until the site LAN's traffic has visibly gone out over tunnel want, the active one, and
// not over the other (cloudlab.CarriedBy).
func (tp *topo) waitCarriedBy(ctx context.Context, t testing.TB, s *Service, want int) {
	t.Helper()
	out := func(cs ConnectionStatus) []uint64 {
		var o []uint64
		for _, tn := range cs.Tunnels {
			o = append(o, tn.PacketsOut)
		}
		return o
	}
	start := out(s.Status().Connections[0])
	tp.waitStatus(ctx, t, s, fmt.Sprintf("LAN traffic out over tunnel %d", want+1), func(cs ConnectionStatus) error {
		if cs.ActiveTunnel != want {
			return fmt.Errorf("active tunnel %d", cs.ActiveTunnel)
		}
		return cloudlab.CarriedBy(start, out(cs), want)
	})
}

func bothUp(cs ConnectionStatus) error {
	for _, tn := range cs.Tunnels {
		if tn.State != "up" {
			return fmt.Errorf("%s is %s (ike %s, child %s, loss %.2f)", tn.Name, tn.State, tn.IKESA, tn.ChildSA, tn.ProbeLoss)
		}
	}
	if cs.ActiveTunnel < 0 {
		return fmt.Errorf("no active tunnel")
	}
	return nil
}

// dialEngineCharon opens a VICI session to the engine's charon, for inspection.
func dialEngineCharon(t testing.TB, ctx context.Context, s *Service) *vici.Client {
	t.Helper()
	c, err := vici.Dial(ctx, s.sup.Socket())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func upOnPreferred(cs ConnectionStatus) error {
	if err := bothUp(cs); err != nil {
		return err
	}
	if cs.ActiveTunnel != 0 {
		return fmt.Errorf("active tunnel %d, want the preferred 0", cs.ActiveTunnel)
	}
	return nil
}
