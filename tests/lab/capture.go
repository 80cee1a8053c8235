package lab

import (
	"fmt"
	"sync"
	"time"
)

// maxFrames bounds what a Capture keeps: a test looks at seconds of traffic, never at a flood.
const maxFrames = 20000

// Capture records the frames one link of a namespace sends and receives, from an AF_PACKET socket opened in the
// namespace (Netns.Capture), until it is closed, at the latest at the test's cleanup. It keeps the first
// maxFrames frames. Its methods are safe for concurrent use.
type Capture struct {
	link string

	mu      sync.Mutex
	frames  []frame
	dropped int
	grew    chan struct{} // closed and replaced at each new frame
	closed  bool

	stop func() // ends the reader and waits for it
}

type frame struct {
	data     []byte
	outgoing bool
}

func newCapture(link string) *Capture {
	return &Capture{link: link, grew: make(chan struct{})}
}

// add keeps one frame; it reports false once the capture is closed.
func (c *Capture) add(data []byte, outgoing bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	if len(c.frames) == maxFrames {
		c.dropped++
		return true
	}
	c.frames = append(c.frames, frame{data: data, outgoing: outgoing})
	close(c.grew)
	c.grew = make(chan struct{})
	return true
}

// Packets returns the IP packets captured so far, in order; frames that carry none (ARP) are left out, and so
// are frames the decoder cannot read.
func (c *Capture) Packets() []Packet {
	c.mu.Lock()
	frames := c.frames
	c.mu.Unlock()
	var out []Packet
	for _, f := range frames {
		if p, err := f.decode(); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func (f frame) decode() (Packet, error) {
	p, err := DecodeFrame(f.data)
	p.Outgoing = f.outgoing
	return p, err
}

// Wait returns the first packet, captured before the call or within timeout of it, that match accepts.
func (c *Capture) Wait(timeout time.Duration, match func(Packet) bool) (Packet, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		c.mu.Lock()
		frames, grew, closed := c.frames[seen:], c.grew, c.closed
		c.mu.Unlock()
		for _, f := range frames {
			seen++
			if p, err := f.decode(); err == nil && match(p) {
				return p, nil
			}
		}
		if closed {
			return Packet{}, fmt.Errorf("lab: capture on %s closed: no matching packet among %d frames", c.link, seen)
		}
		select {
		case <-grew:
		case <-deadline.C:
			return Packet{}, fmt.Errorf("lab: no matching packet on %s within %v (%d frames)", c.link, timeout, seen)
		}
	}
}

// Dropped is the number of frames left out because the capture was full.
func (c *Capture) Dropped() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// Close stops capturing; what was captured stays readable. It is idempotent.
func (c *Capture) Close() {
	c.mu.Lock()
	was := c.closed
	c.closed = true
	close(c.grew)
	c.grew = make(chan struct{})
	c.mu.Unlock()
	if !was && c.stop != nil {
		c.stop()
	}
}
