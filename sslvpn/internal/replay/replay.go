// Package replay is the anti-replay sliding window of both protocols' packet counters, in the style of RFC 6479: a
// ring of 64-bit blocks, so sliding the window clears whole words instead of shifting a bitmap. OpenVPN's data
// channel and tls-crypt filter their 32-bit packet ids with it, AnyConnect's DTLS its records' 48-bit sequence
// numbers; each protocol gives the size of its own window.
//
// A Filter is not safe for concurrent use: each receive direction of a key owns one. Its zero value has no window
// and must not be used; New makes one.
package replay

import "math/bits"

const blockBits = 64

// Filter remembers which counters it has accepted within its window.
type Filter struct {
	window uint64
	last   uint64
	ring   []uint64 // a power of two blocks: one more than the window can span, so the newest never overwrites it
}

// New returns an empty filter that accepts a counter at most window below the highest counter accepted so far,
// once.
func New(window uint64) Filter {
	blocks := (window+blockBits-1)/blockBits + 1
	return Filter{window: window, ring: make([]uint64, 1<<bits.Len64(blocks-1))}
}

// Reset empties the window.
func (f *Filter) Reset() {
	f.last = 0
	clear(f.ring)
}

// Fresh reports whether Accept would accept counter, without recording it: a receiver can drop a replay before it
// spends a decryption on it.
func (f *Filter) Fresh(counter uint64) bool {
	switch {
	case counter+f.window < f.last:
		return false
	case counter > f.last:
		return true
	}
	return f.ring[f.slot(counter/blockBits)]&(uint64(1)<<(counter%blockBits)) == 0
}

// Accept reports whether counter is new and within the window, and if so records it. Call it only after the
// packet was authenticated, or a forger could advance the window.
func (f *Filter) Accept(counter uint64) bool {
	if counter+f.window < f.last {
		return false // too old
	}
	index := counter / blockBits
	if counter > f.last {
		current := f.last / blockBits
		diff := min(index-current, uint64(len(f.ring)))
		for i := uint64(1); i <= diff; i++ {
			f.ring[f.slot(current+i)] = 0
		}
		f.last = counter
	}
	block := &f.ring[f.slot(index)]
	bit := uint64(1) << (counter % blockBits)
	if *block&bit != 0 {
		return false
	}
	*block |= bit
	return true
}

// slot is where block number index lives in the ring.
func (f *Filter) slot(index uint64) uint64 { return index & uint64(len(f.ring)-1) }
