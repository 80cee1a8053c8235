// Package replay is the anti-replay sliding window of both protocols' packet counters, in the style of RFC 6479: a
// ring of 64-bit blocks, so sliding the window clears whole words instead of shifting a bitmap. OpenVPN's data
// channel and tls-crypt filter their 32-bit packet ids with it, AnyConnect's DTLS its records' 48-bit sequence
// numbers (RFC 6347 4.1.2.6 lets a receiver keep a window larger than 64).
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

// Fresh reports whether Accept would accept counter, without recording it: a receiver can drop a replay before it
// spends a decryption on it.
func (f *Filter) Fresh(counter uint64) bool {
	switch {
	case counter+WindowSize < f.last:
		return false
	case counter > f.last:
		return true
	}
	return f.ring[(counter/blockBits)%ringBlocks]&(uint64(1)<<(counter%blockBits)) == 0
}

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
