// Package api is torided's management API: HTTP with JSON bodies, served on a unix socket (always) and on HTTPS
// (when configured, with API keys). Every answer, errors included, is JSON; an error is {"code", "message"} with
// the right HTTP status, and a request that does not fit (unknown path, wrong method, bad body, a handler panic)
// gets one too, never a crash.
//
// The configuration endpoints live under /api/v1/config; other parts of the appliance add their own endpoints
// with Handle. A Server is safe for concurrent use.
package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"toride/appliance/config"
	"toride/appliance/health"
	"toride/appliance/store"
)

//go:embed openapi.yaml
var openapiYAML []byte

// Options are what the API serves.
type Options struct {
	Store   *store.Store
	Health  *health.Tracker
	Status  func() map[string]any // extra sections of GET /api/v1/status
	Version string
	Logger  *slog.Logger
}

// Server routes API requests.
type Server struct {
	opts   Options
	mux    *http.ServeMux
	routes []string // the patterns registered, in order
	log    *slog.Logger
	start  time.Time
}

// New returns a Server with the configuration and status endpoints.
func New(opts Options) *Server {
	s := &Server{opts: opts, mux: http.NewServeMux(), log: opts.Logger, start: time.Now()}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s.HandleFunc("GET /api/v1/config", s.getConfig)
	s.HandleFunc("PUT /api/v1/config/candidate", s.putCandidate)
	s.HandleFunc("POST /api/v1/config/set", s.set)
	s.HandleFunc("POST /api/v1/config/delete", s.delete)
	s.HandleFunc("POST /api/v1/config/commands", s.commands)
	s.HandleFunc("POST /api/v1/config/discard", s.discard)
	s.HandleFunc("POST /api/v1/config/commit", s.commit)
	s.HandleFunc("POST /api/v1/config/confirm", s.confirm)
	s.HandleFunc("GET /api/v1/config/compare", s.compare)
	s.HandleFunc("POST /api/v1/config/rollback", s.rollback)
	s.HandleFunc("GET /api/v1/config/commits", s.commits)
	s.HandleFunc("GET /api/v1/config/describe", s.describe)
	s.HandleFunc("GET /api/v1/status", s.status)
	s.HandleFunc("GET /api/v1/openapi.yaml", func(*http.Request) (any, error) {
		return Raw{ContentType: "application/yaml", Body: openapiYAML}, nil
	})
	return s
}

// HandlerFunc is an API handler: it returns the response body to encode as JSON, or an error (an *Error, or any
// error, which becomes a 500).
type HandlerFunc func(r *http.Request) (any, error)

// HandleFunc registers a JSON handler for a pattern of net/http.ServeMux ("POST /api/v1/…").
func (s *Server) HandleFunc(pattern string, h HandlerFunc) {
	s.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := h(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		status := http.StatusOK
		if rp, ok := body.(Reply); ok {
			status, body = rp.Status, rp.Body
			if body == nil {
				w.WriteHeader(status)
				return
			}
		}
		if raw, ok := body.(Raw); ok {
			w.Header().Set("Content-Type", raw.ContentType)
			if raw.Filename != "" {
				w.Header().Set("Content-Disposition", `attachment; filename="`+raw.Filename+`"`)
			}
			w.WriteHeader(status)
			_, _ = w.Write(raw.Body)
			return
		}
		writeJSON(w, status, body)
	}))
}

// Routed reports whether a request with this method and path reaches a handler (for tests of the API's
// documentation).
func (s *Server) Routed(method, path string) bool {
	r, err := http.NewRequest(method, path, nil)
	if err != nil {
		return false
	}
	_, pattern := s.mux.Handler(r)
	return pattern != ""
}

// Handle registers a plain handler (for bodies that are not JSON).
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
	s.routes = append(s.routes, pattern)
}

// Routes returns the patterns registered ("GET /api/v1/status"), in order (for tests of the API's documentation).
func (s *Server) Routes() []string { return slices.Clone(s.routes) }

// Raw is a non-JSON response body (a client configuration file, a PKCS#12 bundle).
type Raw struct {
	ContentType string
	Filename    string // offered to save as, if not empty
	Body        []byte
}

// Reply is a response with a status other than 200 (201 Created, 204 No Content with a nil Body).
type Reply struct {
	Status int
	Body   any
}

// Error is an API error: an HTTP status, a stable code for programs, a message for people, and details.
type Error struct {
	Status   int              `json:"-"`
	Code     string           `json:"code"`
	Message  string           `json:"message"`
	Problems []config.Problem `json:"problems,omitempty"`
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Handler returns the http.Handler to serve: routing, JSON 404/405, body limits, panic recovery.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("API handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				writeJSON(w, http.StatusInternalServerError, &Error{Code: "internal", Message: "internal error; see the torided log"})
			}
		}()
		r.Body = http.MaxBytesReader(w, r.Body, 16<<20)
		if _, pattern := s.mux.Handler(r); pattern == "" {
			s.unrouted(w, r)
			return
		}
		s.mux.ServeHTTP(w, r)
	})
}

// unrouted answers a request no pattern matched: 405 with Allow when the path exists for other methods, else 404.
func (s *Server) unrouted(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, p := s.mux.Handler(probe); p != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeJSON(w, http.StatusMethodNotAllowed, &Error{Code: "method_not_allowed",
			Message: fmt.Sprintf("%s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allow, " or "))})
		return
	}
	writeJSON(w, http.StatusNotFound, &Error{Code: "not_found", Message: "no API endpoint " + r.URL.Path})
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(body)
}

// writeError maps errors of the store and configuration to API errors.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *Error
	var ps config.Problems
	var pe *config.PathError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &ps):
		ae = &Error{Status: http.StatusUnprocessableEntity, Code: "invalid_config",
			Message: fmt.Sprintf("the configuration has %d problem(s); nothing was applied", len(ps)), Problems: ps}
	case errors.As(err, &pe):
		ae = &Error{Status: http.StatusBadRequest, Code: "invalid_path", Message: err.Error()}
	case errors.As(err, &mbe):
		ae = &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: "the request body is over 16 MiB"}
	case errors.Is(err, store.ErrNoSuchRevision):
		ae = &Error{Status: http.StatusNotFound, Code: "no_such_revision", Message: err.Error()}
	case errors.Is(err, store.ErrUncommitted):
		ae = &Error{Status: http.StatusConflict, Code: "uncommitted_changes", Message: err.Error()}
	case errors.Is(err, store.ErrNoPendingConfirm):
		ae = &Error{Status: http.StatusConflict, Code: "no_pending_confirm", Message: err.Error()}
	case errors.Is(err, store.ErrConfirmUnsupported):
		ae = &Error{Status: http.StatusBadRequest, Code: "bad_request", Message: err.Error()}
	case errors.As(err, new(*store.ApplyError)):
		ae = &Error{Status: http.StatusInternalServerError, Code: "apply_failed", Message: err.Error()}
	default:
		s.log.Error("API request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		ae = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: err.Error()}
	}
	if ae.Status == 0 {
		ae.Status = http.StatusBadRequest
	}
	writeJSON(w, ae.Status, ae)
}

// DecodeJSON reads a JSON request body into v, refusing unknown fields.
func DecodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return Errorf(http.StatusBadRequest, "bad_request", "request body: %v", err)
	}
	return nil
}

// Author is who makes a request: the unix peer's user, or the API key's name.
func Author(ctx context.Context) string {
	if a, ok := ctx.Value(authorKey{}).(string); ok {
		return a
	}
	return "unknown"
}

type authorKey struct{}

// WithAuthor returns ctx carrying the author of its requests.
func WithAuthor(ctx context.Context, author string) context.Context {
	return context.WithValue(ctx, authorKey{}, author)
}

func queryInt(r *http.Request, name string, def int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, Errorf(http.StatusBadRequest, "bad_request", "query parameter %s=%q is not a non-negative number", name, v)
	}
	return n, nil
}
