package openvpn_test

import (
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"toride/sslvpn/openvpn"
	"toride/sslvpn/openvpn/internal/keymethod"
	"toride/sslvpn/openvpn/internal/wire"
)

// With -capture-seeds the interop tests record what the stock client sends and write it into the fuzz corpora
// (testdata/fuzz/FuzzXxx of the package that parses it). Run once after protocol changes:
//
//	go test -run TestInterop -capture-seeds ./sslvpn/openvpn/
var captureSeeds = flag.Bool("capture-seeds", false, "write packets from the stock client into the fuzz seed corpora")

// recorder keeps the first packets a server socket received.
type recorder struct {
	mu     sync.Mutex
	pkts   [][]byte
	stream []byte // TCP bytes, split into packets at the end
}

func (r *recorder) add(p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pkts) < 200 {
		r.pkts = append(r.pkts, append([]byte(nil), p...))
	}
}

func (r *recorder) addStream(p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.stream) < 1<<20 {
		r.stream = append(r.stream, p...)
	}
}

func (r *recorder) packets() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([][]byte(nil), r.pkts...)
	s := r.stream
	for len(s) >= 2 {
		n := int(binary.BigEndian.Uint16(s))
		if len(s) < 2+n {
			break
		}
		out = append(out, s[2:2+n])
		s = s[2+n:]
	}
	return out
}

type recPacketConn struct {
	net.PacketConn
	r *recorder
}

func (c *recPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := c.PacketConn.ReadFrom(b)
	if err == nil {
		c.r.add(b[:n])
	}
	return n, a, err
}

type recConn struct {
	net.Conn
	r *recorder
}

func (c *recConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.r.addStream(b[:n])
	return n, err
}

// corpusEntry formats one seed in Go's corpus file format.
func corpusEntry(vals ...any) []byte {
	s := "go test fuzz v1\n"
	for _, v := range vals {
		switch v := v.(type) {
		case []byte:
			s += fmt.Sprintf("[]byte(%q)\n", v)
		case string:
			s += fmt.Sprintf("string(%q)\n", v)
		case bool:
			s += fmt.Sprintf("bool(%v)\n", v)
		}
	}
	return []byte(s)
}

func writeSeed(t *testing.T, dir, target string, vals ...any) {
	b := corpusEntry(vals...)
	sum := sha256.Sum256(b)
	path := filepath.Join(dir, "testdata", "fuzz", target, fmt.Sprintf("stock-openvpn-%x", sum[:6]))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// saveSeeds writes what a test captured. tlsCrypt says whether control packets are wrapped.
func (e *interop) saveSeeds(r *recorder, tlsCrypt bool) {
	t := e.t
	per := map[string]int{}
	limit := func(target string) bool { per[target]++; return per[target] <= 2 }
	for _, p := range r.packets() {
		if len(p) == 0 {
			continue
		}
		op, _ := wire.SplitHeader(p[0])
		switch {
		case op.IsData():
			if limit("data") {
				writeSeed(t, "internal/wire", "FuzzDataHeader", p)
				writeSeed(t, "internal/datachannel", "FuzzDecrypt", p)
				writeSeed(t, ".", "FuzzSession", p)
			}
		case tlsCrypt:
			if limit("tlscrypt") {
				writeSeed(t, "internal/tlscrypt", "FuzzUnwrap", p)
			}
		default:
			if limit(op.String()) {
				writeSeed(t, "internal/wire", "FuzzControlPacket", p)
				writeSeed(t, ".", "FuzzSession", p)
			}
		}
	}
	// The key-method 2 message travels inside TLS; rebuild it from what the client sent (its real options,
	// credentials and peer info, fresh randoms).
	if req := e.be.lastRequest(); req != nil {
		pi := keymethod.PeerInfo{Vars: req.PeerInfo.Vars}
		m := &keymethod.Message{IsClient: true, Options: req.Options, Username: req.Username, Password: req.Password,
			PeerInfo: pi.String(), HasPeerInfo: true}
		writeSeed(t, "internal/keymethod", "FuzzParse", m.Append(nil), true)
		writeSeed(t, "internal/keymethod", "FuzzPeerInfo", pi.String())
		if _, _, err := openvpn.ParseStaticChallenge(req.Password); err == nil {
			writeSeed(t, ".", "FuzzStaticChallenge", req.Password)
		}
	}
}
