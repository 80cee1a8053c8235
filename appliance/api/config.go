package api

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"toride/appliance/config"
	"toride/appliance/store"
)

// getConfig: GET /api/v1/config?source=running|candidate&format=json|commands|tree&secrets=hide|show — secrets
// are shown as **** unless the request asks for them with secrets=show, which is logged with who asked.
func (s *Server) getConfig(r *http.Request) (any, error) {
	q := r.URL.Query()
	src := q.Get("source")
	var c *config.Config
	switch src {
	case "", "running":
		src = "running"
		c = s.opts.Store.Running()
	case "candidate":
		c = s.opts.Store.Candidate()
	default:
		return nil, Errorf(http.StatusBadRequest, "bad_request", "source=%q: use running or candidate", src)
	}
	switch sec := q.Get("secrets"); sec {
	case "", "hide":
		c = config.Redact(c)
	case "show":
		s.log.Warn("configuration secrets shown", "to", Author(r.Context()), "source", src)
	default:
		return nil, Errorf(http.StatusBadRequest, "bad_request", "secrets=%q: use hide (the default: each secret is ****) or show", sec)
	}
	switch f := q.Get("format"); f {
	case "", "json":
		return c, nil
	case "commands":
		return ConfigCommands{Commands: nonNil(c.Commands())}, nil
	case "tree":
		return ConfigTree{Tree: c.Tree()}, nil
	case "marked":
		// The candidate against the running configuration, from the node at path down, as configuration mode
		// shows it.
		tree, err := config.MarkedTree(s.opts.Store.Running(), s.opts.Store.Candidate(), strings.Fields(q.Get("path")))
		if err != nil {
			return nil, err
		}
		return ConfigTree{Tree: tree}, nil
	default:
		return nil, Errorf(http.StatusBadRequest, "bad_request", "format=%q: use json, commands, tree or marked", f)
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// putCandidate: PUT /api/v1/config/candidate with a whole configuration in JSON. A secret given as **** (as GET
// shows it) keeps the candidate's value, so a configuration read, edited and put back keeps its secrets.
func (s *Server) putCandidate(r *http.Request) (any, error) {
	body, err := readAll(r)
	if err != nil {
		return nil, err
	}
	c, err := config.Unmarshal(body)
	if err != nil {
		return nil, Errorf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	err = s.opts.Store.Edit(func(cand *config.Config) error {
		if err := config.KeepSecrets(c, cand); err != nil {
			return err
		}
		*cand = *c
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.candidateState(), nil
}

type pathRequest struct {
	Path []string `json:"path"` // node names, keys and value: ["system", "host-name", "gw1"]
}

// set: POST /api/v1/config/set {"path": [...]}
func (s *Server) set(r *http.Request) (any, error) {
	var req pathRequest
	if err := DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := s.opts.Store.Edit(func(c *config.Config) error { return c.Set(req.Path) }); err != nil {
		return nil, err
	}
	return s.candidateState(), nil
}

// delete: POST /api/v1/config/delete {"path": [...]}
func (s *Server) delete(r *http.Request) (any, error) {
	var req pathRequest
	if err := DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := s.opts.Store.Edit(func(c *config.Config) error { return c.Delete(req.Path) }); err != nil {
		return nil, err
	}
	return s.candidateState(), nil
}

// commands: POST /api/v1/config/commands {"commands": ["set …", "delete …"]}, applied all or nothing.
func (s *Server) commands(r *http.Request) (any, error) {
	var req struct {
		Commands []string `json:"commands"`
	}
	if err := DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	err := s.opts.Store.Edit(func(c *config.Config) error {
		for i, line := range req.Commands {
			if err := c.Apply(line); err != nil {
				return Errorf(http.StatusBadRequest, "invalid_path", "command %d (%s): %v; no command was applied", i+1, line, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.candidateState(), nil
}

func (s *Server) candidateState() Changed {
	return Changed{Changed: s.opts.Store.Changed()}
}

// discard: POST /api/v1/config/discard
func (s *Server) discard(r *http.Request) (any, error) {
	s.opts.Store.Discard()
	return s.candidateState(), nil
}

// commit: POST /api/v1/config/commit {"comment": "…", "confirm_minutes": M}
func (s *Server) commit(r *http.Request) (any, error) {
	var req struct {
		Comment        string `json:"comment"`
		ConfirmMinutes int    `json:"confirm_minutes"`
	}
	if r.ContentLength != 0 {
		if err := DecodeJSON(r, &req); err != nil {
			return nil, err
		}
	}
	c, err := s.opts.Store.Commit(r.Context(), store.CommitRequest{Author: Author(r.Context()), Comment: req.Comment, ConfirmMinutes: req.ConfirmMinutes})
	if errors.Is(err, store.ErrNoChanges) {
		return Committed{Message: "no configuration changes to commit"}, nil
	}
	if err != nil {
		return nil, err
	}
	out := Committed{Committed: true, Commit: &CommitEntry{Commit: c}}
	if rev, deadline, ok := s.opts.Store.Pending(); ok && rev == c.Revision {
		out.ConfirmBy = &deadline
		out.Message = "confirm with `toride confirm` before " + deadline.Local().Format(time.TimeOnly) + ", or the previous configuration comes back"
	}
	return out, nil
}

// confirm: POST /api/v1/config/confirm
func (s *Server) confirm(r *http.Request) (any, error) {
	if err := s.opts.Store.Confirm(Author(r.Context())); err != nil {
		return nil, err
	}
	return Confirmed{Confirmed: true}, nil
}

// compare: GET /api/v1/config/compare[?rev=N] — the candidate against the running configuration, or against
// archive entry N.
func (s *Server) compare(r *http.Request) (any, error) {
	var base *config.Config
	if r.URL.Query().Has("rev") {
		n, err := queryInt(r, "rev", 0)
		if err != nil {
			return nil, err
		}
		if base, _, err = s.opts.Store.Revision(n); err != nil {
			return nil, err
		}
	} else {
		base = s.opts.Store.Running()
	}
	return Compare{Diff: nonNil(config.Diff(base, s.opts.Store.Candidate()))}, nil
}

// rollback: POST /api/v1/config/rollback {"revision": N} — N counts back from the running configuration (0).
func (s *Server) rollback(r *http.Request) (any, error) {
	var req struct {
		Revision *int `json:"revision"`
	}
	if err := DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Revision == nil {
		return nil, Errorf(http.StatusBadRequest, "bad_request", `rollback needs {"revision": N}; see GET /api/v1/config/commits`)
	}
	c, err := s.opts.Store.Rollback(r.Context(), *req.Revision, Author(r.Context()))
	if errors.Is(err, store.ErrNoChanges) {
		return Committed{Message: "revision " + strconv.Itoa(*req.Revision) + " is the running configuration already"}, nil
	}
	if err != nil {
		return nil, err
	}
	return Committed{Committed: true, Commit: &CommitEntry{Commit: c}}, nil
}

// commits: GET /api/v1/config/commits
func (s *Server) commits(r *http.Request) (any, error) {
	var out Commits
	for i, c := range s.opts.Store.Commits() {
		out.Commits = append(out.Commits, CommitEntry{Index: i, Commit: c})
	}
	if rev, deadline, ok := s.opts.Store.Pending(); ok {
		out.PendingConfirm = &PendingConfirm{Revision: rev, Deadline: deadline}
	}
	return out, nil
}

// describe: GET /api/v1/config/describe?path=system+interfaces — the schema node, for help and completion.
func (s *Server) describe(r *http.Request) (any, error) {
	return Describe(s.opts.Store.Candidate(), strings.Fields(r.URL.Query().Get("path")))
}

// Describe is the answer of the describe endpoint for path in c: the schema node with c's values (a secret's
// never) and each child's kind and help.
func Describe(c *config.Config, path []string) (Description, error) {
	n, err := c.Describe(path)
	if err != nil {
		return Description{}, err
	}
	out := Description{Name: n.Name, Kind: kindNames[n.Kind], Help: n.Help, Default: n.Default, Enum: n.Enum,
		Children: n.Children, Range: n.Range, Format: n.Format}
	if !n.Secret {
		out.Values = n.Values
	}
	for _, name := range n.Children {
		if child, err := c.Describe(append(append([]string(nil), path...), name)); err == nil {
			out.ChildNodes = append(out.ChildNodes, ChildNode{Name: name, Kind: kindNames[child.Kind], Help: child.Help})
		}
	}
	return out, nil
}

var kindNames = map[config.Kind]string{config.Container: "container", config.Tag: "tag", config.Leaf: "leaf", config.Multi: "multi", config.Flag: "flag"}

// status: GET /api/v1/status
func (s *Server) status(r *http.Request) (any, error) {
	out := map[string]any{
		"version":        s.opts.Version,
		"uptime_seconds": int(time.Since(s.start).Seconds()),
		"components":     s.opts.Health.Snapshot(),
		"uncommitted":    s.opts.Store.Changed(),
	}
	if commits := s.opts.Store.Commits(); len(commits) > 0 {
		out["revision"] = commits[0].Revision
	}
	if rev, deadline, ok := s.opts.Store.Pending(); ok {
		out["pending_confirm"] = map[string]any{"revision": rev, "deadline": deadline}
	}
	if s.opts.Status != nil {
		for k, v := range s.opts.Status() {
			out[k] = v
		}
	}
	return out, nil
}

func readAll(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	if err != nil && !errors.As(err, &mbe) {
		return nil, Errorf(http.StatusBadRequest, "bad_request", "reading the body: %v", err)
	}
	return b, err
}
