package flushset

import "testing"

type counter struct{ n int }

func (c *counter) Flush() { c.n++ }

func TestEachUplinkFlushedOncePerBatch(t *testing.T) {
	var s Set
	a, b := &counter{}, &counter{}
	s.Add(a)
	s.Add(b)
	s.Add(a)
	s.Flush()
	if a.n != 1 || b.n != 1 {
		t.Fatalf("flushed a %d, b %d times; want once each", a.n, b.n)
	}
	s.Flush() // nothing noted since
	s.Add(b)
	s.Flush()
	if a.n != 1 || b.n != 2 {
		t.Fatalf("flushed a %d, b %d times; want 1 and 2", a.n, b.n)
	}
	if n := testing.AllocsPerRun(100, func() { s.Add(a); s.Add(b); s.Flush() }); n != 0 {
		t.Fatalf("%v allocations per batch, want 0", n)
	}
}
