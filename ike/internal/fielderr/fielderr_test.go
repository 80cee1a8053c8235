package fielderr

import (
	"errors"
	"strings"
	"testing"
)

func TestListNamesEveryProblemAndItsKind(t *testing.T) {
	kind := errors.New("ike: invalid configuration")
	err := error(NewList(kind, []*Error{
		New(kind, "a.b", "1", "too small", "use 2"),
		New(kind, "a.c", `"x"`, "unknown", `use "y"`),
	}))
	want := "ike: invalid configuration (2 problems):\n  a.b = 1: too small; fix: use 2\n  a.c = \"x\": unknown; fix: use \"y\""
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
	if !errors.Is(err, kind) || errors.Is(err, errors.New("other")) {
		t.Error("errors.Is does not follow the kind")
	}
	var fe *Error
	if !errors.As(err, &fe) || fe.Field != "a.b" || !strings.Contains(fe.Error(), "fix: use 2") {
		t.Errorf("errors.As = %+v", fe)
	}
}
