package anyconnect

import (
	"container/list"
	"net/netip"
)

// What a stranger on port 443 can make the server keep before it has logged in (a login waiting for its
// one-time password, a cookie waiting for its first CONNECT) is bounded per source and in total, and the
// bounds are kept by shedding, never by refusing: a new login always gets its place, and an old one makes room.
// Refusing the newest would hand the table to whoever filled it first; shedding the oldest hands a flood its
// own oldest entries back.
//
// Which one goes:
//
//   - over the per-source bound, the source's own oldest;
//   - over the total bound, the oldest of the source that holds the most (of those holding as many, the one
//     that came to hold that many first).
//
// Why not simply the oldest overall: a flood spread over a few dozen addresses fills the table with sources
// each at its bound, and shedding by age alone would take a user's login in progress (one entry, typed a
// minute ago) as readily as the flood's. Taken from the biggest holder, a user with one entry loses it only
// when the flood comes from about as many sources as the table holds entries, each holding one.

// sourceOf is the key pre-login state is bounded by: the IPv4 address, or the /64 of an IPv6 address (a
// subscriber's network, in which a host may take any of 2^64 addresses).
func sourceOf(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64) // the zero Addr gives the zero Prefix: one key for every unknown source
	return p
}

// shedQueue orders entries of a pre-login table by source and age, to keep the table within max entries in
// total and perSource per source. It holds only the order: the caller keeps the table, and removes an entry
// from both. Not safe for concurrent use (the server's mutex guards it).
type shedQueue[T any] struct {
	max, perSource int
	// gone, if set, reports an entry that left the table by another way than remove (a cookie bound to a
	// session, revoked or logged out): the queue drops it when it comes across it, without shedding it.
	gone func(T) bool

	n       int
	sources map[netip.Prefix]*sourceEntries[T]
	bySize  []list.List // bySize[k]: the sources holding k entries, in the order they came to hold k
}

// sourceEntries are one source's entries, oldest first.
type sourceEntries[T any] struct {
	key    netip.Prefix
	items  list.List     // of *shedEntry[T]
	inSize *list.Element // in bySize[items.Len()]
}

// shedEntry is an entry's place in a shedQueue; remove takes it out.
type shedEntry[T any] struct {
	item T
	src  *sourceEntries[T]
	el   *list.Element // nil once out of the queue
}

func newShedQueue[T any](max, perSource int, gone func(T) bool) *shedQueue[T] {
	perSource = min(perSource, max)
	return &shedQueue[T]{max: max, perSource: perSource, gone: gone, sources: map[netip.Prefix]*sourceEntries[T]{},
		bySize: make([]list.List, perSource+1)}
}

// len is the number of entries in the queue (with gone ones not yet come across).
func (q *shedQueue[T]) len() int { return q.n }

// push adds item from src as the newest entry. To stay within the bounds it first takes out the entries it
// must, calling shed for each one that had not gone: the caller drops those from its table.
func (q *shedQueue[T]) push(src netip.Prefix, item T, shed func(T)) *shedEntry[T] {
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
	e := &shedEntry[T]{item: item, src: se}
	e.el = se.items.PushBack(e)
	q.n++
	q.resized(se, se.items.Len()-1)
	return e
}

// remove takes an entry out of the queue; a second call does nothing.
func (q *shedQueue[T]) remove(e *shedEntry[T]) {
	if e == nil || e.el == nil {
		return
	}
	se := e.src
	se.items.Remove(e.el)
	e.el = nil
	q.n--
	q.resized(se, se.items.Len()+1)
}

// prune takes out every gone entry.
func (q *shedQueue[T]) prune() {
	if q.gone == nil {
		return
	}
	for _, se := range q.sources {
		q.dropGone(se)
	}
}

// dropGone takes se's gone entries out of the queue and returns how many entries the queue has left.
func (q *shedQueue[T]) dropGone(se *sourceEntries[T]) int {
	if q.gone == nil {
		return q.n
	}
	for el := se.items.Front(); el != nil; {
		next := el.Next()
		if e := el.Value.(*shedEntry[T]); q.gone(e.item) {
			q.remove(e)
		}
		el = next
	}
	return q.n
}

func (q *shedQueue[T]) shedOldest(se *sourceEntries[T], shed func(T)) {
	e := se.items.Front().Value.(*shedEntry[T])
	q.remove(e)
	if q.gone == nil || !q.gone(e.item) {
		shed(e.item)
	}
}

// biggest is the source holding the most entries, nil when the queue is empty.
func (q *shedQueue[T]) biggest() *sourceEntries[T] {
	for k := len(q.bySize) - 1; k > 0; k-- {
		if el := q.bySize[k].Front(); el != nil {
			return el.Value.(*sourceEntries[T])
		}
	}
	return nil
}

// resized moves se from the size bucket it was in to the one it is in now; a source left empty is forgotten.
func (q *shedQueue[T]) resized(se *sourceEntries[T], was int) {
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
