package tests

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"toride/tests/lab"
	"toride/tests/toridetest"
)

type ntpStatus struct {
	Components map[string]struct{ State, Message string }
	NTP        struct {
		Synchronized bool    `json:"synchronized"`
		OffsetMs     float64 `json:"offset_ms"`
		ManagesClock bool    `json:"manages_clock"`
		Servers      []struct {
			Address   string
			Reachable bool
			Stratum   int
			Error     string
		}
	} `json:"ntp"`
}

// TestNTPAgainstChrony points the appliance at a real chronyd serving time from another namespace, and at a
// server that never answers: the status shows the measured offset of the one and the silence of the other.
func TestNTPAgainstChrony(t *testing.T) {
	l := lab.New(t, "chronyd", "unshare")
	box := l.Namespace("box")
	srv := l.Namespace("ntp")
	l.Link(box, "eth0", "192.0.2.1/24", srv, "eth0", "192.0.2.123/24")

	dir := t.TempDir()
	conf := filepath.Join(dir, "chrony.conf")
	// A stand-alone server: local clock at stratum 8, never touching the host's clock (-x).
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("local stratum 8\nallow all\ncmdport 0\npidfile %s\ndriftfile %s\n",
		filepath.Join(dir, "chronyd.pid"), filepath.Join(dir, "drift"))), 0o644); err != nil {
		t.Fatal(err)
	}
	chrony := srv.Start("chronyd", "-d", "-x", "-U", "-u", "root", "-f", conf)
	if err := chrony.WaitOutput(lab.Within(t, 10*time.Second), "chronyd version"); err != nil {
		t.Fatal(err)
	}

	d := toridetest.Start(t, box, t.TempDir())
	d.MustToride("set", "system", "interfaces", "eth0", "address", "192.0.2.1/24")
	d.MustToride("set", "system", "ntp", "server", "192.0.2.123")
	d.MustToride("set", "system", "ntp", "server", "192.0.2.99") // nobody there
	d.MustToride("commit")

	var st ntpStatus
	err := lab.WaitFor(lab.Within(t, 20*time.Second), 200*time.Millisecond, func() error {
		if err := d.API.Do(context.Background(), "GET", "/api/v1/status", nil, &st); err != nil {
			return err
		}
		if !st.NTP.Synchronized || len(st.NTP.Servers) != 2 {
			return fmt.Errorf("not synchronized yet: %+v", st.NTP)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	good, bad := st.NTP.Servers[0], st.NTP.Servers[1]
	if !good.Reachable || good.Stratum != 8 || bad.Reachable || bad.Error == "" {
		t.Fatalf("servers = %+v", st.NTP.Servers)
	}
	// Same machine, same clock: the measured offset is small.
	if math.Abs(st.NTP.OffsetMs) > 200 || st.NTP.ManagesClock {
		t.Fatalf("offset %.2f ms, manages clock %v", st.NTP.OffsetMs, st.NTP.ManagesClock)
	}
	if c := st.Components["ntp"]; c.State != "ok" {
		t.Fatalf("ntp health = %+v", c)
	}

	// Without an answering server the health says so.
	d.MustToride("delete", "system", "ntp", "server", "192.0.2.123")
	d.MustToride("commit")
	err = lab.WaitFor(lab.Within(t, 20*time.Second), 200*time.Millisecond, func() error {
		if err := d.API.Do(context.Background(), "GET", "/api/v1/status", nil, &st); err != nil {
			return err
		}
		if c := st.Components["ntp"]; c.State != "degraded" {
			return fmt.Errorf("ntp health %+v", c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
