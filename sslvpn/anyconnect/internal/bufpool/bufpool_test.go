package bufpool

import "testing"

func TestBound(t *testing.T) {
	p := New(2)
	a, b := p.Get(), p.Get()
	if a == nil || b == nil || p.Get() != nil || p.Outstanding() != 2 {
		t.Fatal("the pool does not bound its buffers")
	}
	a.N = 3
	copy(a.Data[Headroom:], "abc")
	if string(a.Payload()) != "abc" {
		t.Fatalf("payload %q", a.Payload())
	}
	p.Put(a)
	p.Put(nil)
	if c := p.Get(); c == nil || c.N != 0 || p.Outstanding() != 2 {
		t.Fatal("a returned buffer is not reusable")
	}
}

func TestZeroAllocs(t *testing.T) {
	p := New(4)
	p.Put(p.Get())
	if n := testing.AllocsPerRun(1000, func() { p.Put(p.Get()) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
