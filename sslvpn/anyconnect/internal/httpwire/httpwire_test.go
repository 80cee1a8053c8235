package httpwire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func read(s string, lim Limits) (*Request, error) {
	return ReadRequest(bufio.NewReaderSize(strings.NewReader(s), 4096), lim)
}

func TestReadRequest(t *testing.T) {
	in := "POST / HTTP/1.1\r\nHost: 10.99.0.1\r\nUser-Agent: Open AnyConnect VPN Agent v9.01-3\r\n" +
		"Cookie: webvpncontext=abc; webvpn=\"XYZ\"\r\nContent-Length: 5\r\n\r\nhello" +
		"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nX-CSTP-MTU: 1390\r\nX-CSTP-Address: 10.8.0.2\r\nX-CSTP-Address: fd00::2\r\n\r\nSTF"
	br := bufio.NewReader(strings.NewReader(in))
	req, err := ReadRequest(br, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if req.Method != "POST" || req.Path != "/" || string(req.Body) != "hello" || req.Get("user-agent") != "Open AnyConnect VPN Agent v9.01-3" {
		t.Fatalf("request: %+v", req)
	}
	if v, ok := req.Cookie("webvpn"); !ok || v != "XYZ" {
		t.Errorf("cookie webvpn = %q %v", v, ok)
	}
	if v, _ := req.Cookie("webvpncontext"); v != "abc" {
		t.Errorf("cookie webvpncontext = %q", v)
	}
	if !req.KeepAlive() {
		t.Error("HTTP/1.1 without Connection: close is keep-alive")
	}
	req, err = ReadRequest(br, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if req.Method != "CONNECT" || req.Path != "/CSCOSSLC/tunnel" || !reflect.DeepEqual(req.Values("X-CSTP-Address"), []string{"10.8.0.2", "fd00::2"}) {
		t.Fatalf("CONNECT: %+v", req)
	}
	// The bytes after CONNECT stay in the reader for the tunnel.
	rest, _ := io.ReadAll(br)
	if string(rest) != "STF" {
		t.Errorf("after CONNECT: %q", rest)
	}
	if _, err := ReadRequest(br, Limits{}); err != io.EOF {
		t.Errorf("at the end: %v, want EOF", err)
	}
}

func TestPaths(t *testing.T) {
	for _, tc := range []struct{ method, target, want string }{
		{"GET", "/profiles/sales.xml?x=1", "/profiles/sales.xml"},
		{"GET", "/profiles%2Fsales.xml", "/profiles/sales.xml"},
		{"POST", "https://vpn.example.com/sales", "/sales"},
		{"POST", "https://vpn.example.com", "/"},
		{"CONNECT", "vpn.example.com:443", ""},
		{"CONNECT", "/CSCOSSLC/tunnel", "/CSCOSSLC/tunnel"},
	} {
		if got := pathOf(tc.method, tc.target); got != tc.want {
			t.Errorf("pathOf(%s %s) = %q, want %q", tc.method, tc.target, got, tc.want)
		}
	}
}

func TestReadRequestErrors(t *testing.T) {
	long := "GET /" + strings.Repeat("a", 5000) + " HTTP/1.1\r\n\r\n"
	many := "GET / HTTP/1.1\r\n" + strings.Repeat("X: y\r\n", 101) + "\r\n"
	for _, tc := range []struct {
		name string
		in   string
		lim  Limits
		want error
	}{
		{"garbage", "\x16\x03\x01\x02\x00\r\n\r\n", Limits{}, ErrMalformed},
		{"no protocol", "GET /\r\n\r\n", Limits{}, ErrMalformed},
		{"HTTP/2", "GET / HTTP/2.0\r\n\r\n", Limits{}, ErrUnsupported},
		{"line longer than the buffer", long, Limits{}, ErrTooLarge},
		{"header budget", "GET / HTTP/1.1\r\nX: " + strings.Repeat("b", 3000) + "\r\n\r\n", Limits{MaxHeaderBytes: 1024}, ErrTooLarge},
		{"too many fields", many, Limits{}, ErrTooLarge},
		{"folding", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", Limits{}, ErrMalformed},
		{"no colon", "GET / HTTP/1.1\r\nX a\r\n\r\n", Limits{}, ErrMalformed},
		{"chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", Limits{}, ErrUnsupported},
		{"bad length", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", Limits{}, ErrMalformed},
		{"two lengths", "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", Limits{}, ErrMalformed},
		{"body too large", "POST / HTTP/1.1\r\nContent-Length: 70000\r\n\r\n", Limits{}, ErrTooLarge},
		{"short body", "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", Limits{}, io.ErrUnexpectedEOF},
		{"cut header", "POST / HTTP/1.1\r\nHost: x", Limits{}, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := read(tc.in, tc.lim); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestResponse(t *testing.T) {
	r := &Response{Status: 503, Header: []Field{{"X-Reason", "limit\r\nSet-Cookie: evil=1"}}, Body: []byte("x")}
	b := r.Append(nil)
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 503 || resp.Header.Get("Set-Cookie") != "" || resp.Header.Get("X-Reason") != "limit  Set-Cookie: evil=1" {
		t.Fatalf("response: %q", b)
	}
	c := (&Response{Status: 200, Reason: "CONNECTED", NoBody: true, Header: []Field{{"X-CSTP-MTU", "1390"}}}).Append(nil)
	if string(c) != "HTTP/1.1 200 CONNECTED\r\nX-CSTP-MTU: 1390\r\n\r\n" {
		t.Fatalf("CONNECT answer %q", c)
	}
}

func FuzzReadRequest(f *testing.F) {
	f.Add([]byte("POST /auth HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nCookie: webvpn=A\r\n\r\n"))
	f.Add([]byte("GET /profiles%2Fa.xml HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(b), 4096)
		for {
			req, err := ReadRequest(br, Limits{})
			if err != nil {
				return
			}
			req.KeepAlive()
			req.Cookie("webvpn")
			// A request reads back the same after writing it out.
			again, err := ReadRequest(bufio.NewReaderSize(bytes.NewReader(req.Append(nil)), 4096), Limits{})
			if err != nil {
				t.Fatalf("re-reading %q: %v", req.Append(nil), err)
			}
			if again.Method != req.Method || again.Target != req.Target || again.Path != req.Path ||
				!bytes.Equal(again.Body, req.Body) || len(again.Header) < len(req.Header) {
				t.Fatalf("round trip: %+v != %+v", again, req)
			}
		}
	})
}
