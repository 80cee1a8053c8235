// Package shed keeps the state strangers make a server hold before they have logged in within bounds, per
// source and in total, by shedding: a newcomer always gets its place, and an older entry makes room. Every
// table of pre-login state on the appliance uses it: the SSL-VPN port's connections awaiting login, OpenVPN's
// handshakes in progress, AnyConnect's pending logins and unused cookies, the management API's connections that
// have not yet made an authenticated request.
//
// Refusing the newest would hand the table to whoever filled it first; shedding the oldest hands a flood its own
// oldest entries back. Which one goes:
//
//   - over the per-source bound, the source's own oldest;
//   - over the total bound, the oldest of the source that holds the most (of those holding as many, the one
//     that came to hold that many first).
//
// Why not simply the oldest overall: a flood spread over a few dozen addresses fills the table with sources
// each at its bound, and the churn of such a flood gives every entry a life of the table's size over the
// flood's rate, a few milliseconds, whoever made it. Shedding by age alone would take a user's login in
// progress (one entry, its TLS handshake or typed password still under way) as readily as the flood's. Taken
// from the biggest holder, a user with one entry loses it only when the flood comes from about as many sources
// as the table holds entries, each holding one.
//
// A source is an IPv4 address or an IPv6 /64 (SourceOf).
package shed

import (
	"container/list"
	"net/netip"
)

// SourceOf is the source a client address counts against: the IPv4 address (IPv4-mapped IPv6 included), or the
// /64 of an IPv6 address (a subscriber's network, in which a host may take any of 2^64 addresses; counting them
// one by one would let one machine take a bound's whole budget). The zero Addr gives the zero Prefix: one source
// for every client of unknown address.
func SourceOf(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64) // the zero Addr gives the zero Prefix
	return p
}

// Queue orders the entries of a pre-login table by source and age, to keep the table within max entries in
// total and perSource per source. It holds only the order: the caller keeps the table, and removes an entry
// from both. A push at the bound costs O(perSource), whatever the table's size. Not safe for concurrent use: the
// caller's mutex guards it with its table. The zero value is not usable; use NewQueue.
type Queue[T any] struct {
	max, perSource int
	// gone, if set, reports an entry that left the table by another way than Remove (a cookie bound to a
	// session, revoked or logged out): the queue drops it when it comes across it, without shedding it.
	gone func(T) bool

	n       int
	sources map[netip.Prefix]*sourceEntries[T]
	bySize  []list.List // bySize[k]: the sources holding k entries, in the order they came to hold k
}

// sourceEntries are one source's entries, oldest first.
type sourceEntries[T any] struct {
	key    netip.Prefix
	items  list.List     // of *Entry[T]
	inSize *list.Element // in bySize[items.Len()]
}

// Entry is an entry's place in a Queue; Remove takes it out.
type Entry[T any] struct {
	item T
	src  *sourceEntries[T]
	el   *list.Element // nil once out of the queue
}

// NewQueue returns a queue bounded to total entries in all and perSource (at most total) per source; a bound
// under 1 is taken as 1. gone may be nil.
func NewQueue[T any](total, perSource int, gone func(T) bool) *Queue[T] {
	total = max(total, 1)
	perSource = min(max(perSource, 1), total)
	return &Queue[T]{max: total, perSource: perSource, gone: gone, sources: map[netip.Prefix]*sourceEntries[T]{},
		bySize: make([]list.List, perSource+1)}
}

// Len is the number of entries in the queue (with gone ones not yet come across).
func (q *Queue[T]) Len() int { return q.n }

// Push adds item, from the client address from, as the newest entry. To stay within the bounds it first takes
// out the entries it must, calling shed for each one that had not gone: the caller drops those from its table.
func (q *Queue[T]) Push(from netip.Addr, item T, shed func(T)) *Entry[T] {
	src := SourceOf(from)
	if se := q.sources[src]; se != nil && se.items.Len() >= q.perSource {
		q.dropGone(se)
		for se.items.Len() >= q.perSource {
			q.shedOldest(se, shed)
		}
	}
	// Over the total, the biggest source gives way: its gone entries first, then its oldest. Gone entries of
	// other sources still count until come across or pruned (the caller prunes now and then): looking for
	// them all here would cost the whole queue at every push once the bound is reached.
	for q.n >= q.max {
		se := q.biggest()
		if se == nil {
			break
		}
		if was := q.n; q.dropGone(se) < was {
			continue
		}
		q.shedOldest(se, shed)
	}
	se := q.sources[src]
	if se == nil {
		se = &sourceEntries[T]{key: src}
		q.sources[src] = se
	}
	e := &Entry[T]{item: item, src: se}
	e.el = se.items.PushBack(e)
	q.n++
	q.resized(se, se.items.Len()-1)
	return e
}

// Remove takes an entry out of the queue; a second call, or one for an entry shed already, does nothing. A nil
// entry is allowed.
func (q *Queue[T]) Remove(e *Entry[T]) {
	if e == nil || e.el == nil {
		return
	}
	se := e.src
	se.items.Remove(e.el)
	e.el = nil
	q.n--
	q.resized(se, se.items.Len()+1)
}

// Prune takes out every gone entry.
func (q *Queue[T]) Prune() {
	if q.gone == nil {
		return
	}
	for _, se := range q.sources {
		q.dropGone(se)
	}
}

// dropGone takes se's gone entries out of the queue and returns how many entries the queue has left.
func (q *Queue[T]) dropGone(se *sourceEntries[T]) int {
	if q.gone == nil {
		return q.n
	}
	for el := se.items.Front(); el != nil; {
		next := el.Next()
		if e := el.Value.(*Entry[T]); q.gone(e.item) {
			q.Remove(e)
		}
		el = next
	}
	return q.n
}

func (q *Queue[T]) shedOldest(se *sourceEntries[T], shed func(T)) {
	e := se.items.Front().Value.(*Entry[T])
	q.Remove(e)
	if q.gone == nil || !q.gone(e.item) {
		shed(e.item)
	}
}

// biggest is the source holding the most entries, nil when the queue is empty.
func (q *Queue[T]) biggest() *sourceEntries[T] {
	for k := len(q.bySize) - 1; k > 0; k-- {
		if el := q.bySize[k].Front(); el != nil {
			return el.Value.(*sourceEntries[T])
		}
	}
	return nil
}

// resized moves se from the size bucket it was in to the one it is in now; a source left empty is forgotten.
func (q *Queue[T]) resized(se *sourceEntries[T], was int) {
	if se.inSize != nil {
		q.bySize[was].Remove(se.inSize)
		se.inSize = nil
	}
	if n := se.items.Len(); n > 0 {
		se.inSize = q.bySize[n].PushBack(se)
	} else {
		delete(q.sources, se.key)
	}
}
