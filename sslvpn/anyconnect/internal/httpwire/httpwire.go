// Package httpwire reads HTTP/1.x requests and writes responses, as much of HTTP as AnyConnect clients use on
// the gateway: request line, headers, a Content-Length body; no chunked bodies, no continuation lines.
//
// It exists instead of net/http because the connection changes protocol after CONNECT (the bytes that follow
// are CSTP frames read through the same buffered reader) and because every size is bounded here: a request line
// or header line longer than the reader's buffer, too many header bytes or fields, or a large body is an error,
// never a growing buffer.
//
// Functions are safe for concurrent use on distinct readers.
package httpwire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
)

// Errors of the parser.
var (
	ErrMalformed   = errors.New("httpwire: malformed request")
	ErrTooLarge    = errors.New("httpwire: request too large")
	ErrUnsupported = errors.New("httpwire: unsupported request")
)

// Limits bound a request. Zero fields take the defaults.
type Limits struct {
	MaxHeaderBytes int // request line and header lines together (default 32 KiB)
	MaxFields      int // header fields (default 100)
	MaxBody        int // body bytes (default 64 KiB)
}

func (l Limits) withDefaults() Limits {
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = 32 << 10
	}
	if l.MaxFields <= 0 {
		l.MaxFields = 100
	}
	if l.MaxBody <= 0 {
		l.MaxBody = 64 << 10
	}
	return l
}

// Field is one header field.
type Field struct{ Name, Value string }

// Request is a parsed request.
type Request struct {
	Method string // as sent, e.g. "POST", "CONNECT"
	Target string // the request target as sent
	Path   string // the target's path, percent-decoded ("/" when absent)
	Proto  string // "HTTP/1.1" or "HTTP/1.0"
	Header []Field
	Body   []byte
}

// Get returns the value of the first field named name (case-insensitive), or "".
func (r *Request) Get(name string) string {
	for _, f := range r.Header {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// Values returns the values of every field named name, in order.
func (r *Request) Values(name string) []string {
	var out []string
	for _, f := range r.Header {
		if strings.EqualFold(f.Name, name) {
			out = append(out, f.Value)
		}
	}
	return out
}

// Cookie returns the value of the cookie named name from the Cookie fields, and whether it was there.
func (r *Request) Cookie(name string) (string, bool) {
	for _, v := range r.Values("Cookie") {
		for part := range strings.SplitSeq(v, ";") {
			k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && k == name {
				return strings.Trim(val, `"`), true
			}
		}
	}
	return "", false
}

// KeepAlive reports whether the client wants the connection kept open after the response.
func (r *Request) KeepAlive() bool {
	c := strings.ToLower(r.Get("Connection"))
	if r.Proto == "HTTP/1.0" {
		return strings.Contains(c, "keep-alive")
	}
	return !strings.Contains(c, "close")
}

// ReadRequest reads one request from br. It returns io.EOF when the stream ends before the first byte of a
// request. The longest line it accepts is br's buffer size.
func ReadRequest(br *bufio.Reader, lim Limits) (*Request, error) {
	lim = lim.withDefaults()
	budget := lim.MaxHeaderBytes
	line, err := readLine(br, &budget)
	if err != nil {
		return nil, err
	}
	// RFC 9112 §2.2: a server should ignore at least one empty line before the request line.
	if len(line) == 0 {
		if line, err = readLine(br, &budget); err != nil {
			return nil, noEOF(err)
		}
	}
	req := &Request{}
	method, rest, ok1 := strings.Cut(string(line), " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || target == "" || !validToken(method) {
		return nil, fmt.Errorf("%w: request line %q", ErrMalformed, clip(line))
	}
	if proto != "HTTP/1.1" && proto != "HTTP/1.0" {
		return nil, fmt.Errorf("%w: protocol %q", ErrUnsupported, clip([]byte(proto)))
	}
	req.Method, req.Target, req.Proto = method, target, proto
	req.Path = pathOf(method, target)
	for {
		line, err := readLine(br, &budget)
		if err != nil {
			return nil, noEOF(err)
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, fmt.Errorf("%w: obsolete line folding", ErrMalformed)
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok || len(name) == 0 || !validToken(string(name)) {
			return nil, fmt.Errorf("%w: header line %q", ErrMalformed, clip(line))
		}
		if len(req.Header) == lim.MaxFields {
			return nil, fmt.Errorf("%w: more than %d header fields", ErrTooLarge, lim.MaxFields)
		}
		req.Header = append(req.Header, Field{Name: string(name), Value: string(bytes.TrimSpace(value))})
	}
	if te := req.Get("Transfer-Encoding"); te != "" {
		return nil, fmt.Errorf("%w: transfer-encoding %q", ErrUnsupported, te)
	}
	cls := req.Values("Content-Length")
	if len(cls) > 1 {
		return nil, fmt.Errorf("%w: several Content-Length fields", ErrMalformed)
	}
	if len(cls) == 1 {
		n, err := strconv.Atoi(cls[0])
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%w: Content-Length %q", ErrMalformed, clip([]byte(cls[0])))
		}
		if n > lim.MaxBody {
			return nil, fmt.Errorf("%w: body of %d bytes", ErrTooLarge, n)
		}
		req.Body = make([]byte, n)
		if _, err := io.ReadFull(br, req.Body); err != nil {
			return nil, noEOF(err)
		}
	}
	return req, nil
}

// readLine reads a line ending in LF (CRLF or a bare LF), without the ending, charging its length to budget.
func readLine(br *bufio.Reader, budget *int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	*budget -= len(line)
	if errors.Is(err, bufio.ErrBufferFull) || *budget < 0 {
		return nil, fmt.Errorf("%w: header too long", ErrTooLarge)
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// pathOf returns the decoded path of a request target: origin form ("/a?b"), absolute form
// ("https://host/a"), or authority form for CONNECT ("host:443", whose path is "").
func pathOf(method, target string) string {
	if method == "CONNECT" && !strings.HasPrefix(target, "/") {
		return ""
	}
	if i := strings.Index(target, "://"); i > 0 && !strings.HasPrefix(target, "/") {
		rest := target[i+3:]
		j := strings.IndexByte(rest, '/')
		if j < 0 {
			return "/"
		}
		target = rest[j:]
	}
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		target = target[:i]
	}
	if p, err := url.PathUnescape(target); err == nil {
		target = p
	}
	if target == "" {
		return "/"
	}
	return target
}

func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}

func clip(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "…"
	}
	return string(b)
}

// Response is a response to write.
type Response struct {
	Status int    // e.g. 200
	Reason string // e.g. "OK"; "" for the usual text of Status
	Header []Field
	Body   []byte
	// NoBody leaves out Content-Length and body: for the 200 answer to CONNECT, after which the stream is a
	// tunnel.
	NoBody bool
}

// Append appends the response's wire form to b. Header values are cleaned of CR and LF so nothing a caller
// puts in a value can split the response.
func (r *Response) Append(b []byte) []byte {
	reason := r.Reason
	if reason == "" {
		reason = statusText(r.Status)
	}
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, ' ')
	b = append(b, clean(reason)...)
	b = append(b, "\r\n"...)
	for _, f := range r.Header {
		b = append(b, clean(f.Name)...)
		b = append(b, ": "...)
		b = append(b, clean(f.Value)...)
		b = append(b, "\r\n"...)
	}
	if !r.NoBody {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(r.Body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	if !r.NoBody {
		b = append(b, r.Body...)
	}
	return b
}

func clean(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

func statusText(code int) string {
	switch code {
	case 200:
		return "OK"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 413:
		return "Payload Too Large"
	case 500:
		return "Internal Server Error"
	case 503:
		return "Service Unavailable"
	}
	return "Status"
}

// Append appends the request's wire form to b (a client's view: tests, fuzzing). A body gets its
// Content-Length field unless the header has one.
func (r *Request) Append(b []byte) []byte {
	b = append(b, r.Method...)
	b = append(b, ' ')
	b = append(b, r.Target...)
	b = append(b, ' ')
	b = append(b, r.Proto...)
	b = append(b, "\r\n"...)
	for _, f := range r.Header {
		b = append(b, f.Name...)
		b = append(b, ": "...)
		b = append(b, f.Value...)
		b = append(b, "\r\n"...)
	}
	if len(r.Body) > 0 && r.Get("Content-Length") == "" {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(r.Body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	return append(b, r.Body...)
}
