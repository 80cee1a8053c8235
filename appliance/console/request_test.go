package console

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/boombuler/barcode/qr"

	"toride/appliance/cloudapi"
)

// requestAPI records the requests of the request and export commands and answers them as torided does.
type requestAPI struct {
	*statusAPI
	calls []string
	crl   []byte
}

func (f *requestAPI) IssueOTP(_ context.Context, server, user string) (cloudapi.OTPIssued, error) {
	f.calls = append(f.calls, "otp "+server+" "+user)
	return cloudapi.OTPIssued{Key: cloudapi.OTPKey{UserID: user, Secret: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
		OTPAuthURI: "otpauth://totp/Toride%20" + server + ":" + user + "?algorithm=SHA1&digits=6&issuer=Toride+" + server +
			"&period=30&secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"}}, nil
}

func (f *requestAPI) DeleteOTP(_ context.Context, server, user string) error {
	f.calls = append(f.calls, "delete otp "+server+" "+user)
	return nil
}

func (f *requestAPI) Disconnect(_ context.Context, server, id string) error {
	f.calls = append(f.calls, "disconnect "+server+" "+id)
	return nil
}

func (f *requestAPI) LoadCRL(_ context.Context, server string, crl []byte) (cloudapi.CRLLoaded, error) {
	f.calls, f.crl = append(f.calls, "crl "+server), crl
	return cloudapi.CRLLoaded{CRL: cloudapi.LoadedCRL{CA: "corp", Issuer: "CN=Corp Root CA", Revoked: 2,
		NextUpdate: time.Now().Add(-time.Hour), Stale: true}}, nil
}

func (f *requestAPI) IssueCertificate(_ context.Context, server, user string) (cloudapi.IssuedCertificate, error) {
	f.calls = append(f.calls, "issue "+server+" "+user)
	return cloudapi.IssuedCertificate{Serial: "0A1B", NotAfter: time.Date(2027, 12, 5, 12, 0, 0, 0, time.Local)}, nil
}

func (f *requestAPI) RevokeCertificate(_ context.Context, server, user string) error {
	f.calls = append(f.calls, "revoke "+server+" "+user)
	return nil
}

func (f *requestAPI) ClientConfig(_ context.Context, server, user string, udp bool) ([]byte, error) {
	proto := "tcp"
	if udp {
		proto = "udp"
	}
	f.calls = append(f.calls, "profile "+server+" "+user+" "+proto)
	return []byte("client\nproto " + proto + "\n<key>\nsecret\n</key>\n"), nil
}

func newRequestAPI() *requestAPI {
	return &requestAPI{statusAPI: newStatusAPI()}
}

// readQR reads a QR code drawn by WriteQR back into its modules, without the margin.
func readQR(t *testing.T, drawn string) [][]bool {
	t.Helper()
	var rows [][]bool
	for _, l := range strings.Split(drawn, "\n") {
		if !strings.HasPrefix(l, qrColours) {
			continue
		}
		l = strings.TrimSuffix(strings.TrimPrefix(l, qrColours), resetColours)
		var top, bottom []bool
		for _, r := range l {
			top = append(top, r == '█' || r == '▀')
			bottom = append(bottom, r == '█' || r == '▄')
		}
		rows = append(rows, top, bottom)
	}
	if len(rows) < 2*quietZone {
		t.Fatalf("no QR code in:\n%s", drawn)
	}
	var out [][]bool
	for _, r := range rows[quietZone:] {
		if len(out) == len(rows[0])-2*quietZone {
			break
		}
		out = append(out, r[quietZone:len(r)-quietZone])
	}
	return out
}

// TestOTPGenerate: the key is shown once with its URI; on a terminal the URI is drawn as a QR code whose
// every module is the encoder's, in 80 columns; elsewhere the text says there is none.
func TestOTPGenerate(t *testing.T) {
	for _, terminal := range []bool{true, false} {
		a := newRequestAPI()
		var out bytes.Buffer
		sh := New(Options{API: a, Stdout: &out, Stderr: &out, Terminal: &terminal})
		if err := sh.Exec(context.Background(), strings.Fields("request sslvpn otp generate main bob")); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a.calls, []string{"otp main bob"}) {
			t.Errorf("calls %q", a.calls)
		}
		key, _ := a.IssueOTP(context.Background(), "main", "bob")
		for _, want := range []string{"secret  " + key.Key.Secret, "URI     " + key.Key.OTPAuthURI} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("terminal %v: lacks %q:\n%s", terminal, want, out.String())
			}
		}
		if !terminal {
			if strings.Contains(out.String(), "█") || !strings.Contains(out.String(), "no QR code") {
				t.Errorf("not a terminal:\n%s", out.String())
			}
			continue
		}
		code, err := qr.Encode(key.Key.OTPAuthURI, qr.M, qr.Auto)
		if err != nil {
			t.Fatal(err)
		}
		got := readQR(t, out.String())
		n := code.Bounds().Dx()
		if len(got) != n {
			t.Fatalf("%d rows of modules, want %d", len(got), n)
		}
		for y := range n {
			for x := range n {
				r, _, _, _ := code.At(x, y).RGBA()
				if got[y][x] != (r == 0) {
					t.Fatalf("module (%d,%d) is %v", x, y, got[y][x])
				}
			}
		}
		if w := n + 2*quietZone; w > 80 {
			t.Errorf("the QR code is %d columns wide", w)
		}
	}
}

// TestRequests: each request reaches the API with the server, the user and the session's full ID, the CRL file's
// bytes as they are (DER too), and the profile lands in a file only its owner reads.
func TestRequests(t *testing.T) {
	dir := t.TempDir()
	der := []byte{0x30, 0x82, 0x01, 0x00, 0xff, '\n', 0}
	crlFile := filepath.Join(dir, "corp.crl")
	if err := os.WriteFile(crlFile, der, 0o644); err != nil {
		t.Fatal(err)
	}
	profile := filepath.Join(dir, "bob.ovpn")
	for _, tt := range []struct {
		line string
		call string
		want string
		err  string
	}{
		{line: "request sslvpn otp delete main bob", call: "delete otp main bob", want: "The OTP key of bob is deleted"},
		{line: "request sslvpn session disconnect fedcba98", call: "disconnect main fedcba9876543210", want: "Session fedcba9876543210 on main is disconnected"},
		{line: "request sslvpn session disconnect 0123456789abcdef", call: "disconnect branch 0123456789abcdef"},
		{line: "request sslvpn session disconnect 01", err: "no session"},
		{line: "request sslvpn session disconnect 99999999", err: "no session"},
		{line: "request pki crl load main " + crlFile, call: "crl main", want: "CN=Corp Root CA for CA corp: 2 revoked"},
		{line: "request pki certificate issue main bob", call: "issue main bob", want: "Issued certificate 0A1B to bob, valid until 2027-12-05"},
		{line: "request pki certificate revoke main bob", call: "revoke main bob", want: "revoked"},
		{line: "export sslvpn client-config main bob", call: "profile main bob tcp", want: "proto tcp\n<key>"},
		{line: "export sslvpn client-config main bob proto udp", call: "profile main bob udp", want: "proto udp"},
		{line: "export sslvpn client-config main bob " + profile + " proto udp", call: "profile main bob udp", want: "Wrote the OpenVPN profile"},
		{line: "export sslvpn client-config main bob proto sctp", err: "sctp"},
		{line: "export sslvpn client-config main", err: "export sslvpn client-config SERVER USER"},
		{line: "request sslvpn otp generate main", err: "request sslvpn otp generate|delete SERVER USER"},
	} {
		a := newRequestAPI()
		var out bytes.Buffer
		sh := New(Options{API: a, Stdout: &out, Stderr: &out})
		err := sh.Exec(context.Background(), strings.Fields(tt.line))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || len(a.calls) > 0 {
				t.Errorf("%s: error %v, calls %q; want an error with %q and no call", tt.line, err, a.calls, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.line, err)
			continue
		}
		if !slices.Equal(a.calls, []string{tt.call}) {
			t.Errorf("%s: calls %q, want %q", tt.line, a.calls, tt.call)
		}
		if !strings.Contains(out.String(), tt.want) {
			t.Errorf("%s: output lacks %q:\n%s", tt.line, tt.want, out.String())
		}
		if a.crl != nil && !bytes.Equal(a.crl, der) {
			t.Errorf("the CRL sent is %x, the file %x", a.crl, der)
		}
	}
	fi, err := os.Stat(profile)
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(profile); fi.Mode().Perm() != 0o600 || !strings.Contains(string(data), "proto udp") {
		t.Errorf("profile %v:\n%s", fi.Mode(), data)
	}
}

// TestCompleteRequests: ? and TAB walk the request and export commands, offering the configured servers and users
// for their arguments, proto udp at the end of an export, and Enter only once the required arguments are there.
func TestCompleteRequests(t *testing.T) {
	a := newRequestAPI()
	a.fakeAPI = newFakeAPI(baseConfig + "set sslvpn servers main topology 'subnet'\nset sslvpn servers branch topology 'subnet'\n")
	for _, tt := range []struct {
		line string
		want []string
	}{
		{"request ", []string{"pki", "system", "sslvpn", "<Enter>"}},
		{"request system image install f ", []string{"<sha256>", "<Enter>"}},
		{"request system ", []string{"image", "poweroff", "reboot", "<Enter>"}},
		{"request sslvpn otp ", []string{"delete", "generate", "<Enter>"}},
		{"request sslvpn otp generate ", []string{"<server>", "branch", "main"}},
		{"request sslvpn otp generate m", []string{"<server>", "main"}},
		{"request sslvpn otp generate main ", []string{"<user>", "bob"}},
		{"request sslvpn otp generate main bob ", []string{"<Enter>"}},
		{"request pki crl load main ", []string{"<file>"}},
		{"request sslvpn session disconnect ", []string{"<id>"}},
		{"export sslvpn client-config main bob ", []string{"<file>", "proto", "<Enter>"}},
		{"export sslvpn client-config main bob bob.ovpn proto ", []string{"udp", "tcp"}},
		{"export sslvpn client-config main bob proto udp ", []string{"<Enter>"}},
	} {
		sh := New(Options{API: a})
		_, items, err := sh.Complete(context.Background(), tt.line)
		if err != nil {
			t.Errorf("%q: %v", tt.line, err)
			continue
		}
		if got := words(items); !slices.Equal(got, tt.want) {
			t.Errorf("%q: %q, want %q", tt.line, got, tt.want)
		}
	}
}

// TestGenerateAPIKey: the key is printed once, its SHA-256 and its role go into the candidate (admin unless
// read-only is asked for), and ? offers read-only after the name.
func TestGenerateAPIKey(t *testing.T) {
	for _, tt := range []struct {
		line, role string
	}{{"generate api-key ops", "admin"}, {"generate api-key grafana read-only", "read-only"}} {
		a := newFakeAPI(baseConfig)
		var out, errOut bytes.Buffer
		sh := New(Options{API: a, Stdout: &out, Stderr: &errOut})
		if err := sh.Exec(context.Background(), strings.Fields(tt.line)); err != nil {
			t.Fatal(err)
		}
		name := strings.Fields(tt.line)[2]
		key := strings.TrimSpace(out.String())
		sum := sha256.Sum256([]byte(key))
		k := a.candidate.API.Keys[name]
		if len(key) < 40 || k == nil || string(k.KeyHash) != hex.EncodeToString(sum[:]) || k.Role != tt.role || !sh.changed {
			t.Errorf("%s: key %q, configured %+v", tt.line, key, k)
		}
	}
	if err := New(Options{API: newFakeAPI(baseConfig)}).Exec(context.Background(), strings.Fields("generate api-key ops root")); err == nil {
		t.Error("generate api-key ops root: no error")
	}
	_, items, err := New(Options{API: newFakeAPI(baseConfig)}).Complete(context.Background(), "generate api-key ops ")
	if got := words(items); err != nil || !slices.Equal(got, []string{"read-only", "<Enter>"}) {
		t.Errorf("after the name: %q, %v", got, err)
	}
}
