package ike

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	"toride/ike/internal/icmpprobe"
)

// Keepalive probing: one prober per tunnel sends ICMP from the tunnel's inside address to its probe target,
// through the tunnel's own probe CHILD_SA; what the probes show, with the tunnel's SA states, is its health.

// probeWindow is how many recent probes ProbeLoss is taken over.
const probeWindow = 20

type probeEvent struct {
	tunnel string
	gen    uint64
	res    icmpprobe.Result
}

// probeRecord is what a tunnel's probes have shown.
type probeRecord struct {
	window   [probeWindow]bool
	nres     int
	widx     int
	sent     uint64
	lost     int  // consecutive
	answered bool // the target has answered over this tunnel (any SA since the last forced restart)
	rtt      time.Duration
}

func (r *probeRecord) add(res icmpprobe.Result) {
	r.sent++
	r.window[r.widx] = res.OK
	r.widx = (r.widx + 1) % probeWindow
	r.nres = min(r.nres+1, probeWindow)
	if res.OK {
		r.lost = 0
		r.answered = true
		r.rtt = res.RTT
	} else {
		r.lost++
	}
}

// loss is the share of the recent probes that went unanswered.
func (r *probeRecord) loss() float64 {
	if r.nres == 0 {
		return 0
	}
	lost := 0
	for i := 0; i < r.nres; i++ {
		if !r.window[i] {
			lost++
		}
	}
	return float64(lost) / float64(r.nres)
}

// ensureProber (re)starts the tunnel's prober when its parameters changed.
func (e *engine) ensureProber(st *tunnelState) error {
	ka := st.conn.keepalive
	p := st.plan
	key := fmt.Sprint(ka.Disabled, p.localInside, p.probeTarget, ka.Interval, ka.Timeout)
	if key == st.proberKey && (st.prober != nil || ka.Disabled) {
		return nil
	}
	if st.prober != nil {
		st.prober.Close()
		st.prober = nil
	}
	st.proberKey = key
	st.nres, st.widx, st.lost, st.answered = 0, 0, 0, false // perhaps another target
	if ka.Disabled {
		return nil
	}
	e.gen++
	gen, name := e.gen, p.name
	var idb [2]byte
	rand.Read(idb[:])
	pr, err := e.startProber(icmpprobe.Config{
		NetnsPath: e.netnsPath,
		Source:    p.localInside,
		Target:    p.probeTarget,
		Interval:  ka.Interval,
		Timeout:   ka.Timeout,
		ID:        binary.BigEndian.Uint16(idb[:]),
	}, func(r icmpprobe.Result) {
		select {
		case e.s.probes <- probeEvent{tunnel: name, gen: gen, res: r}:
		default: // the engine is busy; a dropped result is neither a loss nor an answer
		}
	})
	if err != nil {
		return fmt.Errorf("tunnel %s keepalive: %w", p.name, err)
	}
	st.prober, st.proberGen = pr, gen
	return nil
}

// probed handles one probe result and acts on what it shows. Probes come several times a second per tunnel: a
// result costs an evaluation when it changes what judge concludes (a first answer, the loss that reaches
// down-after, an answer after such losses), and otherwise at most once a second (a hold-down running out).
func (e *engine) probed(ctx context.Context, ev probeEvent) {
	if e.onProbe(ev) || e.now().Sub(e.evaluated) >= time.Second {
		e.evaluate(ctx)
	}
}

// onProbe records a probe result and reports whether it changed the tunnel's verdict.
func (e *engine) onProbe(ev probeEvent) bool {
	st := e.tunnels[ev.tunnel]
	if st == nil || st.proberGen != ev.gen {
		return false
	}
	down := st.conn.keepalive.DownAfter
	answered, dead := st.answered, st.lost >= down
	st.probeRecord.add(ev.res)
	return st.answered != answered || (st.lost >= down) != dead
}

// judge updates a tunnel's health and restarts a tunnel whose IKE_SA looks fine but whose data path is dead.
func (e *engine) judge(ctx context.Context, now time.Time, st *tunnelState) {
	ka := st.conn.keepalive
	if st.probe != nil && st.probe.UniqueID != st.probeSA {
		// A new probe SA (rekey, steering move, re-established tunnel) starts counting losses afresh, but keeps
		// what the tunnel taught: a target that answered before answers over a working new SA too, so lost probes
		// on it condemn the tunnel at once instead of leaving it to DPD until its first answer.
		st.probeSA, st.lost = st.probe.UniqueID, 0
	}
	if st.prober != nil {
		st.prober.SetEnabled(st.probe != nil)
	}
	ikeUp := st.ike != nil && st.ike.State == "ESTABLISHED"
	netUp := st.plan.netChild == "" || len(st.nets) > 0
	// Lost probes only condemn a tunnel whose target has answered over it: a target that never answers
	// (filtered, or an endpoint that ignores pings) must not make both tunnels flap forever. Such a tunnel is
	// judged by its SA states alone, and its status shows the loss.
	dead := !ka.Disabled && st.answered && st.lost >= ka.DownAfter
	healthy := ikeUp && netUp && (st.probe != nil || ka.Disabled) && !dead
	if healthy != st.healthy {
		st.healthy, st.lastChange = healthy, now
		if healthy {
			st.healthySince = now
		}
		state := "down"
		if healthy {
			state = "up"
		}
		e.log.Info("tunnel "+state, "tunnel", st.plan.name, "ike", saState(st.ike), "lost_probes", st.lost)
	}
	hold := max(10*time.Second, 2*time.Duration(ka.DownAfter)*ka.Interval)
	if ikeUp && st.probe != nil && dead && now.Sub(st.lastRestart) >= hold {
		e.log.Warn("tunnel data path dead; restarting it", "tunnel", st.plan.name, "lost_probes", st.lost)
		st.lastRestart = now
		st.restarts++
		for _, id := range st.ikeIDs {
			if err := e.client.TerminateIKE(ctx, id, true); err != nil {
				e.log.Warn("terminate", "tunnel", st.plan.name, "err", err)
			}
		}
		// Re-initiated by bringUp once charon has dropped it. The new SA must earn "answered" again: a target that
		// stopped answering for good gets this one restart, not one every hold period.
		st.absentSince, st.seenIKE, st.answered = time.Time{}, false, false
	}
}
