// Command flood is the stranger on the client side of port 443, for the hostile-input tests: it floods one
// surface of the appliance (the AnyConnect login, TCP 443 before any login, OpenVPN UDP, DTLS, the HTTPS API)
// from many source addresses for a bounded time, and prints what it saw as one JSON line.
//
//	flood -kind KIND -target ADDR:PORT [-sources A,B,… | -sources FIRST-LAST] [-duration 10s] [-conns N] [-rate N] [-user U]
//
// It only ever talks to the target it is given, from the addresses it is given: the tests run it inside a
// network namespace of their own.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	var o options
	flag.StringVar(&o.kind, "kind", "", "what to flood: "+strings.Join(kindNames(), ", "))
	flag.StringVar(&o.target, "target", "", "ADDR:PORT")
	sources := flag.String("sources", "", "source addresses: A,B,… or FIRST-LAST (default: the kernel's choice)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "how long")
	flag.IntVar(&o.conns, "conns", 64, "concurrent connections (TCP kinds) or sockets (UDP kinds)")
	flag.IntVar(&o.rate, "rate", 2000, "datagrams per second (UDP kinds)")
	flag.StringVar(&o.user, "user", "alice", "the user name a guesser tries")
	flag.Parse()
	run := kinds[o.kind]
	if run == nil || o.target == "" {
		fmt.Fprintf(os.Stderr, "flood: -kind (%s) and -target are required\n", strings.Join(kindNames(), ", "))
		os.Exit(2)
	}
	var err error
	if o.target, err = resolveTarget(o.target); err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(2)
	}
	if o.sources, err = parseSources(*sources); err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	defer cancel()
	st := &stats{Kind: o.kind, Answers: map[string]int64{}}
	start := time.Now()
	run(ctx, &o, st)
	st.Seconds = time.Since(start).Seconds()
	st.finish()
	_ = json.NewEncoder(os.Stdout).Encode(st)
}

type options struct {
	kind, target, user string
	sources            []netip.Addr
	duration           time.Duration
	conns, rate        int
	next               atomic.Uint64
}

// source returns the next source address, round robin (the zero Addr: the kernel's choice).
func (o *options) source() netip.Addr {
	if len(o.sources) == 0 {
		return netip.Addr{}
	}
	return o.sources[o.next.Add(1)%uint64(len(o.sources))]
}

func (o *options) dialTCP(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: 3 * time.Second}
	if src := o.source(); src.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	}
	return d.DialContext(ctx, "tcp", o.target)
}

func (o *options) listenUDP() (*net.UDPConn, error) {
	la := &net.UDPAddr{}
	if src := o.source(); src.IsValid() {
		la.IP = src.AsSlice()
	}
	return net.ListenUDP("udp", la)
}

// stats is what the flood saw, printed as JSON at the end.
type stats struct {
	Kind        string           `json:"kind"`
	Seconds     float64          `json:"seconds"`
	Sent        int64            `json:"sent"`        // requests, packets or connection attempts
	Connections int64            `json:"connections"` // TCP connections established
	Refused     int64            `json:"refused"`     // connections refused or reset at once
	Closed      int64            `json:"closed"`      // established connections the server closed
	Received    int64            `json:"received"`    // datagrams or bytes of answers
	Answers     map[string]int64 `json:"answers"`     // HTTP answers by status
	Errors      int64            `json:"errors"`

	mu                                                 sync.Mutex
	sent, connections, refused, closed, received, errs atomic.Int64
}

func (s *stats) answer(status string) {
	s.mu.Lock()
	s.Answers[status]++
	s.mu.Unlock()
}

func (s *stats) finish() {
	s.Sent, s.Connections, s.Refused = s.sent.Load(), s.connections.Load(), s.refused.Load()
	s.Closed, s.Received, s.Errors = s.closed.Load(), s.received.Load(), s.errs.Load()
}

var kinds = map[string]func(context.Context, *options, *stats){
	"anyconnect-get":   anyconnectGet,
	"anyconnect-init":  anyconnectInit,
	"anyconnect-guess": func(ctx context.Context, o *options, st *stats) { anyconnectGuess(ctx, o, st, false) },
	"anyconnect-names": func(ctx context.Context, o *options, st *stats) { anyconnectGuess(ctx, o, st, true) },
	"tcp-reset":        tcpHold(openvpnTCPReset),
	"tcp-idle":         tcpHold(nil),
	"tls-stall":        tcpHold(stalledClientHello),
	"udp-reset":        udpFlood(func([]byte) []byte { return openvpnReset(nil) }),
	"dtls-hello":       udpFlood(dtlsClientHello),
	"https-slowloris":  httpsSlowloris,
}

func kindNames() []string {
	var out []string
	for k := range kinds {
		out = append(out, k)
	}
	return out
}

// workers runs n copies of f until ctx ends.
func workers(ctx context.Context, n int, f func(ctx context.Context, i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				f(ctx, i)
			}
		}()
	}
	wg.Wait()
}

// tlsClient opens a TLS connection to the target (the certificate is not checked: a stranger does not care).
func tlsClient(ctx context.Context, o *options, st *stats) (*tls.Conn, *bufio.Reader, error) {
	st.sent.Add(1)
	c, err := o.dialTCP(ctx)
	if err != nil {
		st.refused.Add(1)
		return nil, nil, err
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		st.refused.Add(1)
		return nil, nil, err
	}
	st.connections.Add(1)
	return tc, bufio.NewReader(tc), nil
}

// httpExchange sends one request and reads the answer; it returns the status and the answer's cookies.
func httpExchange(c net.Conn, r *bufio.Reader, req string) (int, map[string]string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return 0, nil, err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, nil, err
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	status, _ := strconv.Atoi(f[1])
	length := 0
	cookies := map[string]string{}
	for {
		h, err := r.ReadString('\n')
		if err != nil {
			return status, cookies, err
		}
		h = strings.TrimRight(h, "\r\n")
		if h == "" {
			break
		}
		name, value, _ := strings.Cut(h, ":")
		value = strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "content-length":
			length, _ = strconv.Atoi(value)
		case "set-cookie":
			kv, _, _ := strings.Cut(value, ";")
			k, v, _ := strings.Cut(kv, "=")
			cookies[k] = v
		}
	}
	if _, err := io.CopyN(io.Discard, r, int64(length)); err != nil {
		return status, cookies, err
	}
	return status, cookies, nil
}

const agent = "User-Agent: Open AnyConnect VPN Agent v9.01-3\r\nX-Transcend-Version: 1\r\nX-Aggregate-Auth: 1\r\n"

func post(host, cookie, body string) string {
	if cookie != "" {
		cookie = "Cookie: webvpncontext=" + cookie + "\r\n"
	}
	return "POST / HTTP/1.1\r\nHost: " + host + "\r\n" + agent + cookie +
		"Content-Type: application/xml; charset=utf-8\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

const initBody = `<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="init" aggregate-auth-version="2"><version who="vpn">v9.01-3</version><device-id>linux-64</device-id></config-auth>`

func authReply(user, password string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="auth-reply" aggregate-auth-version="2"><version who="vpn">v9.01-3</version><device-id>linux-64</device-id><auth><username>` +
		user + `</username><password>` + password + `</password></auth></config-auth>`
}

// anyconnectLoop keeps o.conns TLS connections busy with exchange, called over and over on each until it fails
// (the box closed the connection) and then on a new one.
func anyconnectLoop(ctx context.Context, o *options, st *stats, exchange func(host string, c net.Conn, r *bufio.Reader) error) {
	host, _, _ := net.SplitHostPort(o.target)
	workers(ctx, o.conns, func(ctx context.Context, _ int) {
		c, r, err := tlsClient(ctx, o, st)
		if err != nil {
			pause(ctx)
			return
		}
		defer c.Close()
		for ctx.Err() == nil {
			if err := exchange(host, c, r); err != nil {
				st.closed.Add(1)
				return
			}
		}
	})
}

// anyconnectGet sends GET / over and over on kept-alive connections, as fast as the answers come.
func anyconnectGet(ctx context.Context, o *options, st *stats) {
	anyconnectLoop(ctx, o, st, func(host string, c net.Conn, r *bufio.Reader) error {
		status, _, err := httpExchange(c, r, "GET / HTTP/1.1\r\nHost: "+host+"\r\n"+agent+"\r\n")
		if err == nil {
			st.answer(strconv.Itoa(status))
		}
		return err
	})
}

// anyconnectInit starts logins (POST init) and never finishes them.
func anyconnectInit(ctx context.Context, o *options, st *stats) {
	anyconnectLoop(ctx, o, st, func(host string, c net.Conn, r *bufio.Reader) error {
		status, _, err := httpExchange(c, r, post(host, "", initBody))
		if err == nil {
			st.answer(strconv.Itoa(status))
		}
		return err
	})
}

// anyconnectGuess guesses passwords: of one user (-user), or of made-up user names (names).
func anyconnectGuess(ctx context.Context, o *options, st *stats, names bool) {
	anyconnectLoop(ctx, o, st, func(host string, c net.Conn, r *bufio.Reader) error {
		status, cookies, err := httpExchange(c, r, post(host, "", initBody))
		if err != nil {
			return err
		}
		if status != 200 {
			st.answer("init-" + strconv.Itoa(status))
			return nil
		}
		user := o.user
		if names {
			user = "u" + randHex(6)
		}
		status, _, err = httpExchange(c, r, post(host, cookies["webvpncontext"], authReply(user, "guess-"+randHex(4))))
		if err == nil {
			st.answer("reply-" + strconv.Itoa(status))
		}
		return err
	})
}

// tcpHold keeps o.conns connections open, each having sent first (nil: nothing), reopening those the server
// closes.
func tcpHold(first func() []byte) func(context.Context, *options, *stats) {
	return func(ctx context.Context, o *options, st *stats) {
		workers(ctx, o.conns, func(ctx context.Context, _ int) {
			st.sent.Add(1)
			c, err := o.dialTCP(ctx)
			if err != nil {
				st.refused.Add(1)
				pause(ctx)
				return
			}
			st.connections.Add(1)
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			defer c.Close()
			if first != nil {
				if _, err := c.Write(first()); err != nil {
					st.closed.Add(1)
					return
				}
			}
			// Read whatever comes until the server gives up on us.
			n, _ := io.Copy(io.Discard, c)
			st.received.Add(n)
			if ctx.Err() == nil {
				st.closed.Add(1)
			}
		})
	}
}

// openvpnReset is a client's P_CONTROL_HARD_RESET_CLIENT_V2 with a random session id: opcode 7, key id 0,
// session id, an empty ack array, packet id 0. With tcp, the 16-bit length comes first.
func openvpnReset(prefix []byte) []byte {
	p := append(prefix, 7<<3)
	var sid [8]byte
	_, _ = rand.Read(sid[:])
	p = append(p, sid[:]...)
	p = append(p, 0)          // no acks
	p = append(p, 0, 0, 0, 0) // packet id 0
	return p
}

func openvpnTCPReset() []byte {
	p := openvpnReset([]byte{0, 0})
	binary.BigEndian.PutUint16(p, uint16(len(p)-2))
	return p
}

// stalledClientHello is a TLS record header that promises a ClientHello and the first bytes of it, then nothing.
func stalledClientHello() []byte {
	return []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}
}

// dtlsClientHello is a DTLS 1.2 ClientHello without a cookie, as a client's first datagram.
func dtlsClientHello(buf []byte) []byte {
	var random [32]byte
	_, _ = rand.Read(random[:])
	body := []byte{0xfe, 0xfd} // client_version DTLS 1.2
	body = append(body, random[:]...)
	body = append(body, 0)                            // session id
	body = append(body, 0)                            // cookie
	body = append(body, 0, 4, 0xc0, 0x2b, 0xc0, 0x2f) // cipher suites
	body = append(body, 1, 0)                         // compression: null
	hs := []byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body)), 0, 0, 0, 0, 0,
		byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}
	hs = append(hs, body...)
	rec := append(buf[:0], 0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(hs)>>8), byte(len(hs)))
	return append(rec, hs...)
}

// udpFlood sends o.rate datagrams a second, each made by packet, spread over o.conns sockets (each on its own
// source port and, with -sources, address), and counts what comes back.
func udpFlood(packet func(buf []byte) []byte) func(context.Context, *options, *stats) {
	return func(ctx context.Context, o *options, st *stats) {
		var socks []*net.UDPConn
		for range o.conns {
			s, err := o.listenUDP()
			if err != nil {
				st.errs.Add(1)
				continue
			}
			socks = append(socks, s)
		}
		if len(socks) == 0 {
			return
		}
		to, err := net.ResolveUDPAddr("udp", o.target)
		if err != nil {
			st.errs.Add(1)
			return
		}
		var wg sync.WaitGroup
		for _, s := range socks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 2048)
				for {
					n, err := s.Read(buf)
					if err != nil {
						if errors.Is(err, net.ErrClosed) {
							return
						}
						continue
					}
					st.received.Add(int64(n))
				}
			}()
		}
		interval := time.Second / time.Duration(max(o.rate, 1))
		tick := time.NewTicker(max(interval, time.Millisecond))
		perTick := max(1, int(time.Millisecond/interval))
		buf := make([]byte, 0, 2048)
		i := 0
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case <-tick.C:
			}
			for range perTick {
				if _, err := socks[i%len(socks)].WriteToUDP(packet(buf), to); err != nil {
					st.errs.Add(1)
				}
				st.sent.Add(1)
				i++
			}
		}
		tick.Stop()
		time.Sleep(200 * time.Millisecond) // late answers
		for _, s := range socks {
			s.Close()
		}
		wg.Wait()
	}
}

// httpsSlowloris completes TLS, then sends a request header a byte every second and never ends it.
func httpsSlowloris(ctx context.Context, o *options, st *stats) {
	workers(ctx, o.conns, func(ctx context.Context, _ int) {
		c, _, err := tlsClient(ctx, o, st)
		if err != nil {
			pause(ctx)
			return
		}
		defer c.Close()
		stop := context.AfterFunc(ctx, func() { c.Close() })
		defer stop()
		_ = c.SetDeadline(time.Time{})
		for _, b := range []byte("GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 1<<12)) {
			if _, err := c.Write([]byte{b}); err != nil {
				st.closed.Add(1)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	})
}

func pause(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(50 * time.Millisecond):
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func resolveTarget(t string) (string, error) {
	if _, err := netip.ParseAddrPort(t); err != nil {
		return "", fmt.Errorf("-target %q: want ADDR:PORT", t)
	}
	return t, nil
}

// parseSources reads "A,B,C" or "FIRST-LAST" (IPv4, at most 65,536 addresses).
func parseSources(s string) ([]netip.Addr, error) {
	if s == "" {
		return nil, nil
	}
	if first, last, ok := strings.Cut(s, "-"); ok {
		a, err1 := netip.ParseAddr(first)
		b, err2 := netip.ParseAddr(last)
		if err1 != nil || err2 != nil || !a.Is4() || !b.Is4() || b.Less(a) {
			return nil, fmt.Errorf("-sources %q: want FIRST-LAST, two IPv4 addresses in order", s)
		}
		var out []netip.Addr
		for x := a; x.Compare(b) <= 0 && len(out) < 1<<16; x = x.Next() {
			out = append(out, x)
		}
		return out, nil
	}
	var out []netip.Addr
	for _, f := range strings.Split(s, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("-sources: %v", err)
		}
		out = append(out, a)
	}
	return out, nil
}
