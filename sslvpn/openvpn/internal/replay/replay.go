// Package replay is an anti-replay sliding window for packet counters in the style of RFC 6479: a ring of 64-bit
// blocks, so sliding the window clears whole words instead of shifting a bitmap.
//
// A Filter is not safe for concurrent use: each receive direction of a key owns one. Its zero value is an empty
// window that accepts any counter.
package replay

const (
	blockBits  = 64
	ringBlocks = 32 // a power of two
	// WindowSize is how far behind the highest counter seen a counter is still accepted (once).
	WindowSize = (ringBlocks - 1) * blockBits
)

// Filter remembers which counters it has accepted within the window.
type Filter struct {
	last uint64
	ring [ringBlocks]uint64
}

// Reset empties the window.
func (f *Filter) Reset() { *f = Filter{} }

// Accept reports whether counter is new and within the window, and if so records it. Call it only after the
// packet was authenticated, or a forger could advance the window.
func (f *Filter) Accept(counter uint64) bool {
	if counter+WindowSize < f.last {
		return false // too old
	}
	index := counter / blockBits
	if counter > f.last {
		current := f.last / blockBits
		diff := index - current
		if diff > ringBlocks {
			diff = ringBlocks
		}
		for i := uint64(1); i <= diff; i++ {
			f.ring[(current+i)%ringBlocks] = 0
		}
		f.last = counter
	}
	block := &f.ring[index%ringBlocks]
	bit := uint64(1) << (counter % blockBits)
	if *block&bit != 0 {
		return false
	}
	*block |= bit
	return true
}
