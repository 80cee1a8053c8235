package appliance

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

	"toride/appliance/api"
	"toride/appliance/atomicfile"
	"toride/appliance/config"
	"toride/appliance/health"
)

// apiHTTPS is the "api" component: the API on HTTPS for remote management, when api https listen-address is
// set. Requests must carry `Authorization: Bearer KEY` for a key whose SHA-256 is configured; keys change without
// restarting the listener.
type apiHTTPS struct {
	handler  http.Handler
	stateDir string
	health   *health.Tracker
	log      *slog.Logger

	keys atomic.Pointer[map[string]string] // hex SHA-256 → key name

	mu      sync.Mutex
	running listenerSpec
	stop    context.CancelFunc
	done    chan struct{}
}

type listenerSpec struct {
	addr     netip.AddrPort
	certPEM  string
	keyPEM   string
	hostname string
}

func (a *apiHTTPS) Name() string { return "api" }

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
func (a *apiHTTPS) Apply(ctx context.Context, _, new *config.Config) error {
	keys := map[string]string{}
	for name, k := range new.API.Keys {
		keys[string(k.KeyHash)] = name
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
	tlsLn := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	srv := &http.Server{Handler: a.authenticate(a.handler), ReadHeaderTimeout: 10 * time.Second}
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

func (a *apiHTTPS) stopLocked() {
	if a.stop != nil {
		a.stop()
		<-a.done
		a.stop, a.done, a.running = nil, nil, listenerSpec{}
	}
}

// Close stops the listener.
func (a *apiHTTPS) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopLocked()
	return nil
}

// authenticate admits requests with a configured API key and names the key as their author.
func (a *apiHTTPS) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(token))
		got := hex.EncodeToString(sum[:])
		name := ""
		if ok && token != "" {
			for hash, n := range *a.keys.Load() {
				if subtle.ConstantTimeCompare([]byte(hash), []byte(got)) == 1 {
					name = n
				}
			}
		}
		if name == "" {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("WWW-Authenticate", `Bearer realm="toride"`)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"code":"unauthorized","message":"send Authorization: Bearer KEY with a key configured under api keys"}` + "\n"))
			return
		}
		next.ServeHTTP(w, r.WithContext(api.WithAuthor(r.Context(), "api-key:"+name)))
	})
}

// certificate returns the configured certificate, or a self-signed one kept in the state directory so that
// clients can pin it across restarts.
func (a *apiHTTPS) certificate(s listenerSpec) (tls.Certificate, error) {
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
