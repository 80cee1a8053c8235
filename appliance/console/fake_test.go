package console

import (
	"context"
	"errors"
	"net/http"

	"toride/appliance/api"
	"toride/appliance/config"
)

// fakeAPI is torided's configuration store in memory: a running configuration and a candidate, edited and
// described with the real schema. Methods the tests do not need panic through the nil embedded API.
type fakeAPI struct {
	API
	running, candidate *config.Config
	commits            int
}

func newFakeAPI(lines string) *fakeAPI {
	c := &config.Config{}
	if err := c.ParseCommands(lines); err != nil {
		panic(err)
	}
	return &fakeAPI{running: c, candidate: c.Clone()}
}

func pathError(err error) error {
	var pe *config.PathError
	if errors.As(err, &pe) {
		return &api.Error{Status: http.StatusBadRequest, Code: "invalid_path", Message: err.Error()}
	}
	return err
}

func (f *fakeAPI) changed() api.Changed {
	return api.Changed{Changed: !config.Equal(f.running, f.candidate)}
}

func (f *fakeAPI) Set(_ context.Context, path []string) (api.Changed, error) {
	err := f.candidate.Set(path)
	return f.changed(), pathError(err)
}

func (f *fakeAPI) Delete(_ context.Context, path []string) (api.Changed, error) {
	err := f.candidate.Delete(path)
	return f.changed(), pathError(err)
}

func (f *fakeAPI) Discard(context.Context) (api.Changed, error) {
	f.candidate = f.running.Clone()
	return f.changed(), nil
}

func (f *fakeAPI) Commit(context.Context, string, int) (api.Committed, error) {
	if config.Equal(f.running, f.candidate) {
		return api.Committed{Message: "no configuration changes to commit"}, nil
	}
	f.running = f.candidate.Clone()
	f.commits++
	out := api.Committed{Committed: true, Commit: &api.CommitEntry{}}
	out.Commit.Revision = f.commits + 1
	return out, nil
}

func (f *fakeAPI) Compare(_ context.Context, rev int) (api.Compare, error) {
	return api.Compare{Diff: config.Diff(f.running, f.candidate)}, nil
}

func (f *fakeAPI) MarkedTree(_ context.Context, path []string) (api.ConfigTree, error) {
	t, err := config.MarkedTree(f.running, f.candidate, path)
	return api.ConfigTree{Tree: t}, pathError(err)
}

func (f *fakeAPI) ConfigCommands(_ context.Context, source string, showSecrets bool) (api.ConfigCommands, error) {
	c := f.running
	if source == "candidate" {
		c = f.candidate
	}
	if !showSecrets {
		c = config.Redact(c)
	}
	return api.ConfigCommands{Commands: c.Commands()}, nil
}

func (f *fakeAPI) PutCandidate(_ context.Context, data []byte) (api.Changed, error) {
	c, err := config.Unmarshal(data)
	if err != nil {
		return api.Changed{}, err
	}
	if err := config.KeepSecrets(c, f.candidate); err != nil {
		return api.Changed{}, pathError(err)
	}
	f.candidate = c
	return f.changed(), nil
}

func (f *fakeAPI) Describe(_ context.Context, path []string) (api.Description, error) {
	d, err := api.Describe(f.candidate, path)
	return d, pathError(err)
}
