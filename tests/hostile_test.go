package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"toride/tests/lab"
	"toride/tests/occlient"
	"toride/tests/ovpnclient"
	"toride/tests/toridetest"
)

// hostileMemoryBound is the most resident memory torided may reach while every surface of the box is flooded in
// turn. A flood must be shed by torided itself, long before the service's memory limit or the kernel's OOM
// killer would step in.
const hostileMemoryBound = 192 << 20

// TestHostileFloodsDoNotStopLogins runs the real torided (built without the race detector, so its memory is the
// product's) with an SSL-VPN made through the REST API, and floods each surface a stranger on the outside can
// reach, one at a time, from a namespace of 64 source addresses: the AnyConnect login, TCP 443 before any login,
// OpenVPN over UDP, DTLS, password guessing against a real user, and the HTTPS management API. During each flood
// the real users log in with stock clients — openvpn over UDP and over TCP, openconnect with a certificate and
// alice's password (whose name the guesser knows) — and reach the LAN; an admin's API request gets its answer. torided's memory stays under
// hostileMemoryBound throughout.
//
//	client 192.0.2.2 ── eth0 192.0.2.1 [box] eth1 10.50.0.1 ── lan 10.50.0.2
//	                                    eth2 198.18.0.1 ── attacker 198.18.0.10-73
func TestHostileFloodsDoNotStopLogins(t *testing.T) {
	l := lab.New(t, "openvpn", "openconnect", "ping", "unshare", "curl")
	v := &vpnLab{t: t, l: l}
	boxNS := l.Namespace("box")
	v.client, v.lan = l.Namespace("cli"), l.Namespace("lan")
	attacker := l.Namespace("evil")
	l.Link(boxNS, "eth0", "", v.client, "eth0", "192.0.2.2/24")
	l.Link(boxNS, "eth1", "", v.lan, "eth0", "10.50.0.2/24")
	l.Link(boxNS, "eth2", "", attacker, "eth0", "198.18.0.10/24")
	const sources = "198.18.0.10-198.18.0.73"
	for i := 11; i <= 73; i++ {
		attacker.AddAddr("eth0", fmt.Sprintf("198.18.0.%d/24", i))
	}
	attacker.AddRoute("default", "198.18.0.1")
	v.lan.AddRoute("default", "10.50.0.1")
	v.box = toridetest.StartBinary(t, toridetest.Build(t, "./cmd/torided", false), boxNS, t.TempDir(), "--log-level", "info")
	v.commands("set system interfaces eth0 address 192.0.2.1/24", "set system interfaces eth1 address 10.50.0.1/24",
		"set system interfaces eth2 address 198.18.0.1/24")
	v.commit()
	v.createVPN("192.0.2.1", false)
	key := strings.TrimSpace(v.box.MustToride("generate", "api-key", "ops"))
	v.setPassword("alice", "alice-pw")
	// Two profiles, as a branch office has them: staff log in with a certificate and a password; partners, with
	// a password alone, so the TLS handshake does not ask strangers for a certificate and the login form is open
	// to anyone: the flood's own default.
	v.commands("set sslvpn servers main anyconnect groups staff certificate", "set sslvpn servers main anyconnect groups staff password",
		"set sslvpn servers main anyconnect groups partners password", "set sslvpn servers main anyconnect default-group partners",
		"set api https listen-address 192.0.2.1")
	v.commit()
	udpProfile, tcpProfile := v.profile("ursula", "&proto=udp"), v.profile("tom", "")
	alice := v.acUser("alice")
	floodBin := toridetest.Build(t, "./tests/flood", false)

	// logins are the real users, each of whom must get in and reach the LAN while the flood runs.
	logins := []struct {
		name    string
		connect func(t *testing.T) (stop func())
	}{
		{"openvpn over UDP", func(t *testing.T) func() {
			c := ovpnclient.Start(t, v.client, ovpnclient.Options{Config: udpProfile, User: "ursula"})
			if err := c.WaitConnected(lab.Within(t, 30*time.Second)); err != nil {
				t.Fatalf("did not connect: %v", err)
			}
			return c.Stop
		}},
		{"openvpn over TCP 443", func(t *testing.T) func() {
			c := ovpnclient.Start(t, v.client, ovpnclient.Options{Config: tcpProfile, User: "tom"})
			if err := c.WaitConnected(lab.Within(t, 30*time.Second)); err != nil {
				t.Fatalf("did not connect: %v", err)
			}
			return c.Stop
		}},
		{"openconnect with certificate and password", func(t *testing.T) func() {
			c := occlient.Start(t, v.client, occlient.Options{Server: "https://192.0.2.1/", CAFile: alice.ca, Stdin: "alice-pw\n",
				Args: []string{"-c", alice.cert, "-k", alice.key, "-u", "alice", "--authgroup=staff", "--passwd-on-stdin"}})
			if _, err := c.WaitConnected(lab.Within(t, 30*time.Second)); err != nil {
				t.Fatalf("did not connect: %v", err)
			}
			return c.Stop
		}},
	}
	adminRequest := func(t *testing.T) {
		out, err := v.client.Run("curl", "-sk", "--max-time", "10", "-H", "Authorization: Bearer "+key, "https://192.0.2.1:8443/api/v1/status")
		if err != nil || !strings.Contains(out, `"revision"`) {
			t.Fatalf("the admin's API request failed: %v: %s", err, out)
		}
	}

	floods := []struct {
		name string
		args []string
	}{
		{"AnyConnect GET / on kept-alive connections", []string{"-kind", "anyconnect-get", "-target", "192.0.2.1:443", "-conns", "32"}},
		{"AnyConnect logins started and abandoned", []string{"-kind", "anyconnect-init", "-target", "192.0.2.1:443", "-conns", "32"}},
		{"password guesses against alice", []string{"-kind", "anyconnect-guess", "-target", "192.0.2.1:443", "-conns", "16", "-user", "alice"}},
		{"made-up user names", []string{"-kind", "anyconnect-names", "-target", "192.0.2.1:443", "-conns", "16"}},
		{"TCP 443 connections that send an OpenVPN reset and wait", []string{"-kind", "tcp-reset", "-target", "192.0.2.1:443", "-conns", "3000"}},
		{"TCP 443 connections that send nothing", []string{"-kind", "tcp-idle", "-target", "192.0.2.1:443", "-conns", "3000"}},
		{"TLS ClientHellos that stall", []string{"-kind", "tls-stall", "-target", "192.0.2.1:443", "-conns", "3000"}},
		{"OpenVPN UDP resets from many ports", []string{"-kind", "udp-reset", "-target", "192.0.2.1:1194", "-conns", "1024", "-rate", "4000"}},
		{"DTLS ClientHellos", []string{"-kind", "dtls-hello", "-target", "192.0.2.1:443", "-conns", "512", "-rate", "4000"}},
		{"HTTPS API slowloris", []string{"-kind", "https-slowloris", "-target", "192.0.2.1:8443", "-conns", "3000"}},
	}
	const floodFor = 25 * time.Second
	var peak uint64
	for _, f := range floods {
		t.Run(f.name, func(t *testing.T) {
			args := append([]string{"-sources", sources, "-duration", floodFor.String()}, f.args...)
			flood := attacker.Start(floodBin, args...)
			defer flood.Kill()
			started := time.Now()
			time.Sleep(3 * time.Second) // the flood in full swing first
			for _, login := range logins {
				t0 := time.Now()
				stop := login.connect(t)
				if err := v.client.Ping("10.50.0.2", 2); err != nil {
					t.Fatalf("%s: no LAN ping through the tunnel: %v", login.name, err)
				}
				t.Logf("%s: in and through after %v", login.name, time.Since(t0).Round(time.Millisecond))
				stop()
			}
			adminRequest(t)
			if time.Since(started) > floodFor {
				t.Errorf("the logins outlasted the flood (%v): not every one of them faced it", time.Since(started).Round(time.Second))
			}
			rss, hwm, err := v.box.Memory()
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-flood.Done():
			case <-time.After(floodFor + 15*time.Second):
				t.Fatal("the flood did not end")
			}
			var st struct {
				Sent, Connections, Refused, Closed, Received, Errors int64
				Answers                                              map[string]int64
			}
			out := flood.Output()
			if i := strings.LastIndex(out, `{"kind"`); i >= 0 {
				line, _, _ := strings.Cut(out[i:], "\n")
				_ = json.Unmarshal([]byte(line), &st)
			}
			t.Logf("flood: %d sent, %d connections, %d refused, %d closed by the box, %d bytes back, answers %v; torided RSS %d MiB (peak %d MiB)",
				st.Sent, st.Connections, st.Refused, st.Closed, st.Received, st.Answers, rss>>20, hwm>>20)
			if st.Sent == 0 {
				t.Fatalf("the flood sent nothing:\n%s", out)
			}
			peak = max(peak, hwm)
		})
	}
	if peak > hostileMemoryBound {
		t.Errorf("torided's resident memory peaked at %d MiB under the floods, over the bound of %d MiB", peak>>20, hostileMemoryBound>>20)
	}
	var status struct {
		Servers []json.RawMessage `json:"servers"`
	}
	if err := v.box.API.Do(context.Background(), "GET", "/api/v1/sslvpn/status", nil, &status); err != nil {
		t.Fatal(err)
	}
	t.Logf("SSL-VPN status after the floods: %s", status.Servers)
}
