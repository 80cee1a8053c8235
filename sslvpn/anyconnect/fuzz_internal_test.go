package anyconnect

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/netip"
	"regexp"
	"testing"
	"time"

	"toride/sslvpn/anyconnect/internal/httpwire"
)

// fuzzBackend accepts alice with her password and OTP.
type fuzzBackend struct{}

func (fuzzBackend) Authenticate(_ context.Context, r *AuthRequest) (*Identity, error) {
	if r.Username == "alice" && (r.Password == "pw" || r.Password == "") && (!r.HasOTP || r.OTP == "123456") {
		return &Identity{User: r.Username}, nil
	}
	return nil, errors.New("Login failed <&>")
}
func (fuzzBackend) Connect(context.Context, *ConnectRequest, Session) (*Grant, error) {
	return nil, errors.New("no")
}
func (fuzzBackend) Disconnected(Session, error) {}

func selfSigned(t testing.TB) tls.Certificate {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vpn"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

var handleRE = regexp.MustCompile(`<aggauth-handle>([0-9a-f]+)</aggauth-handle>`)

// FuzzHTTPHandling feeds a stream of requests to the gateway's HTTP handling (login state machine, profile
// download, CONNECT parsing), as one connection would. "@@" in a request body stands for the login handle of
// the last answer, so seeds can walk through multi-form logins. Every answer must be a well-formed HTTP
// response, the pre-login tables must stay within their bounds, and nothing may panic.
func FuzzHTTPHandling(f *testing.F) {
	init := `<?xml version="1.0"?><config-auth client="vpn" type="init"><group-select>%s</group-select></config-auth>`
	reply := `<config-auth client="vpn" type="auth-reply"><opaque is-for="sg"><aggauth-handle>@@</aggauth-handle></opaque><auth><username>alice</username><password>pw</password><answer>123456</answer></auth></config-auth>`
	post := func(body string) string {
		return "POST / HTTP/1.1\r\nHost: vpn\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body
	}
	f.Add([]byte(post(sprintf(init, "staff")) + post(reply) + post(reply) + "GET /profiles/staff.xml HTTP/1.1\r\n\r\n"))
	f.Add([]byte(post(sprintf(init, "secure")) + post(reply) + post(reply)))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\nCONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nCookie: webvpn=00\r\nX-CSTP-Base-MTU: 9000\r\nX-DTLS-CipherSuite: PSK-NEGOTIATE\r\n\r\n"))
	f.Add([]byte(post(`<config-auth type="logout"><session-token>AB</session-token></config-auth>`)))
	cert := selfSigned(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := NewServer(Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, MaxPendingLogins: 8, Groups: []Group{
			{Name: "staff", Password: true, ProfileXML: []byte("<p/>")},
			{Name: "secure", Password: true, OTP: true},
			{Name: "devices", Certificate: true},
		}}, fuzzBackend{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		cn := &conn{remote: netip.MustParseAddrPort("192.0.2.1:5555"), local: netip.MustParseAddrPort("192.0.2.2:443")}
		br := bufio.NewReaderSize(bytes.NewReader(data), 4096)
		handle := ""
		for i := 0; i < 16; i++ {
			req, err := httpwire.ReadRequest(br, httpwire.Limits{})
			if err != nil {
				return
			}
			req.Body = bytes.ReplaceAll(req.Body, []byte("@@"), []byte(handle))
			var resp *httpwire.Response
			if req.Method == "CONNECT" {
				cp := parseConnect(req)
				base, mtu := s.tunnelMTU(cp)
				if base < 576 || base > 1500 || mtu < 510 || mtu > base {
					t.Fatalf("MTU %d over base %d", mtu, base)
				}
				s.cookieOf(req)
				continue
			}
			resp = s.handleHTTP(context.Background(), cn, req)
			wire := resp.Append(nil)
			hr, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(wire)), nil)
			if err != nil {
				t.Fatalf("answer is not HTTP: %v\n%q", err, wire)
			}
			hr.Body.Close()
			if m := handleRE.FindSubmatch(resp.Body); m != nil {
				handle = string(m[1])
			}
			s.mu.Lock()
			pending, order, unused := len(s.pending), s.pendingOrder.Len(), s.unusedCookies.Len()
			s.mu.Unlock()
			if pending != order || pending > 8 || unused > 4*8 {
				t.Fatalf("pending logins %d (in order %d), unused cookies %d: over the bounds or out of step", pending, order, unused)
			}
		}
	})
}

func itoa(n int) string { return sprintf("%d", n) }

func sprintf(format string, a ...any) string { return fmt.Sprintf(format, a...) }
