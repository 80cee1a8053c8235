package sslvpn

import (
	"context"
	"time"
)

// idleMark is what the idle watcher last saw of a session: its byte count, and since when it stands still; and
// the forbidden packets it last reported, and when.
type idleMark struct {
	bytes uint64
	since time.Time
	cut   bool // told to close; it leaves the session list when its protocol says it ended

	forbidden   uint64
	forbiddenAt time.Time
}

// forbiddenLogEvery bounds the log lines about one session's forbidden packets: a client that keeps sending where
// it may not (a misconfiguration, a scan) costs a line a minute, with the count since the last.
const forbiddenLogEvery = time.Minute

// watchIdle ends the sessions that carried no tunnel traffic for the server's idle timeout, whatever their
// protocol. The engines count tunnel payload only, so a client that does nothing but answer keepalives is idle.
// A session ends within an eighth of the timeout after it became due.
func (s *Server) watchIdle(ctx context.Context) {
	t := time.NewTimer(idleCheckInterval(s.cfg.Load().IdleTimeout))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.closeIdle(now)
			s.logForbidden(now)
			// The timeout may have changed with the configuration.
			t.Reset(idleCheckInterval(s.cfg.Load().IdleTimeout))
		}
	}
}

func idleCheckInterval(timeout time.Duration) time.Duration {
	if timeout <= 0 {
		return 30 * time.Second // off; look again when the configuration may have changed
	}
	return min(max(timeout/8, 100*time.Millisecond), 30*time.Second)
}

// closeIdle cuts the sessions whose byte counts have not moved for the idle timeout by now.
func (s *Server) closeIdle(now time.Time) {
	limit := s.cfg.Load().IdleTimeout
	for _, sess := range s.Sessions() {
		if sess.stats == nil {
			continue
		}
		in, out := sess.stats()
		m := &sess.idle
		switch {
		case m.since.IsZero(): // the first look
			m.bytes, m.since = in+out, now
			if in+out == 0 {
				m.since = sess.Started // no traffic yet: idle since it connected
			}
		case in+out != m.bytes:
			m.bytes, m.since = in+out, now
		case limit > 0 && now.Sub(m.since) >= limit && !m.cut:
			m.cut = true
			s.log.Info("ending an idle session", "user", sess.User, "session", sess.ID, "protocol", sess.Protocol,
				"idle", now.Sub(m.since).Round(time.Second), "idle_timeout", limit)
			sess.peer.Close("idle timeout")
		}
	}
}

// logForbidden logs, at most once a minute per session, the packets a session sent to networks not given to it.
func (s *Server) logForbidden(now time.Time) {
	for _, sess := range s.Sessions() {
		if sess.uplink == nil {
			continue
		}
		m := &sess.idle
		n := sess.uplink.Forbidden()
		if n == m.forbidden || now.Sub(m.forbiddenAt) < forbiddenLogEvery {
			continue
		}
		s.log.Warn("dropped packets a client sent to networks not given to it", "user", sess.User, "session", sess.ID,
			"address", sess.Lease.Addr, "packets", n-m.forbidden, "total", n)
		m.forbidden, m.forbiddenAt = n, now
	}
}
