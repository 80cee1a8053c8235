// Package logring keeps torided's recent log records in memory, for `toride show log` (GET /api/v1/log): a
// slog.Handler passes every record on to the real one and copies it into a bounded ring.
//
// A Ring is safe for concurrent use; handlers made from it share its lock only while copying a record in.
package logring

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"toride/appliance/api"
)

// Entry is one log record as the ring keeps it.
type Entry struct {
	Time      time.Time `json:"time"`
	Level     string    `json:"level"`
	Component string    `json:"component,omitempty"`
	Message   string    `json:"message"`
	// Attrs are the record's other attributes, key=value as slog's text handler writes them.
	Attrs string `json:"attrs,omitempty"`
}

// Lines is the answer of GET /api/v1/log: the newest records, oldest first.
type Lines struct {
	Lines []Entry `json:"lines"`
}

// Ring holds the last records. Its zero value is not usable; make one with New.
type Ring struct {
	mu      sync.Mutex
	entries []Entry // a circle: next is the oldest once full
	next    int
	full    bool
}

// New returns a Ring of size records.
func New(size int) *Ring { return &Ring{entries: make([]Entry, size)} }

func (r *Ring) add(e Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries[r.next] = e
	r.next = (r.next + 1) % len(r.entries)
	if r.next == 0 {
		r.full = true
	}
}

// Last returns at most n records, oldest first, of component (all with "").
func (r *Ring) Last(component string, n int) []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []Entry
	if r.full {
		all = append(all, r.entries[r.next:]...)
	}
	all = append(all, r.entries[:r.next]...)
	out := []Entry{}
	for i := len(all) - 1; i >= 0 && len(out) < n; i-- {
		if component == "" || all[i].Component == component {
			out = append(out, all[i])
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// Handler returns a handler that keeps records of level info and above (whatever next's level) and passes on
// to next what next is enabled for.
func (r *Ring) Handler(next slog.Handler) slog.Handler { return &handler{ring: r, next: next} }

type handler struct {
	ring   *Ring
	next   slog.Handler
	attrs  []slog.Attr // from WithAttrs, with the group prefix already in their keys
	prefix string      // the open groups, "a.b."
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h *handler) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Level >= slog.LevelInfo {
		e := Entry{Time: rec.Time, Level: rec.Level.String(), Message: rec.Message}
		var attrs []string
		add := func(prefix string, a slog.Attr) {
			if a.Key == "component" && prefix == "" {
				e.Component = a.Value.String()
				return
			}
			attrs = appendAttr(attrs, prefix, a)
		}
		for _, a := range h.attrs {
			add("", a)
		}
		rec.Attrs(func(a slog.Attr) bool {
			add(h.prefix, a)
			return true
		})
		e.Attrs = strings.Join(attrs, " ")
		h.ring.add(e)
	}
	if h.next.Enabled(ctx, rec.Level) {
		return h.next.Handle(ctx, rec)
	}
	return nil
}

func appendAttr(out []string, prefix string, a slog.Attr) []string {
	a.Value = a.Value.Resolve()
	if a.Value.Kind() == slog.KindGroup {
		for _, g := range a.Value.Group() {
			out = appendAttr(out, prefix+a.Key+".", g)
		}
		return out
	}
	v := a.Value.String()
	if v == "" || strings.ContainsAny(v, " =\"") {
		v = strconv.Quote(v)
	}
	return append(out, prefix+a.Key+"="+v)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(attrs)
	c.attrs = append([]slog.Attr(nil), h.attrs...)
	for _, a := range attrs {
		a.Key = h.prefix + a.Key
		c.attrs = append(c.attrs, a)
	}
	return &c
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.next = h.next.WithGroup(name)
	c.prefix = h.prefix + name + "."
	return &c
}

// maxLines bounds one answer of GET /api/v1/log.
const maxLines = 10000

// Register routes GET /api/v1/log?component=C&lines=N (the newest N records, 50 unless told) on s.
func (r *Ring) Register(s *api.Server) {
	s.HandleFunc("GET /api/v1/log", func(req *http.Request) (any, error) {
		n := 50
		if v := req.URL.Query().Get("lines"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n < 1 || n > maxLines {
				return nil, api.Errorf(http.StatusBadRequest, "bad_request", "lines=%q: give a number from 1 to %d", v, maxLines)
			}
		}
		return Lines{Lines: r.Last(req.URL.Query().Get("component"), n)}, nil
	})
}

// String is the entry as `toride show log` prints it.
func (e Entry) String() string {
	s := fmt.Sprintf("%s %-5s", e.Time.Local().Format("2006-01-02 15:04:05"), e.Level)
	if e.Component != "" {
		s += " " + e.Component + ":"
	}
	s += " " + e.Message
	if e.Attrs != "" {
		s += " " + e.Attrs
	}
	return s
}
