package ike

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"toride/tests/cloudlab"
	"toride/tests/lab"
)

// With the site LAN idle, the keepalive probes reach the gateways through each tunnel and keep the very SAs
// alive past the gateways' inactivity timeout (which closes idle CHILD_SAs, as the cloud idles tunnels out).
func TestLabKeepaliveIdle(t *testing.T) {
	const inactivity = 5 * time.Second
	tp := newTopo(t, labOpts{inactivity: inactivity})
	s := tp.startService(t, nil)
	ctx := lab.Within(t, 90*time.Second)
	if err := s.Set(ctx, tp.labConfig(2)); err != nil {
		t.Fatal(err)
	}
	tp.waitStatus(ctx, t, s, "both tunnels up", upOnPreferred)
	type farChild struct {
		id      uint64
		packets uint64
	}
	farSide := func() [2]farChild {
		var out [2]farChild
		for i, g := range tp.GWs {
			sas, err := gatewaySAs(ctx, g)
			if err != nil {
				t.Fatal(err)
			}
			for _, sa := range sas {
				for _, ch := range sa.ChildSAs {
					if ch.State == "INSTALLED" && ch.UniqueID >= out[i].id {
						out[i] = farChild{ch.UniqueID, ch.PacketsIn}
					}
				}
			}
		}
		return out
	}
	// Let the start-up steering settle, then watch.
	time.Sleep(2 * time.Second)
	before := farSide()
	sentBefore := s.Status().Connections[0].Tunnels[0].ProbesSent
	time.Sleep(3 * inactivity) // no LAN traffic at all
	after := farSide()
	for i := range after {
		if after[i].id == 0 || after[i].id != before[i].id {
			t.Errorf("gateway %d: CHILD_SA %d → %d: the tunnel idled out and was re-created", i+1, before[i].id, after[i].id)
		}
		if got := after[i].packets - before[i].packets; got < 5 {
			t.Errorf("gateway %d received %d packets in %v of idle LAN, want the probes (≥ 5)", i+1, got, 3*inactivity)
		}
	}
	cs := s.Status().Connections[0]
	if err := bothUp(cs); err != nil {
		t.Error(err)
	}
	sent := cs.Tunnels[0].ProbesSent - sentBefore
	t.Logf("in %v idle: gateway CHILD_SAs kept (%d, %d), gateways saw %d and %d packets, tunnel 1 sent %d probes, loss %.2f, rtt %.2f ms",
		3*inactivity, after[0].id, after[1].id, after[0].packets-before[0].packets, after[1].packets-before[1].packets,
		sent, cs.Tunnels[0].ProbeLoss, cs.Tunnels[0].ProbeRTTMillis)
	tp.WaitPing(ctx, t)
}

// SIGKILL of the appliance's own charon: the supervisor restarts it, the engine reconnects, reloads every
// connection and secret, and both tunnels return.
func TestLabApplianceCharonRestart(t *testing.T) {
	tp := newTopo(t, labOpts{})
	baseline := runtime.NumGoroutine()
	s := tp.startService(t, nil)
	ctx := lab.Within(t, 90*time.Second)
	if err := s.Set(ctx, tp.labConfig(2)); err != nil {
		t.Fatal(err)
	}
	tp.waitStatus(ctx, t, s, "both tunnels up", upOnPreferred)
	tp.WaitPing(ctx, t)
	pid := s.CharonPID()
	if pid == 0 {
		t.Fatal("no charon pid")
	}
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	tp.waitStatus(ctx, t, s, "charon restarted and both tunnels back", func(cs ConnectionStatus) error {
		h := s.Status().Charon
		if h.Restarts < 1 || h.PID == pid {
			return fmt.Errorf("charon not restarted yet: %+v", h)
		}
		return upOnPreferred(cs)
	})
	back := time.Since(killed)
	tp.WaitPing(ctx, t)
	t.Logf("charon SIGKILLed: restarted and both tunnels back in %v, LAN traffic in %v",
		back.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))

	// Close stops everything the service started: charon, the engine, probers, VICI sessions.
	newPID := s.CharonPID()
	s.Close()
	s.Close()
	if err := syscall.Kill(newPID, 0); err == nil {
		t.Errorf("charon %d still runs after Close", newPID)
	}
	if err := lab.WaitFor(ctx, 50*time.Millisecond, func() error {
		if n := runtime.NumGoroutine(); n > baseline {
			return fmt.Errorf("%d goroutines, %d before the service", n, baseline)
		}
		return nil
	}); err != nil {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutine leak: %v\n%s", err, buf[:runtime.Stack(buf, true)])
	}
	if out := tp.App.MustRun("ip", "-4", "addr", "show", "dev", "lo"); strings.Contains(out, "169.254.") {
		t.Errorf("inside addresses left on lo after Close:\n%s", out)
	}
	if err := s.Set(ctx, tp.labConfig(2)); !errors.Is(err, ErrClosed) {
		t.Errorf("Set after Close: %v", err)
	}
}

// Behind a masquerading NAT the IKE SAs float to UDP 4500, the NAT is detected, and traffic flows.
func TestLabNATTraversal(t *testing.T) {
	tp := newTopo(t, labOpts{behindNAT: true})
	s := tp.startService(t, nil)
	ctx := lab.Within(t, 90*time.Second)
	if err := s.Set(ctx, tp.labConfig(2)); err != nil {
		t.Fatal(err)
	}
	cs := tp.waitStatus(ctx, t, s, "both tunnels up behind the NAT", upOnPreferred)
	tp.WaitPing(ctx, t)
	c := dialEngineCharon(t, ctx, s)
	defer c.Close()
	sas, err := c.ListSAs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, sa := range sas {
		if sa.State != "ESTABLISHED" {
			continue
		}
		if sa.RemotePort != 4500 || sa.LocalPort != 4500 {
			t.Errorf("%s: IKE on ports %d→%d, want 4500 (NAT-T)", sa.Name, sa.LocalPort, sa.RemotePort)
		}
		if !sa.NATLocal {
			t.Errorf("%s: the NAT in front of the appliance was not detected", sa.Name)
		}
		for _, ch := range sa.ChildSAs {
			if !ch.Encap {
				t.Errorf("%s/%s: ESP not UDP-encapsulated", sa.Name, ch.Name)
			}
		}
	}
	for _, tn := range cs.Tunnels {
		if !tn.NATDetected || !tn.UDPEncap {
			t.Errorf("status of %s: nat %v, encap %v", tn.Name, tn.NATDetected, tn.UDPEncap)
		}
	}
	// The gateways see the NAT's public address, which is the identity the appliance claims.
	for i, g := range tp.GWs {
		gsas, err := gatewaySAs(ctx, g)
		if err != nil {
			t.Fatal(err)
		}
		if len(gsas) == 0 || gsas[0].RemoteHost != cloudlab.AppWAN || !gsas[0].NATRemote {
			t.Errorf("gateway %d sees %+v", i+1, gsas)
		}
	}
}

// A probe target that never answers (the endpoint filters pings) must not make the tunnel flap: lost probes only
// count once the target has answered over the SA.
func TestLabSilentProbeTarget(t *testing.T) {
	tp := newTopo(t, labOpts{})
	tp.GW[0].MustRun("nft", "add table ip filter")
	tp.GW[0].MustRun("nft", "add chain ip filter input { type filter hook input priority 0 ; }")
	tp.GW[0].MustRun("nft", "add rule ip filter input ip daddr 169.254.10.1 icmp type echo-request drop")
	s := tp.startService(t, nil)
	ctx := lab.Within(t, 60*time.Second)
	if err := s.Set(ctx, tp.labConfig(2)); err != nil {
		t.Fatal(err)
	}
	tp.waitStatus(ctx, t, s, "both tunnels up", upOnPreferred)
	time.Sleep(6 * time.Second) // two DownAfter windows of lost probes
	cs := s.Status().Connections[0]
	t1 := cs.Tunnels[0]
	if t1.State != "up" || t1.Restarts != 0 || cs.Failovers != 0 || t1.ProbeAnswered || t1.ProbeLoss < 0.9 {
		t.Errorf("tunnel 1 with a silent target: %+v (connection failovers %d)", t1, cs.Failovers)
	}
	if !cs.Tunnels[1].ProbeAnswered {
		t.Errorf("tunnel 2's target answers: %+v", cs.Tunnels[1])
	}
	tp.WaitPing(ctx, t)
}
