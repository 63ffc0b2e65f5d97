package contention

import (
	"sort"
	"sync/atomic"
	"time"
)

// counts are the additive counters kept per window for the totals and for
// every key, pattern and client. A session builds one as a delta and the
// shard adds it everywhere it applies.
type counts struct {
	Transactions  int64 // EXECs that ended a MULTI (any outcome)
	Commits       int64 // EXEC replied with an array
	Aborts        int64 // EXEC replied nil: a watched key changed
	ExecAborts    int64 // EXEC replied -EXECABORT (a queued command was rejected)
	ExecErrors    int64 // EXEC replied another error (inside MULTI or without it)
	GivenUp       int64 // watched keys released by UNWATCH/DISCARD/RESET/disconnect
	Stale         int64 // versioned writes refused as stale (exset ... VER, excas, excad)
	CASFailed     int64 // CAS/CAD compare failures
	Retries       int64 // transactions that retried the key set of the abort just before
	CommitRetries int64 // sum over commits of the aborted attempts that preceded them
	RetriesMax    int64 // most aborted attempts before one commit (max, not summed)
	ChainsGivenUp int64 // retry chains (≥1 abort) that ended without a commit

	VersionedCommits int64 // conditional versioned writes applied (EXSET ... VER, EXCAS, EXCAD, ...)
	CASCommits       int64 // CAS/CAD on plain strings applied

	// Where the write behind a conflict (abort, stale, failed CAS/CAD)
	// came from: a client of this proxy, outside it, or unknown (the key
	// was not tracked). On an invalidator's entry Aborts, Stale and
	// CASFailed count the conflicts it caused.
	Attributed   int64
	Outside      int64
	Unattributed int64
}

func (c *counts) add(d *counts) {
	c.Transactions += d.Transactions
	c.Commits += d.Commits
	c.Aborts += d.Aborts
	c.ExecAborts += d.ExecAborts
	c.ExecErrors += d.ExecErrors
	c.GivenUp += d.GivenUp
	c.Stale += d.Stale
	c.CASFailed += d.CASFailed
	c.Retries += d.Retries
	c.CommitRetries += d.CommitRetries
	c.ChainsGivenUp += d.ChainsGivenUp
	c.VersionedCommits += d.VersionedCommits
	c.CASCommits += d.CASCommits
	c.Attributed += d.Attributed
	c.Outside += d.Outside
	c.Unattributed += d.Unattributed
	if d.RetriesMax > c.RetriesMax {
		c.RetriesMax = d.RetriesMax
	}
}

// source is where the write behind a conflict came from: the counter
// blame adds one to. (A conflict's delta has one field; adding a whole
// counts for it, on every table, showed in profiles.)
type source int

const (
	fromClient  source = iota // Attributed: a client of this proxy
	fromOutside               // Outside
	untracked                 // Unattributed: the key was not tracked
)

// blamed counts one conflict whose write came from src.
func (c *counts) blamed(src source) {
	switch src {
	case fromClient:
		c.Attributed++
	case fromOutside:
		c.Outside++
	default:
		c.Unattributed++
	}
}

// caused counts, on an invalidator's entry, one conflict of kind that its
// write caused.
func (c *counts) caused(kind int) {
	switch kind {
	case conflictAbort:
		c.Aborts++
	case conflictStale:
		c.Stale++
	default:
		c.CASFailed++
	}
}

// conflicts is what makes a key hot.
func (c *counts) conflicts() int64 { return c.Aborts + c.ExecAborts + c.Stale + c.CASFailed }

// attempts are the optimistic operations that could conflict:
// transactions, conditional versioned writes and CAS/CAD, applied or not.
func (c *counts) attempts() int64 {
	return c.Transactions + c.VersionedCommits + c.Stale + c.CASCommits + c.CASFailed
}

// activity is the eviction weight's increment: any event touching the key.
func (c *counts) activity() int64 {
	return c.Transactions + c.ExecErrors + c.GivenUp + c.Stale + c.CASFailed + c.ChainsGivenUp +
		c.VersionedCommits + c.CASCommits
}

// weightOf is what an entry's weight grows by when d is applied to it:
// d's activity, and 1 for a delta without any.
func weightOf(d *counts) int64 {
	if a := d.activity(); a > 0 {
		return a
	}
	return 1
}

// maxClientNames bounds the client names remembered per key or pattern.
const maxClientNames = 8

// entry is one key, pattern or client in a window's table.
type entry struct {
	name    string
	pattern string // for keys: the key's pattern
	counts
	// weight is the space-saving estimate of activity: an entry admitted by
	// evicting another starts at the evicted weight, so a key that becomes
	// hot late is not evicted at once by a stream of one-off keys. The
	// counts themselves are exact since admission.
	weight  int64
	hist    *hist // allocated on the first timed transaction
	clients []string
	moreCli bool // more clients than maxClientNames were seen
	// links are, on a key, pattern or client, the invalidators that
	// caused its conflicts (name: invalidator, command: its command); on
	// an invalidator, the keys it invalidated (name: key).
	links     []link
	moreLinks bool // more than maxLinks were seen
	idx       int  // position in the heap
}

// maxLinks bounds the invalidators remembered per key, pattern or client,
// and the keys per invalidator.
const maxLinks = 8

// link counts conflicts between an entry and one invalidator (or key), by
// kind: aborts, stale, failed CAS/CAD.
type link struct {
	name, command string
	last          byte // name's last byte (lastByte)
	n             [3]int64
}

// lastByte is s's last byte, 0 for "". A link compares its name's length
// and last byte before the name: an invalidator's links are keys, and
// keys of one pattern share their length and prefix and differ near the
// end, so most links that do not match are passed over without loading
// their name.
func lastByte(s string) byte {
	if s == "" {
		return 0
	}
	return s[len(s)-1]
}

func (e *entry) addLink(name, command string, kind int) {
	e.addLinkN(name, command, kind, 1)
}

func (e *entry) addLinkN(name, command string, kind int, n int64) {
	last := lastByte(name)
	for i := range e.links {
		if l := &e.links[i]; len(l.name) == len(name) && l.last == last && l.name == name && l.command == command {
			l.n[kind] += n
			return
		}
	}
	if len(e.links) >= maxLinks {
		e.moreLinks = true
		return
	}
	l := link{name: name, command: command, last: last}
	l.n[kind] = n
	e.links = append(e.links, l)
}

// sameString is a == b, but rejects most unequal strings of one length
// without calling memequal: keys of one pattern share their length and
// prefix and differ near the end.
func sameString(a, b string) bool {
	return len(a) == len(b) && (len(a) == 0 || a[len(a)-1] == b[len(a)-1]) && a == b
}

// sameKey is sameString for a key as the proxy hands it over.
func sameKey(s string, b []byte) bool {
	return len(s) == len(b) && (len(s) == 0 || s[len(s)-1] == b[len(s)-1]) && s == string(b) // compared in place
}

func (e *entry) addClient(c string) {
	if c == "" {
		return
	}
	for _, x := range e.clients {
		if x == c {
			return
		}
	}
	if len(e.clients) >= maxClientNames {
		e.moreCli = true
		return
	}
	e.clients = append(e.clients, c)
}

// table is a map bounded to max entries with eviction of the lowest weight
// (a min-heap gives it in O(log n)); evicted counts go to other so the
// totals stay exact.
//
// The shards of one window share their capacity: each table may always
// hold max entries of its own (its reserve) and may borrow more from pool,
// a count shared by the window's tables, before it has to evict. So a
// shard whose sessions touch many keys can use what quiet shards leave,
// while the sum over the shards never exceeds the configured cap.
type table struct {
	max  int           // the reserve: entries held without borrowing
	pool *atomic.Int64 // shared spare capacity; nil = none
	m    map[string]*entry
	h    entryHeap
	// last is the entry get returned last: an event touches the same
	// key, pattern and client in apply and again in blame, and a hot
	// workload repeats them, so most gets find it without a map lookup.
	// Entries leave the table only in get, which then replaces last, so
	// last is always in the table.
	last    *entry
	other   counts
	evicted int64
}

func newTable(max int, pool *atomic.Int64) *table {
	if max < 1 {
		max = 1
	}
	return &table{max: max, pool: pool, m: make(map[string]*entry)}
}

// borrow takes one entry's capacity from the shared pool.
func (t *table) borrow() bool {
	if t.pool == nil {
		return false
	}
	if t.pool.Add(-1) >= 0 {
		return true
	}
	t.pool.Add(1)
	return false
}

func (t *table) len() int { return len(t.m) }

// get returns name's entry, admitting it (and evicting the least active
// entry when the table is full) when absent. Call grew after increasing
// its weight.
func (t *table) get(name, pattern string) *entry {
	if e := t.last; e != nil && sameString(e.name, name) {
		return e
	}
	e := t.m[name]
	if e == nil {
		var weight int64
		if len(t.m) >= t.max && !t.borrow() {
			min := t.h.pop()
			delete(t.m, min.name)
			t.other.add(&min.counts)
			t.evicted++
			weight = min.weight
		}
		e = &entry{name: name, pattern: pattern, weight: weight}
		t.m[name] = e
		t.h.push(e)
	}
	t.last = e
	return e
}

// grew restores the heap after e's weight increased: e can only move
// down (away from the root), never up.
func (t *table) grew(e *entry) { t.h.down(e.idx) }

// blame counts one conflict from src on name's entry and links the
// invalidator (when named) to it. The weight does not change, so the
// heap stays as it is.
func (t *table) blame(name, pattern string, src source, invalidator, command string, kind int) {
	e := t.get(name, pattern)
	e.counts.blamed(src)
	if invalidator != "" {
		e.addLink(invalidator, command, kind)
	}
}

// update applies d (and the duration, when timed) to name's entry, whose
// weight grows by weight: d's activity, at least 1 (see weightOf).
func (t *table) update(name, pattern string, d *counts, weight int64, dur time.Duration, timed bool, client string) {
	e := t.get(name, pattern)
	e.counts.add(d)
	if timed {
		if e.hist == nil {
			e.hist = new(hist)
		}
		e.hist.add(dur)
	}
	e.addClient(client)
	e.weight += weight
	t.grew(e)
}

// mergeInto adds t's entries to dst, which is unbounded: used to combine
// shards at window end, where the result is only ranked and dropped.
func (t *table) mergeInto(dst map[string]*entry) {
	for name, e := range t.m {
		d := dst[name]
		if d == nil {
			d = &entry{name: name, pattern: e.pattern}
			dst[name] = d
		}
		d.counts.add(&e.counts)
		d.weight += e.weight
		if e.hist != nil {
			if d.hist == nil {
				d.hist = new(hist)
			}
			d.hist.merge(e.hist)
		}
		for _, c := range e.clients {
			d.addClient(c)
		}
		d.moreCli = d.moreCli || e.moreCli
		for _, l := range e.links {
			for k, n := range l.n {
				if n != 0 {
					d.addLinkN(l.name, l.command, k, n)
				}
			}
		}
		d.moreLinks = d.moreLinks || e.moreLinks
	}
}

// rank returns up to n entries ordered hottest first: most conflicts, then
// most transactions, then name for a stable order. Entries below
// minConflicts are left out.
func rank(m map[string]*entry, n int, minConflicts int64) []*entry {
	out := make([]*entry, 0, len(m))
	for _, e := range m {
		// A conflict's attribution may come a window after the conflict
		// (its write was late, or never came): it is logged even so.
		if max(e.conflicts(), e.Attributed+e.Outside+e.Unattributed) >= minConflicts {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if ca, cb := a.conflicts(), b.conflicts(); ca != cb {
			return ca > cb
		}
		if a.Transactions != b.Transactions {
			return a.Transactions > b.Transactions
		}
		if a.activity() != b.activity() {
			return a.activity() > b.activity()
		}
		return a.name < b.name
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// entryHeap is a min-heap of entries by weight, each entry knowing its
// index. It makes the same moves as container/heap, without the calls
// through an interface, which showed in profiles of the hot path.
type entryHeap []*entry

func (h entryHeap) less(i, j int) bool { return h[i].weight < h[j].weight }

func (h entryHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}

// push adds e (heap.Push).
func (h *entryHeap) push(e *entry) {
	e.idx = len(*h)
	*h = append(*h, e)
	h.up(e.idx)
}

// pop removes and returns the entry of least weight (heap.Pop).
func (h *entryHeap) pop() *entry {
	old := *h
	n := len(old) - 1
	old.swap(0, n)
	old[:n].down(0)
	e := old[n]
	old[n] = nil
	*h = old[:n]
	return e
}

// up moves the entry at j towards the root while it is lighter than its
// parent.
func (h entryHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

// down moves the entry at i away from the root while a child is lighter,
// and reports whether it moved.
func (h entryHeap) down(i0 int) bool {
	n := len(h)
	i := i0
	for {
		j1 := 2*i + 1
		if j1 >= n || j1 < 0 { // j1 < 0 after int overflow
			break
		}
		j := j1 // left child
		if j2 := j1 + 1; j2 < n && h.less(j2, j1) {
			j = j2 // right child
		}
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}
