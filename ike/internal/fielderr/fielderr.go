// Package fielderr is the error of a configuration check, shared by the IPsec engine's configuration and the BGP
// speaker's: each problem names the field, the offending value, the rule it broke and the fix, and all of a
// check's problems are reported together.
package fielderr

import (
	"fmt"
	"strings"
)

// Error is one problem: which field, the offending value, which rule it broke and how to fix it. Secret values
// are described, never shown.
type Error struct {
	Field   string // the field's path, as set lines name it
	Value   string
	Problem string
	Fix     string
	kind    error
}

// New makes a problem whose errors.Is matches kind (the checking package's ErrInvalidConfig).
func New(kind error, field, value, problem, fix string) *Error {
	return &Error{Field: field, Value: value, Problem: problem, Fix: fix, kind: kind}
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s = %s: %s; fix: %s", e.Field, e.Value, e.Problem, e.Fix)
}

// Unwrap makes errors.Is(err, kind) true.
func (e *Error) Unwrap() error { return e.kind }

// List carries every problem a check found, in the order of the fields.
type List struct {
	Errors []*Error
	kind   error
}

// NewList makes the error of a check that found errs; kind's message heads it.
func NewList(kind error, errs []*Error) *List { return &List{Errors: errs, kind: kind} }

func (e *List) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v (%d problems):", e.kind, len(e.Errors))
	for _, fe := range e.Errors {
		b.WriteString("\n  ")
		b.WriteString(fe.Error())
	}
	return b.String()
}

// Unwrap returns the individual problems.
func (e *List) Unwrap() []error {
	out := make([]error, len(e.Errors))
	for i, fe := range e.Errors {
		out[i] = fe
	}
	return out
}
