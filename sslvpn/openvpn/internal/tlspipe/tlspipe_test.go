package tlspipe

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"
)

func TestFeedTakeReadWrite(t *testing.T) {
	notified := 0
	p := New(10, func() { notified++ }, nil)
	if err := p.Feed([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 3)
	if n, _ := p.Read(b); string(b[:n]) != "hel" {
		t.Errorf("read %q", b[:n])
	}
	if n, _ := p.Read(b); string(b[:n]) != "lo" {
		t.Errorf("read %q", b[:n])
	}
	if _, err := p.Write([]byte("0123456789x")); !errors.Is(err, ErrOverflow) {
		t.Errorf("overflow write: %v", err)
	}
	p.Write([]byte("abc"))
	p.Write([]byte("de"))
	if notified != 2 || p.Pending() != 5 {
		t.Errorf("notified %d pending %d", notified, p.Pending())
	}
	if got := string(p.Take(4)); got != "abcd" {
		t.Errorf("Take = %q", got)
	}
	if err := p.Feed(make([]byte, 11)); !errors.Is(err, ErrOverflow) {
		t.Errorf("overflow feed: %v", err)
	}
	done := make(chan error)
	go func() { _, err := p.Read(b); done <- err }()
	time.Sleep(10 * time.Millisecond)
	p.Close()
	p.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
}

// A real TLS handshake across two pipes, pumped like the control loop does.
func TestTLSOverPipes(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"s"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	wake := make(chan struct{}, 1)
	notify := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	sp, cp := New(1<<20, notify, nil), New(1<<20, notify, nil)
	srv := tls.Server(sp, &tls.Config{Certificates: []tls.Certificate{cert}})
	cli := tls.Client(cp, &tls.Config{InsecureSkipVerify: true})
	var wg sync.WaitGroup
	wg.Add(2)
	errs := make(chan error, 2)
	go func() { defer wg.Done(); errs <- srv.Handshake() }()
	go func() { defer wg.Done(); errs <- cli.Handshake() }()
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-wake:
			case <-time.After(5 * time.Millisecond):
			}
			if b := sp.Take(100); b != nil {
				cp.Feed(b)
			}
			if b := cp.Take(100); b != nil {
				sp.Feed(b)
			}
		}
	}()
	wg.Wait()
	close(stop)
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
