package contention

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Attribution: which write made a transaction abort or a versioned write
// stale. The proxy core tells the writer's session of every write to a
// key in the tracker's keySet (proxy.WriteWatcher); the session records
// it on the key's entry. When a conflict happens, the victim looks at the
// entries of its keys for the last write that can have caused it:
//
//   - a WATCH abort: a write in the victim's database whose reply came
//     after the victim's first WATCH was sent, and which was sent before
//     the EXEC's reply came;
//   - a stale versioned write or a failed CAS/CAD: the last write to that
//     key in that database sent before the refused command's reply came.
//
// The writer's reply may reach the proxy a little after the victim's
// (they come back on different connections), so a conflict without a
// write waits up to attributionGrace for one; after that, or when the
// proxy stops, its write counts as made outside this proxy (another
// sidecar, a client connected to Redis directly, expiry, eviction, a
// FLUSHALL from elsewhere). A conflict on keys the set could not track
// (it was full) is unattributed.

// attributionGrace is how long a conflict waits for the write that caused
// it to be reported. Replies of one Redis event loop reach the proxy
// within microseconds of each other; a second covers a busy host.
const attributionGrace = time.Second

// maxPending bounds the conflicts waiting for their write; past it a new
// one counts as unattributed at once.
const maxPending = 4096

// Labels of the invalidators that are not clients of this proxy. Client
// names cannot contain spaces (CLIENT SETNAME refuses them) and hosts do
// not either, so these never collide with a client's label.
const (
	OutsideLabel = "(outside this proxy)"
)

// conflict kinds, the index of a link's counters.
const (
	conflictAbort = iota
	conflictStale
	conflictCAS
)

// conflict is one abort, stale write or failed CAS/CAD being attributed.
type conflict struct {
	sh     *shard
	kind   int
	victim string   // the victim's client label
	keys   []string // the victim's keys (owned by the conflict)
	pats   []string // their patterns
	ents   []*keyEntry
	db     int
	after  int64 // a candidate write's reply came after this (Unix ns)
	before int64 // and it was sent before this
	at     int64 // when the victim sent the EXEC or the refused command
	due    int64 // when to give up waiting
	ev     *abortEvent
}

// blocker is the write a conflict is attributed to.
type blocker struct {
	w   writeRec
	key string
	pat string
}

// pendingSet holds the conflicts waiting for their write.
type pendingSet struct {
	mu   sync.Mutex
	list []*conflict
	// n is len(list), stored under mu: a conflict finds the list full
	// without taking the lock every session shares (in a workload whose
	// conflicts are caused outside the proxy, most of them find it full).
	n atomic.Int32
}

// waiting recycles the conflicts that waited for their write: in a
// workload whose conflicts are all caused outside the proxy, thousands
// wait each second. A sync.Pool gives their memory back to the GC when
// such a burst is over.
var waiting = sync.Pool{New: func() any { return new(conflict) }}

// maxRecycledKeys is the most keys a recycled conflict keeps room for: a
// WATCH of many keys is rare, and its room is not worth holding on to.
const maxRecycledKeys = 16

// recycle returns a conflict that waited to the pool.
func recycle(c *conflict) {
	if cap(c.keys) > maxRecycledKeys {
		return
	}
	c.reset()
	waiting.Put(c)
}

// reset empties c but for the room of its slices, so that a pooled
// conflict holds on to no key, entry or event.
func (c *conflict) reset() {
	clear(c.keys)
	clear(c.pats)
	clear(c.ents)
	*c = conflict{keys: c.keys[:0], pats: c.pats[:0], ents: c.ents[:0]}
}

// attribute finds the write that caused c and counts it, or leaves a
// copy of c waiting for it. c and its slices may be the caller's own
// (on the stack, or reused): attribute keeps none of them.
func (t *Tracker) attribute(c *conflict) {
	tracked := false
	var best blocker
	found := false
	for i, e := range c.ents {
		if e == nil {
			continue
		}
		tracked = true
		if w, ok := e.lastWrite(c.db, c.after, c.before); ok && (!found || w.sent > best.w.sent) {
			best, found = blocker{w: w, key: c.keys[i], pat: c.pats[i]}, true
		}
	}
	switch {
	case found:
		t.blame(c, &best)
	case !tracked:
		t.blameUntracked(c)
	default:
		t.wait(c)
	}
}

func (t *Tracker) wait(c *conflict) {
	p := &t.pend
	if p.n.Load() >= maxPending {
		t.blameUntracked(c)
		return
	}
	p.mu.Lock()
	if len(p.list) >= maxPending {
		p.mu.Unlock()
		t.blameUntracked(c)
		return
	}
	for _, e := range c.ents {
		if e != nil {
			e.pending.Add(1)
		}
	}
	// The waiting conflict owns its slices: the session reuses its own.
	w := waiting.Get().(*conflict)
	*w = conflict{
		sh: c.sh, kind: c.kind, victim: c.victim, db: c.db, after: c.after, before: c.before, at: c.at, due: c.due, ev: c.ev,
		keys: append(w.keys[:0], c.keys...), pats: append(w.pats[:0], c.pats...), ents: append(w.ents[:0], c.ents...),
	}
	p.list = append(p.list, w)
	p.n.Store(int32(len(p.list)))
	p.mu.Unlock()
}

// wrote records a write to e and attributes the conflicts waiting for it.
func (t *Tracker) wrote(e *keyEntry, w *writeRec) {
	e.record(w)
	if e.pending.Load() == 0 {
		return
	}
	var foundBuf [8]*conflict
	var keyIdxBuf [8]int
	found, keyIdx := foundBuf[:0], keyIdxBuf[:0]
	p := &t.pend
	p.mu.Lock()
	kept := p.list[:0]
	for _, c := range p.list {
		i := slices.Index(c.ents, e)
		if i >= 0 && w.by.db == c.db && w.done > c.after && w.sent < c.before {
			found = append(found, c)
			keyIdx = append(keyIdx, i)
			continue
		}
		kept = append(kept, c)
	}
	clear(p.list[len(kept):])
	p.list = kept
	p.n.Store(int32(len(kept)))
	p.mu.Unlock()
	for j, c := range found {
		release(c)
		t.blame(c, &blocker{w: *w, key: c.keys[keyIdx[j]], pat: c.pats[keyIdx[j]]})
		recycle(c)
	}
}

// expire counts the conflicts whose wait ended by now (all of them when
// all is set) as caused outside this proxy.
func (t *Tracker) expire(now int64, all bool) {
	var done []*conflict
	p := &t.pend
	p.mu.Lock()
	kept := p.list[:0]
	for _, c := range p.list {
		if all || c.due <= now {
			done = append(done, c)
			continue
		}
		kept = append(kept, c)
	}
	clear(p.list[len(kept):])
	p.list = kept
	p.n.Store(int32(len(kept)))
	p.mu.Unlock()
	for _, c := range done {
		release(c)
		t.blame(c, nil)
		recycle(c)
	}
}

func release(c *conflict) {
	for _, e := range c.ents {
		if e != nil {
			e.pending.Add(-1)
		}
	}
}

// pendingCount is the number of conflicts waiting (tests).
func (t *Tracker) pendingCount() int {
	t.pend.mu.Lock()
	defer t.pend.mu.Unlock()
	return len(t.pend.list)
}

// blame counts c as caused by b, or outside this proxy when b is nil: in
// the window's totals, on the keys (the written key when b is known, all
// of the victim's keys otherwise), on their patterns, on the victim and
// on the invalidator. Then it writes c's per-conflict event, if sampled.
func (t *Tracker) blame(c *conflict, b *blocker) {
	src := fromOutside
	label, command := OutsideLabel, ""
	keys, pats := c.keys, c.pats
	var bkey, bpat [1]string
	if b != nil {
		src = fromClient
		label, command = b.w.by.client, b.w.command
		bkey[0], bpat[0] = b.key, b.pat
		keys, pats = bkey[:], bpat[:]
	}
	sh := c.sh
	sh.mu.Lock()
	w := sh.w
	w.totals.blamed(src)
	w.events++
	for i, k := range keys {
		w.keys.blame(k, pats[i], src, label, command, c.kind)
	}
	for i, p := range pats {
		if !containsBefore(pats, i, p) {
			w.patterns.blame(p, "", src, label, command, c.kind)
		}
	}
	w.clients.blame(c.victim, "", src, label, command, c.kind)
	inv := w.invalidators.get(label, "")
	inv.counts.caused(c.kind)
	inv.weight++
	inv.addClient(c.victim)
	for _, k := range keys {
		inv.addLink(k, command, c.kind)
	}
	w.invalidators.grew(inv)
	sh.mu.Unlock()

	if c.ev != nil {
		ev := c.ev
		ev.blocker = label
		if b != nil {
			by := b.w // the event's own: b is the caller's
			ev.by = &by
			ev.byKey = b.key
			if c.at != 0 {
				ev.byBefore = time.Duration(max(c.at-b.w.sent, 0))
			}
		}
		t.emit(*ev)
	}
}

// blameUntracked counts a conflict on keys the set did not track.
func (t *Tracker) blameUntracked(c *conflict) {
	sh := c.sh
	sh.mu.Lock()
	w := sh.w
	w.totals.blamed(untracked)
	w.events++
	for i, k := range c.keys {
		w.keys.blame(k, c.pats[i], untracked, "", "", c.kind)
	}
	for i, p := range c.pats {
		if !containsBefore(c.pats, i, p) {
			w.patterns.blame(p, "", untracked, "", "", c.kind)
		}
	}
	w.clients.blame(c.victim, "", untracked, "", "", c.kind)
	sh.mu.Unlock()
	if c.ev != nil {
		t.emit(*c.ev)
	}
}
