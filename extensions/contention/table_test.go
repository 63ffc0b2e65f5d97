package contention

import (
	"container/heap"
	"math/rand/v2"
	"reflect"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exproxy/exproxy/proxy"
)

// refTable is the table as it was before its hot path was tuned: every
// get a map lookup, every change a container/heap Fix. The tuned table
// must end up in exactly the same state after any sequence of updates,
// so that the same entries are evicted and the same rows reported.
type refTable struct {
	max     int
	pool    *atomic.Int64
	m       map[string]*entry
	h       refHeap
	other   counts
	evicted int64
}

func (t *refTable) get(name, pattern string) *entry {
	e := t.m[name]
	if e == nil {
		var weight int64
		borrowed := false
		if len(t.m) >= t.max && t.pool != nil {
			if t.pool.Add(-1) >= 0 {
				borrowed = true
			} else {
				t.pool.Add(1)
			}
		}
		if len(t.m) >= t.max && !borrowed {
			min := heap.Pop(&t.h).(*entry)
			delete(t.m, min.name)
			t.other.add(&min.counts)
			t.evicted++
			weight = min.weight
		}
		e = &entry{name: name, pattern: pattern, weight: weight}
		t.m[name] = e
		heap.Push(&t.h, e)
	}
	return e
}

func (t *refTable) update(name, pattern string, d *counts, client string) {
	e := t.get(name, pattern)
	e.counts.add(d)
	e.addClient(client)
	if a := d.activity(); a > 0 {
		e.weight += a
	} else {
		e.weight++
	}
	heap.Fix(&t.h, e.idx)
}

func (t *refTable) blame(name, pattern string, d *counts, invalidator, command string, kind int) {
	e := t.get(name, pattern)
	e.counts.add(d)
	if invalidator != "" {
		e.addLink(invalidator, command, kind)
	}
	heap.Fix(&t.h, e.idx)
}

type refHeap []*entry

func (h refHeap) Len() int           { return len(h) }
func (h refHeap) Less(i, j int) bool { return h[i].weight < h[j].weight }
func (h refHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}
func (h *refHeap) Push(x any) {
	e := x.(*entry)
	e.idx = len(*h)
	*h = append(*h, e)
}
func (h *refHeap) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	return e
}

// sameEntry compares what a row is made of.
func sameEntry(a, b *entry) bool {
	return a.name == b.name && a.pattern == b.pattern && a.counts == b.counts && a.weight == b.weight &&
		reflect.DeepEqual(a.clients, b.clients) && a.moreCli == b.moreCli &&
		reflect.DeepEqual(a.links, b.links) && a.moreLinks == b.moreLinks && a.idx == b.idx
}

// TestTableMatchesReference drives the table and the reference with the
// same random updates, blames and invalidator weight increases — two
// tables of one window sharing a pool, few slots and many names, so that
// entries are evicted all the time and the one-entry cache is often
// stale — and requires the same state after every step: entries, counts,
// weights, heap positions, what was evicted.
func TestTableMatchesReference(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0))
		var pool, refPool atomic.Int64
		pool.Store(3)
		refPool.Store(3)
		var tabs [2]*table
		var refs [2]*refTable
		for i := range tabs {
			tabs[i] = newTable(4, &pool)
			refs[i] = &refTable{max: 4, pool: &refPool, m: map[string]*entry{}}
		}
		deltas := []counts{{Stale: 1}, {CASFailed: 1}, {Transactions: 1, Aborts: 1}, {VersionedCommits: 1}, {GivenUp: 2}, {ExecErrors: 1}, {}}
		sources := []counts{fromClient: {Attributed: 1}, fromOutside: {Outside: 1}, untracked: {Unattributed: 1}}
		names := 12
		if seed%2 == 0 {
			names = 3 // a hot set that fits: no eviction, the cache mostly hits
		}
		for step := 0; step < 3000; step++ {
			i := rng.IntN(2)
			tab, ref := tabs[i], refs[i]
			name := "k" + strconv.Itoa(rng.IntN(names))
			pat := "p" + name
			d := deltas[rng.IntN(len(deltas))]
			client := "c" + strconv.Itoa(rng.IntN(3))
			switch op := rng.IntN(3); op {
			case 0:
				tab.update(name, pat, &d, weightOf(&d), 0, false, client)
				ref.update(name, pat, &d, client)
			case 1:
				inv, cmd, kind, src := "w"+strconv.Itoa(rng.IntN(3)), "set", rng.IntN(3), source(rng.IntN(3))
				if src == untracked {
					inv, cmd = "", ""
				}
				tab.blame(name, pat, src, inv, cmd, kind)
				ref.blame(name, pat, &sources[src], inv, cmd, kind)
			default: // an invalidator's entry, as blame counts and weighs it
				kind := rng.IntN(3)
				e := tab.get(name, "")
				e.counts.caused(kind)
				e.weight++
				tab.grew(e)
				r := ref.get(name, "")
				r.counts.add(&[]counts{conflictAbort: {Aborts: 1}, conflictStale: {Stale: 1}, conflictCAS: {CASFailed: 1}}[kind])
				r.weight++
				heap.Fix(&ref.h, r.idx)
			}
			if len(tab.m) != len(ref.m) || len(tab.h) != len(ref.h) || tab.other != ref.other || tab.evicted != ref.evicted {
				t.Fatalf("seed %d step %d: %d entries (heap %d), other %+v, evicted %d; reference %d (%d), %+v, %d",
					seed, step, len(tab.m), len(tab.h), tab.other, tab.evicted, len(ref.m), len(ref.h), ref.other, ref.evicted)
			}
			for j, e := range tab.h {
				if r := ref.h[j]; !sameEntry(e, r) || tab.m[e.name] != e || e.idx != j {
					t.Fatalf("seed %d step %d: heap[%d] = %+v, reference %+v", seed, step, j, e, r)
				}
			}
			if l := tab.last; l != nil && tab.m[l.name] != l {
				t.Fatalf("seed %d step %d: the cached entry %q is not the table's", seed, step, l.name)
			}
		}
		if pool.Load() != refPool.Load() {
			t.Fatalf("seed %d: pool %d, reference %d", seed, pool.Load(), refPool.Load())
		}
	}
}

// TestTableEvictsCachedEntry: the entry a table returned last can be the
// one it evicts; a later get of that name must admit a new entry, not
// count on the evicted one (whose counts went to other).
func TestTableEvictsCachedEntry(t *testing.T) {
	tab := newTable(1, nil)
	stale := counts{Stale: 1}
	tab.update("a", "", &stale, 1, 0, false, "c")
	a := tab.last
	tab.update("b", "", &stale, 1, 0, false, "c") // evicts a
	if tab.m["a"] != nil || tab.other.Stale != 1 || tab.evicted != 1 {
		t.Fatalf("a not evicted: other %+v, evicted %d", tab.other, tab.evicted)
	}
	tab.update("a", "", &stale, 1, 0, false, "c") // evicts b; a starts at b's weight (2), plus one
	if e := tab.m["a"]; e == nil || e == a || e.Stale != 1 || e.weight != 3 || tab.last != e {
		t.Fatalf("a readmitted as %+v (old %p), last %p", e, a, tab.last)
	}
	if tab.other.Stale != 2 || tab.evicted != 2 || len(tab.h) != 1 {
		t.Fatalf("other %+v, evicted %d, heap %d", tab.other, tab.evicted, len(tab.h))
	}
}

// TestEntryHeapMatchesContainerHeap: push, pop and weight increases move
// the entries exactly as container/heap would.
func TestEntryHeapMatchesContainerHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	var h entryHeap
	var ref refHeap
	for step := 0; step < 20000; step++ {
		switch op := rng.IntN(10); {
		case op < 4 || len(h) == 0:
			w := rng.Int64N(50)
			name := strconv.Itoa(step)
			h.push(&entry{name: name, weight: w})
			heap.Push(&ref, &entry{name: name, weight: w})
		case op < 6:
			e, r := h.pop(), heap.Pop(&ref).(*entry)
			if e.name != r.name || e.weight != r.weight {
				t.Fatalf("step %d: popped %s/%d, container/heap %s/%d", step, e.name, e.weight, r.name, r.weight)
			}
		default:
			i, by := rng.IntN(len(h)), 1+rng.Int64N(5)
			h[i].weight += by
			h.down(i)
			ref[i].weight += by
			heap.Fix(&ref, i)
		}
		for i := range h {
			if h[i].name != ref[i].name || h[i].idx != i || ref[i].idx != i {
				t.Fatalf("step %d: heap[%d] = %s (idx %d), container/heap %s", step, i, h[i].name, h[i].idx, ref[i].name)
			}
		}
	}
}

// TestWaitingConflictOwnsItsMemory: a conflict that waits for its write
// is a copy, so the session reusing its scratch (the next refusal's key)
// does not change it, and a recycled conflict carries nothing of the one
// before: every refusal is blamed on its own key's writer.
func TestWaitingConflictOwnsItsMemory(t *testing.T) {
	tr, _, clk := newTestTracker(t, nil)
	t0 := clk.now()
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	victim := tr.Open(&proxy.SessionInfo{ID: 1, Addr: "10.0.0.1:1", Name: "victim"})
	var ws []proxy.SessionObserver
	for i := range 3 {
		ws = append(ws, tr.Open(&proxy.SessionInfo{ID: uint64(10 + i), Addr: "10.0.0.2:1", Name: "w" + strconv.Itoa(i)}))
	}
	refuse := func(key string, when int) {
		victim.Observe(at(evOut(proxy.Stale, "excas", casFail, key, "v", "9"), ms(when), ms(when+1)))
	}
	// Round 1: three refusals wait, then each key's write comes late.
	// Round 2 (conflicts recycled, in another order): a WATCH of two of
	// those keys aborts and waits beside a refusal of a new key.
	for round := 0; round < 2; round++ {
		base := round * 100
		first := "order:1"
		if round == 0 {
			refuse(first, base)
			refuse("user:2", base+2)
			refuse("acct:3", base+4)
		} else {
			first = "item:4"
			victim.Observe(at(ev("watch", okR, "acct:3", "user:2"), ms(base), ms(base+1)))
			victim.Observe(at(ev("multi", okR), ms(base+2), ms(base+2)))
			victim.Observe(at(ev("exec", nil2), ms(base+3), ms(base+4)))
			refuse(first, base+5)
		}
		if n := tr.pendingCount(); n != 3-round {
			t.Fatalf("round %d: %d conflicts wait", round, n)
		}
		// The writes were sent before the refusals' replies, and their
		// replies come after them.
		ws[0].Observe(writeEv("set", ms(base-1), ms(base+10), first))
		ws[1].Observe(writeEv("set", ms(base-1), ms(base+10), "user:2"))
		ws[2].Observe(writeEv("set", ms(base-1), ms(base+10), "acct:3"))
		if n := tr.pendingCount(); n != 0 {
			t.Fatalf("round %d: %d conflicts still wait", round, n)
		}
	}
	cur, _ := tr.snapshot(10)
	if cur.Totals.Attributed != 5 || cur.Totals.Outside != 0 {
		t.Fatalf("totals %+v", cur.Totals)
	}
	want := map[string][]Link{
		"order:1": {{Invalidator: "w0", Command: "set", Stale: 1}},
		"item:4":  {{Invalidator: "w0", Command: "set", Stale: 1}},
		"acct:3":  {{Invalidator: "w2", Command: "set", Stale: 1}},
		// The abort is blamed on the first of its keys written (w1's
		// user:2 came before w2's acct:3).
		"user:2": {{Invalidator: "w1", Command: "set", Aborts: 1, Stale: 1}},
	}
	for _, k := range cur.Keys {
		if !reflect.DeepEqual(k.Invalidators, want[k.Key]) {
			t.Errorf("key %s: invalidators %+v, want %+v", k.Key, k.Invalidators, want[k.Key])
		}
	}
	if len(cur.Keys) != len(want) {
		t.Errorf("%d key rows, want %d", len(cur.Keys), len(want))
	}
}

// TestConflictReset: a conflict going back to the pool keeps its room
// but no key, pattern, entry or event.
func TestConflictReset(t *testing.T) {
	e := &keyEntry{key: "k"}
	c := &conflict{sh: &shard{}, victim: "v", keys: []string{"k", "l"}, pats: []string{"p", "q"}, ents: []*keyEntry{e, nil}, ev: &abortEvent{}, due: 5}
	keys, pats, ents := c.keys, c.pats, c.ents
	c.reset()
	if len(c.keys)+len(c.pats)+len(c.ents) != 0 || cap(c.keys) != 2 || c.sh != nil || c.ev != nil || c.victim != "" || c.due != 0 {
		t.Fatalf("reset left %+v", c)
	}
	if keys[0] != "" || keys[1] != "" || pats[0] != "" || ents[0] != nil {
		t.Fatalf("reset kept references: %q %q %v", keys, pats, ents)
	}
}

// TestPendingBounded: at most maxPending conflicts wait for their write;
// one more counts as unattributed at once, without waiting, and a place
// freed by a write that came is taken by the next conflict.
func TestPendingBounded(t *testing.T) {
	tr, _, clk := newTestTracker(t, func(c *Config) { c.AttributionMaxKeys = 2 * maxPending })
	t0 := clk.now()
	victim := tr.Open(&proxy.SessionInfo{ID: 1, Addr: "10.0.0.1:1", Name: "victim"})
	writer := tr.Open(&proxy.SessionInfo{ID: 2, Addr: "10.0.0.2:1", Name: "writer"})
	refuse := func(key string) {
		victim.Observe(at(evOut(proxy.Stale, "excas", casFail, key, "v", "9"), t0, t0.Add(time.Millisecond)))
	}
	for i := range maxPending {
		refuse("k:" + strconv.Itoa(i))
	}
	if n := tr.pendingCount(); n != maxPending {
		t.Fatalf("%d conflicts wait, want %d", n, maxPending)
	}
	refuse("over:1")
	if cur, _ := tr.snapshot(1); tr.pendingCount() != maxPending || cur.Totals.Unattributed != 1 {
		t.Fatalf("%d wait, totals %+v: the one past the bound should be unattributed", tr.pendingCount(), cur.Totals)
	}
	writer.Observe(writeEv("set", t0, t0.Add(2*time.Millisecond), "k:7"))
	if n := tr.pendingCount(); n != maxPending-1 {
		t.Fatalf("%d wait after a write came", n)
	}
	refuse("over:2")
	cur, _ := tr.snapshot(1)
	if tr.pendingCount() != maxPending || cur.Totals.Unattributed != 1 || cur.Totals.Attributed != 1 {
		t.Fatalf("%d wait, totals %+v: the freed place should have been taken", tr.pendingCount(), cur.Totals)
	}
}
