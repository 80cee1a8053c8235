package bufpool

import "testing"

func TestBounded(t *testing.T) {
	p := New(2)
	a, b := p.Get(), p.Get()
	if a == nil || b == nil || p.Get() != nil || p.Outstanding() != 2 {
		t.Fatal("pool not bounded at 2")
	}
	p.Put(a)
	if c := p.Get(); c == nil {
		t.Fatal("no buffer after Put")
	}
	p.Put(nil)
}

func TestGetPutAllocatesNothing(t *testing.T) {
	p := New(10)
	p.Put(p.Get())
	if n := testing.AllocsPerRun(1000, func() { p.Put(p.Get()) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
