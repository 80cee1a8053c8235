package bufpool

import "testing"

func TestBounded(t *testing.T) {
	p := New(2)
	a, b := p.Get(), p.Get()
	if a == nil || b == nil || p.Get() != nil || p.Outstanding() != 2 {
		t.Fatal("pool not bounded at 2")
	}
	a.Off, a.N = 32, copy(a.Data[32:], "abc")
	if string(a.Payload()) != "abc" {
		t.Fatalf("payload %q", a.Payload())
	}
	p.Put(a)
	p.Put(nil)
	if c := p.Get(); c == nil || c.Off != 0 || c.N != 0 || p.Outstanding() != 2 {
		t.Fatal("a returned buffer is not reusable")
	}
}

func TestGetPutAllocatesNothing(t *testing.T) {
	p := New(10)
	p.Put(p.Get())
	if n := testing.AllocsPerRun(1000, func() { p.Put(p.Get()) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
