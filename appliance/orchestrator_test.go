package appliance

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"toride/appliance/config"
	"toride/appliance/health"
)

// fakeComponent records the host names it moved to and can refuse one, or refuse to roll back.
type fakeComponent struct {
	name       string
	calls      *[]string
	state      string
	refuse     string
	refuseBack bool
}

func (f *fakeComponent) Name() string { return f.name }

func (f *fakeComponent) Apply(_ context.Context, old, new *config.Config) error {
	*f.calls = append(*f.calls, f.name+"→"+new.System.HostName)
	if new.System.HostName == f.refuse {
		f.state = "half-" + new.System.HostName // a failing component may be half-applied
		return errors.New("refused")
	}
	if f.refuseBack && new.System.HostName == "old" {
		return errors.New("stuck")
	}
	f.state = new.System.HostName
	return nil
}

func hostConfig(name string) *config.Config {
	c := &config.Config{}
	c.System.HostName = name
	return c
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestOrchestratorRollsEveryComponentBack(t *testing.T) {
	var calls []string
	a := &fakeComponent{name: "a", calls: &calls, state: "old"}
	b := &fakeComponent{name: "b", calls: &calls, state: "old"}
	c := &fakeComponent{name: "c", calls: &calls, state: "old", refuse: "new"}
	d := &fakeComponent{name: "d", calls: &calls, state: "old"}
	o := NewOrchestrator(health.New(), quietLog(), a, b, c, d)

	err := o.Apply(context.Background(), hostConfig("old"), hostConfig("new"))
	var ae *ApplyError
	if !errors.As(err, &ae) || ae.Component != "c" || len(ae.RollbackErrors) != 0 {
		t.Fatalf("Apply = %v, want an ApplyError from c with a clean rollback", err)
	}
	if !strings.Contains(err.Error(), "every component was returned to the running configuration") {
		t.Fatalf("error text %q does not say the system is back", err)
	}
	want := []string{"a→new", "b→new", "c→new", "c→old", "b→old", "a→old"}
	if diff := cmp.Diff(calls, want); diff != "" {
		t.Fatalf("calls (-got +want):\n%s", diff)
	}
	for _, f := range []*fakeComponent{a, b, c, d} {
		if f.state != "old" {
			t.Errorf("component %s left at %q, want old", f.name, f.state)
		}
	}
}

func TestOrchestratorReportsFailedRollback(t *testing.T) {
	var calls []string
	h := health.New()
	a := &fakeComponent{name: "a", calls: &calls, refuseBack: true}
	b := &fakeComponent{name: "b", calls: &calls, refuse: "new"}
	err := NewOrchestrator(h, quietLog(), a, b).Apply(context.Background(), hostConfig("old"), hostConfig("new"))
	var ae *ApplyError
	if !errors.As(err, &ae) || len(ae.RollbackErrors) != 1 || !strings.Contains(err.Error(), "a: stuck") {
		t.Fatalf("Apply = %v, want the failed rollback of a named", err)
	}
	if st, _ := h.Get("a"); st.State != health.Failed {
		t.Fatalf("health of a = %+v, want failed", st)
	}
}

func TestOrchestratorBootIsBestEffort(t *testing.T) {
	var calls []string
	h := health.New()
	a := &fakeComponent{name: "a", calls: &calls}
	b := &fakeComponent{name: "b", calls: &calls, refuse: "boot"}
	c := &fakeComponent{name: "c", calls: &calls}
	err := NewOrchestrator(h, quietLog(), a, b, c).Boot(context.Background(), hostConfig("boot"))
	if err == nil || !strings.Contains(err.Error(), "b: refused") {
		t.Fatalf("Boot = %v", err)
	}
	if a.state != "boot" || c.state != "boot" {
		t.Fatal("one failing component kept the others from starting")
	}
	if st, _ := h.Get("b"); st.State != health.Failed {
		t.Fatalf("health of b = %+v", st)
	}
}
