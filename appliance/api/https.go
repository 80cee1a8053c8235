package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"toride/appliance/atomicfile"
	"toride/appliance/config"
	"toride/appliance/health"
	"toride/sslvpn/shed"
)

// HTTPSListener is the "api" component: the API on HTTPS for remote management, when api https listen-address
// is set. Requests must carry `Authorization: Bearer KEY` for a key whose SHA-256 is configured; keys change without
// restarting the listener.
//
// Whoever reaches the port holds a connection before proving anything, so what a client can hold is bounded
// (httpsLimits): the connections that have not made an authenticated request yet, per source and in all, and the
// time each phase of a request may take. A request without a valid key is answered and its connection closed.
type HTTPSListener struct {
	handler  http.Handler
	stateDir string
	health   *health.Tracker
	log      *slog.Logger
	limits   httpsLimits // zero fields: the defaults

	keys atomic.Pointer[map[string]apiKey] // hex SHA-256 → key

	mu      sync.Mutex
	running listenerSpec
	stop    context.CancelFunc
	done    chan struct{}
}

// HTTPSOptions are what the HTTPS listener needs.
type HTTPSOptions struct {
	Handler  http.Handler // the API, as Server.Handler serves it
	StateDir string       // where a self-signed certificate is kept
	Health   *health.Tracker
	Logger   *slog.Logger
}

// NewHTTPSListener returns the HTTPS listener, stopped until Apply is given a configuration that sets it.
func NewHTTPSListener(o HTTPSOptions) *HTTPSListener {
	return &HTTPSListener{handler: o.Handler, stateDir: o.StateDir, health: o.Health, log: o.Logger}
}

// httpsLimits bound the management API's clients.
type httpsLimits struct {
	// header bounds the TLS handshake and the request's headers together (net/http applies the shortest of the
	// timeouts to the handshake): a client that trickles bytes is cut.
	header time.Duration
	read   time.Duration // the whole request, body included
	write  time.Duration // from the end of the headers to the end of the answer
	idle   time.Duration // a kept-alive connection between requests
	// conns and perSource bound the connections that have not made an authenticated request yet, in all and
	// per source (an IPv4 address or an IPv6 /64). A new connection is always taken; to make room, the oldest
	// of its own source at perSource, or of the source holding the most at conns, is closed (package shed). An
	// admin's connection, one among a flood's many per source, is not the one closed; once it has made an
	// authenticated request it no longer counts.
	conns, perSource int
}

func (l httpsLimits) withDefaults() httpsLimits {
	or := func(v, def time.Duration) time.Duration {
		if v == 0 {
			return def
		}
		return v
	}
	l.header = or(l.header, 10*time.Second)
	l.read = or(l.read, time.Minute) // a body of up to the API's 16 MiB over a slow management link
	// A commit answers once it is applied (charon started, or every component rolled back): minutes at worst.
	l.write = or(l.write, 3*time.Minute)
	l.idle = or(l.idle, time.Minute)
	if l.conns == 0 {
		// Not sized by the handful of admins and scripts, who hold few connections, but by the floods it must
		// outlast: an admin's connection is shed only by a flood from about as many sources as this bound, and
		// dozens of addresses are cheap to come by. A slot costs a goroutine and TLS state, a few tens of KiB.
		l.conns = 256
	}
	if l.perSource == 0 {
		l.perSource = 8
	}
	return l
}

// apiMaxHeaderBytes bounds a request's headers: a bearer key and the usual few lines fit many times over.
const apiMaxHeaderBytes = 16 << 10

type listenerSpec struct {
	addr     netip.AddrPort
	certPEM  string
	keyPEM   string
	hostname string
}

func (a *HTTPSListener) Name() string { return "api" }

func specOf(c *config.Config) listenerSpec {
	h := c.API.HTTPS
	if !h.ListenAddress.IsValid() {
		return listenerSpec{}
	}
	s := listenerSpec{addr: netip.AddrPortFrom(h.ListenAddress, uint16(h.Port)), hostname: c.System.HostName}
	if cert := c.PKI.Certificates[h.Certificate]; h.Certificate != "" && cert != nil {
		s.certPEM, s.keyPEM = cert.Certificate, string(cert.PrivateKey)
	}
	return s
}

// Apply implements Component.
func (a *HTTPSListener) Apply(ctx context.Context, _, new *config.Config) error {
	keys := map[string]apiKey{}
	for name, k := range new.API.Keys {
		keys[string(k.KeyHash)] = apiKey{name: name, readOnly: k.Role == RoleReadOnly}
	}
	a.keys.Store(&keys)

	want := specOf(new)
	a.mu.Lock()
	defer a.mu.Unlock()
	if want == a.running {
		return nil
	}
	a.stopLocked()
	if !want.addr.IsValid() {
		a.health.Remove(a.Name())
		return nil
	}
	cert, err := a.certificate(want)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", want.addr.String())
	if err != nil {
		return fmt.Errorf("api https: listen on %s: %w", want.addr, err)
	}
	lim := a.limits.withDefaults()
	capped := newConnLimiter(ln, lim.conns, lim.perSource)
	tlsLn := tls.NewListener(capped, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	srv := &http.Server{Handler: a.authenticate(a.handler), ReadHeaderTimeout: lim.header, ReadTimeout: lim.read,
		WriteTimeout: lim.write, IdleTimeout: lim.idle, MaxHeaderBytes: apiMaxHeaderBytes,
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug), ConnContext: withLimitedConn}
	sctx, cancel := context.WithCancel(context.Background())
	a.stop, a.done, a.running = cancel, make(chan struct{}), want
	done := a.done
	go func() {
		defer close(done)
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(tlsLn) }()
		select {
		case err := <-errc:
			a.log.Error("API HTTPS listener stopped", "err", err)
			a.health.Set(a.Name(), health.Failed, err.Error())
			return
		case <-sctx.Done():
		}
		shctx, c := context.WithTimeout(context.Background(), 10*time.Second)
		defer c()
		if srv.Shutdown(shctx) != nil {
			srv.Close()
		}
		<-errc
	}()
	a.health.Set(a.Name(), health.OK, "HTTPS on "+want.addr.String())
	return nil
}

func (a *HTTPSListener) stopLocked() {
	if a.stop != nil {
		a.stop()
		<-a.done
		a.stop, a.done, a.running = nil, nil, listenerSpec{}
	}
}

// Close stops the listener.
func (a *HTTPSListener) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopLocked()
	return nil
}

// RoleReadOnly is the role of an API key that may read but change nothing (api keys NAME role).
const RoleReadOnly = "read-only"

// apiKey is a configured API key: its name, and whether its role is read-only (else admin).
type apiKey struct {
	name     string
	readOnly bool
}

// readOnlyAllowed reports whether a read-only key may make r: a read that shows no secret. The unix socket
// never asks: its file mode is its gate, and whoever opens it is admin.
func readOnlyAllowed(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	switch {
	case r.URL.Path == "/api/v1/config" && r.URL.Query().Get("secrets") == "show":
		return false
	case strings.HasPrefix(r.URL.Path, "/vpn/nfv/") && strings.HasSuffix(r.URL.Path, "/client-config"):
		return false // the profile holds the user's private key
	}
	return true
}

// authenticate admits requests with a configured API key and names the key as their author: 401 without a
// key it knows, 403 for a read-only key's request that changes state or shows a secret.
func (a *HTTPSListener) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(token))
		got := hex.EncodeToString(sum[:])
		var key apiKey
		if ok && token != "" {
			for hash, k := range *a.keys.Load() {
				if subtle.ConstantTimeCompare([]byte(hash), []byte(got)) == 1 {
					key = k
				}
			}
		}
		name := key.name
		if name == "" {
			// A stranger keeps no kept-alive connection.
			w.Header().Set("Connection", "close")
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("WWW-Authenticate", `Bearer realm="toride"`)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"code":"unauthorized","message":"send Authorization: Bearer KEY with a key configured under api keys"}` + "\n"))
			return
		}
		if c, ok := r.Context().Value(limitedConnKey{}).(*limitedConn); ok {
			c.authenticated()
		}
		if key.readOnly && !readOnlyAllowed(r) {
			writeJSON(w, http.StatusForbidden, &Error{Code: "forbidden",
				Message: fmt.Sprintf("API key %s is read-only: it may read, without secrets, and change nothing", name)})
			return
		}
		next.ServeHTTP(w, r.WithContext(WithAuthor(r.Context(), "api-key:"+name)))
	})
}

// certificate returns the configured certificate, or a self-signed one kept in the state directory so that
// clients can pin it across restarts.
func (a *HTTPSListener) certificate(s listenerSpec) (tls.Certificate, error) {
	if s.certPEM != "" {
		c, err := tls.X509KeyPair([]byte(s.certPEM), []byte(s.keyPEM))
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("api https: certificate: %w", err)
		}
		return c, nil
	}
	path := filepath.Join(a.stateDir, "api-https.pem")
	if data, err := os.ReadFile(path); err == nil {
		if c, err := tls.X509KeyPair(data, data); err == nil && certCovers(c, s.addr.Addr()) {
			return c, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return tls.Certificate{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: s.hostname + " management API"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IP(s.addr.Addr().AsSlice())},
		DNSNames:     []string{s.hostname},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	data := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})...)
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(data, data)
}

func certCovers(c tls.Certificate, addr netip.Addr) bool {
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil || time.Now().After(leaf.NotAfter) {
		return false
	}
	for _, ip := range leaf.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok && a.Unmap() == addr {
			return true
		}
	}
	return false
}

// connLimiter is a listener that bounds the connections that have not made an authenticated request yet, in all
// and per source, by shedding (package shed): Accept always returns the new connection, and closes the ones that
// make room for it. A connection stops counting at its first authenticated request, or when it is closed.
type connLimiter struct {
	net.Listener

	mu      sync.Mutex
	waiting *shed.Queue[*limitedConn]
}

func newConnLimiter(ln net.Listener, total, perSource int) *connLimiter {
	return &connLimiter{Listener: ln, waiting: shed.NewQueue[*limitedConn](total, perSource, nil)}
}

func (l *connLimiter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	from := netip.Addr{}
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		from = ta.AddrPort().Addr()
	}
	lc := &limitedConn{Conn: c, l: l}
	var victims []*limitedConn
	l.mu.Lock()
	lc.entry = l.waiting.Push(from, lc, func(v *limitedConn) {
		v.entry = nil
		victims = append(victims, v)
	})
	l.mu.Unlock()
	for _, v := range victims {
		v.Conn.Close() // its server goroutine fails and returns
	}
	return lc, nil
}

// release stops counting c; idempotent.
func (l *connLimiter) release(c *limitedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.waiting.Remove(c.entry)
	c.entry = nil
}

// limitedConn is a connection a connLimiter counts until it is closed or has made an authenticated request.
type limitedConn struct {
	net.Conn
	l     *connLimiter
	entry *shed.Entry[*limitedConn] // guarded by l.mu; nil once not counted
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.l.release(c)
	return err
}

// authenticated takes c out of the bound: its client holds an API key.
func (c *limitedConn) authenticated() { c.l.release(c) }

// limitedConnKey is the request context's key of the connection the request came on.
type limitedConnKey struct{}

// withLimitedConn is the API server's ConnContext: it puts the connection's limitedConn in its requests'
// context, for authenticate to release.
func withLimitedConn(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		if lc, ok := tc.NetConn().(*limitedConn); ok {
			return context.WithValue(ctx, limitedConnKey{}, lc)
		}
	}
	return ctx
}
