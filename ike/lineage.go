package ike

import "time"

// lineages numbers the net CHILD_SAs by the install order of their lineage (see failover.go): a fresh install
// starts a lineage and takes the next number, a rekey continues its lineage. Charon's unique ids cannot give that
// order: they are handed out when a negotiation starts, and of two tunnels negotiating at once the one that
// started first may well install last. Use newLineages; the zero value is not usable.
type lineages struct {
	order     map[uint64]uint64    // unique id of a net CHILD_SA → number of its lineage
	seq       uint64               // the number handed out last
	learnedAt map[uint64]time.Time // lineage number → when the engine learned of that lineage
}

func newLineages() lineages {
	return lineages{order: map[uint64]uint64{}, learnedAt: map[uint64]time.Time{}}
}

// fresh starts a lineage for a net CHILD_SA the engine learned at now was freshly installed.
func (l *lineages) fresh(uniqueID uint64, now time.Time) uint64 {
	l.seq++
	l.order[uniqueID] = l.seq
	l.learnedAt[l.seq] = now
	return l.seq
}

// rekeyed continues the lineage of old with its successor (starting one for old if it is unknown).
func (l *lineages) rekeyed(old, successor uint64, now time.Time) {
	n, ok := l.order[old]
	if !ok {
		n = l.fresh(old, now)
	}
	l.order[successor] = n
}

// known returns the unique ids of the CHILD_SAs with a lineage.
func (l *lineages) known() map[uint64]bool {
	ids := make(map[uint64]bool, len(l.order))
	for id := range l.order {
		ids[id] = true
	}
	return ids
}

// prune forgets the CHILD_SAs that had a lineage when a list of SAs was taken (listed) and are not in it
// (present), and the lineages left with none; an install announced after the list keeps its lineage.
func (l *lineages) prune(listed, present map[uint64]bool) {
	live := map[uint64]bool{}
	for id, n := range l.order {
		if listed[id] && !present[id] {
			delete(l.order, id)
			continue
		}
		live[n] = true
	}
	for n := range l.learnedAt {
		if !live[n] {
			delete(l.learnedAt, n)
		}
	}
}
