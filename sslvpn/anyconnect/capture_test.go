package anyconnect_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"toride/sslvpn/anyconnect"
	"toride/sslvpn/anyconnect/internal/httpwire"
)

// With -capture-seeds, the interop tests save what the real openconnect sent as fuzz seeds of every parser
// (testdata/fuzz/...): the HTTP requests, the config-auth bodies, the CSTP frames and the DTLS ClientHellos.
var captureSeeds = flag.Bool("capture-seeds", false, "save real client traffic of interop tests as fuzz seeds")

// recorder keeps each TLS connection's plaintext and the ClientHello datagrams.
type recorder struct {
	mu     sync.Mutex
	conns  map[uint64]*bytes.Buffer
	hellos [][]byte
}

func (r *recorder) tap(conn uint64, kind string, b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch kind {
	case "tls":
		if r.conns[conn] == nil {
			r.conns[conn] = &bytes.Buffer{}
		}
		r.conns[conn].Write(b)
	case "dtls-hello":
		r.hellos = append(r.hellos, bytes.Clone(b))
	}
}

func (e *interop) recordSeeds() {
	if !*captureSeeds {
		return
	}
	r := &recorder{conns: map[uint64]*bytes.Buffer{}}
	anyconnect.SetTap(e.srv, r.tap)
	e.t.Cleanup(func() {
		if !e.t.Failed() {
			r.save(e.t)
		}
	})
}

// save splits each connection's stream into its HTTP requests and the CSTP frames after CONNECT.
func (r *recorder) save(t testing.TB) {
	r.mu.Lock()
	defer r.mu.Unlock()
	name := strings.ReplaceAll(strings.TrimPrefix(t.Name(), "TestInterop"), "/", "-")
	ids := make([]uint64, 0, len(r.conns))
	for id := range r.conns {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for i, id := range ids {
		stream := r.conns[id].Bytes()
		rd := bytes.NewReader(stream)
		br := bufio.NewReaderSize(rd, 32<<10)
		consumed := 0
		var frames []byte
		for {
			req, err := httpwire.ReadRequest(br, httpwire.Limits{})
			if err != nil {
				break
			}
			consumed = len(stream) - rd.Len() - br.Buffered()
			if req.Method == "POST" && len(req.Body) > 0 {
				writeSeed(t, "internal/authxml", "FuzzParse", fmt.Sprintf("%s-%d", name, i), req.Body)
			}
			if req.Method == "CONNECT" {
				frames = stream[consumed:]
				break
			}
		}
		if consumed > 0 {
			writeSeed(t, "internal/httpwire", "FuzzReadRequest", fmt.Sprintf("%s-%d", name, i), stream[:consumed])
			writeSeed(t, ".", "FuzzHTTPHandling", fmt.Sprintf("%s-%d", name, i), stream[:consumed])
		}
		if len(frames) > 0 {
			writeSeed(t, "internal/cstp", "FuzzFrames", fmt.Sprintf("%s-%d", name, i), frames[:min(len(frames), 4096)])
		}
	}
	for i, h := range r.hellos {
		writeSeed(t, "internal/dtlsid", "FuzzAppID", fmt.Sprintf("%s-%d", name, i), h)
	}
}

// writeSeed writes one seed in the fuzzing engine's corpus format, named by content so reruns do not pile up.
func writeSeed(t testing.TB, pkgDir, target, name string, b []byte) {
	sum := sha256.Sum256(b)
	dir := filepath.Join(pkgDir, "testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, fmt.Sprintf("openconnect-%s-%x", name, sum[:4]))
	data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
	if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
