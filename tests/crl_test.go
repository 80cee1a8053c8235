package tests

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"toride/appliance/api"
	"toride/appliance/config"
	"toride/sslvpn/pki"
	"toride/sslvpn/pki/pkitest"
	"toride/tests/lab"
	"toride/tests/occlient"
	"toride/tests/ovpnclient"
	"toride/tests/toridetest"
)

// crlStatus is a server's CRLs as GET /api/v1/sslvpn/status shows them.
type crlStatus struct {
	Issuer, Number string
	Revoked        int
	Stale          bool
}

func (v *vpnLab) crls() []crlStatus {
	v.t.Helper()
	var st struct {
		Servers []struct{ CRLs []crlStatus }
	}
	v.rest("GET", "/api/v1/sslvpn/status", nil, &st, 0)
	if len(st.Servers) != 1 {
		v.t.Fatalf("status: %d servers", len(st.Servers))
	}
	return st.Servers[0].CRLs
}

// crlPEM makes a CRL of ca revoking serials, numbered number, whose next update is validity away (negative: past).
func crlPEM(t *testing.T, ca *pki.CA, number int64, validity time.Duration, serials ...*big.Int) string {
	t.Helper()
	var revs []pki.Revocation
	for _, s := range serials {
		revs = append(revs, pki.Revocation{Serial: s, Time: time.Now().Add(-time.Minute)})
	}
	text, err := ca.CRL(revs, big.NewInt(number), validity)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// TestOpenVPNRevokedIntermediateAndCRLOrder, with the stock openvpn client and an external root CA whose
// intermediate issued the user's certificate (the client sends the intermediate):
//   - the root's CRL revoking the intermediate cuts the user's live session and refuses the user at the handshake,
//     and openconnect with the same certificate too;
//   - a CRL older than the one in force is refused through PUT …/crl and through a commit, naming the field;
//   - a rollback to a configuration holding the older CRL goes through, and the newer CRL stays in force, also
//     after a restart (a rollback never un-revokes);
//   - a stale CRL stays in force (the intermediate stays revoked) while a certificate it does not list gets in,
//     and the status, `toride show sslvpn` and the log say it is stale.
func TestOpenVPNRevokedIntermediateAndCRLOrder(t *testing.T) {
	v := newVPNLab(t, false)
	pkiChain := pkitest.NewChain(t, "Corp Root CA", "Sales CA", 24*time.Hour)
	var trusted struct {
		CA struct{ Name string } `json:"ca"`
	}
	v.rest("PUT", v.conn("/ca"), []byte(pkiChain.RootPEM), &trusted, 0)
	caName := trusted.CA.Name
	profileOf := func(is pki.Issued, chain string) string {
		return replaceBlock(replaceBlock(v.profile("carol", ""), "cert", is.CertPEM+chain), "key", is.KeyPEM)
	}
	bob, err := pkiChain.Intermediate.IssueClient("bob", 0)
	if err != nil {
		t.Fatal(err)
	}
	bobProfile := profileOf(bob, pkiChain.IntermediatePEM)

	// CRL 1 revokes nothing; bob gets in through the intermediate.
	v.putBody(v.conn("/crl"), []byte(crlPEM(t, pkiChain.Root, 1, time.Hour)))
	bc := v.connect("bob", bobProfile, nil)
	v.pingLAN()

	// CRL 2 revokes the intermediate: bob's live session is cut, and he cannot come back.
	v.putBody(v.conn("/crl"), []byte(crlPEM(t, pkiChain.Root, 2, time.Hour, pkiChain.IntermediateSerial)))
	if err := bc.WaitLog(lab.Within(t, 5*time.Second), "certificate revoked"); err != nil {
		t.Fatalf("bob's live session under the revoked intermediate was not cut: %v\nserver log:\n%s", err, v.box.Proc.Output())
	}
	bc.Stop()
	v.refusedAtHandshake(bobProfile)
	// openconnect too (AnyConnect on the same port), with bob's certificate and the intermediate.
	files := v.acUser("carol")
	if err := os.WriteFile(files.cert, []byte(bob.CertPEM+pkiChain.IntermediatePEM), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files.key, []byte(bob.KeyPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	mark := len(v.box.Proc.Output())
	oc := occlient.Start(t, v.client, occlient.Options{Server: "https://192.0.2.1/", CAFile: files.ca, Args: []string{"-c", files.cert, "-k", files.key}})
	if err := lab.WaitFor(lab.Within(t, 20*time.Second), 50*time.Millisecond, func() error {
		if !strings.Contains(v.box.Proc.Output()[mark:], "AnyConnect handshake failed") || !strings.Contains(v.box.Proc.Output()[mark:], "is issued under the CA CN=Sales CA") {
			return errors.New("the server did not refuse openconnect's handshake for the revoked intermediate")
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\nserver log:\n%s", err, v.box.Proc.Output()[mark:])
	}
	oc.Stop()

	// An older CRL, through the REST API: refused, and CRL 2 stays in force.
	err = v.box.API.Do(context.Background(), "PUT", v.conn("/crl"), []byte(crlPEM(t, pkiChain.Root, 1, time.Hour)), nil)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || ae.Code != "crl_older" || !strings.Contains(ae.Message, "number 1") || !strings.Contains(ae.Message, "number 2") {
		t.Fatalf("PUT of an older CRL: %v", err)
	}
	// Through a commit: refused, naming the field, the CRL and the fix.
	v.commands(fmt.Sprintf("set pki ca %s crl %s", caName, config.Quote(crlPEM(t, pkiChain.Root, 1, 2*time.Hour))))
	err = v.box.API.Do(context.Background(), "POST", "/api/v1/config/commit", map[string]any{}, nil)
	if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity || len(ae.Problems) != 1 {
		t.Fatalf("commit of an older CRL: %v", err)
	}
	if p := ae.Problems[0]; p.Path != "pki.ca."+caName+".crl" || !strings.Contains(p.Value, "number 1") ||
		!strings.Contains(p.Message, "older than the CRL in force (number 2") || !strings.Contains(p.Fix, "newest CRL") {
		t.Fatalf("the commit's problem: %+v", p)
	}
	v.rest("POST", "/api/v1/config/discard", nil, nil, 0)
	if crls := v.crls(); len(crls) != 1 || crls[0].Number != "2" {
		t.Fatalf("CRLs in force after the refusals: %+v", crls)
	}

	// A rollback to the configuration with CRL 1 goes through; CRL 2 stays in force, also after a restart.
	v.rest("POST", "/api/v1/config/rollback", map[string]any{"revision": 1}, nil, 0)
	var running config.Config
	if err := v.box.API.Do(context.Background(), "GET", "/api/v1/config", nil, &running); err != nil {
		t.Fatal(err)
	}
	if crl, err := pki.ParseCRL([]byte(running.PKI.CAs[caName].CRL)); err != nil || crl.Number.Int64() != 1 {
		t.Fatalf("the rollback did not bring back the configuration with CRL 1: %v", err)
	}
	if crls := v.crls(); len(crls) != 1 || crls[0].Number != "2" {
		t.Fatalf("CRLs in force after the rollback: %+v", crls)
	}
	v.refusedAtHandshake(bobProfile)
	var status struct {
		Components map[string]struct{ State, Message string }
	}
	v.rest("GET", "/api/v1/status", nil, &status, 0)
	if c := status.Components["sslvpn"]; c.State != "degraded" || !strings.Contains(c.Message, "stays in force") {
		t.Fatalf("the status does not say the newer CRL stays in force: %+v", status.Components)
	}
	v.box.Proc.Stop()
	v.box = toridetest.Start(t, v.box.NS, v.box.StateDir)
	if crls := v.crls(); len(crls) != 1 || crls[0].Number != "2" {
		t.Fatalf("CRLs in force after a restart: %+v", crls)
	}
	v.refusedAtHandshake(bobProfile)

	// CRL 3, already past its next update, still revokes the intermediate; dave, issued by the root and not on
	// it, gets in; the status, the console and the log say it is stale.
	v.putBody(v.conn("/crl"), []byte(crlPEM(t, pkiChain.Root, 3, -30*time.Second, pkiChain.IntermediateSerial)))
	if crls := v.crls(); len(crls) != 1 || crls[0].Number != "3" || !crls[0].Stale {
		t.Fatalf("a stale CRL in the status: %+v", crls)
	}
	if out := v.box.MustToride("show", "sslvpn"); !strings.Contains(out, "STALE") || !strings.Contains(out, "Corp Root CA") {
		t.Fatalf("show sslvpn does not show the stale CRL:\n%s", out)
	}
	if err := v.box.Proc.WaitOutput(lab.Within(t, 5*time.Second), "is stale since"); err != nil {
		t.Fatalf("the stale CRL is not logged: %v", err)
	}
	v.refusedAtHandshake(bobProfile)
	dave, err := pkiChain.Root.IssueClient("dave", 0)
	if err != nil {
		t.Fatal(err)
	}
	dc := v.connect("dave", profileOf(dave, ""), nil)
	defer dc.Stop()
	v.pingLAN()
}

// refusedAtHandshake starts a client that the server must refuse in the TLS handshake, for a revoked CA in its
// chain: the client hears a bad certificate alert, the server logs why.
func (v *vpnLab) refusedAtHandshake(profile string) {
	v.t.Helper()
	mark := len(v.box.Proc.Output())
	c := ovpnclient.Start(v.t, v.client, ovpnclient.Options{Config: profile, User: "bob"})
	defer c.Stop()
	if err := c.WaitLog(lab.Within(v.t, 20*time.Second), "fatal SSL alert: bad certificate"); err != nil {
		v.t.Fatalf("the client was not refused at the handshake: %v\nserver log:\n%s", err, v.box.Proc.Output()[mark:])
	}
	if err := lab.WaitFor(lab.Within(v.t, 5*time.Second), 50*time.Millisecond, func() error {
		if !strings.Contains(v.box.Proc.Output()[mark:], "is issued under the CA CN=Sales CA") {
			return errors.New("the server did not log why")
		}
		return nil
	}); err != nil {
		v.t.Fatalf("%v\nserver log:\n%s", err, v.box.Proc.Output()[mark:])
	}
}
