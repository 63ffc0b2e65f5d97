package contention

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// keySet holds the keys whose writers the tracker records, so that a
// conflict can name the write that caused it: keys watched now, and keys
// watched or used by a versioned or compare-and-set command within the
// last ttl. The proxy core asks it, through Tracker.Watched, about every
// write command while any key is in it; the answer for a key that is not
// is one hash and one atomic load (a counting filter), for one that is a
// read lock and a map lookup, and never an allocation.
//
// The set is bounded (max entries); when it is full a new key is not
// tracked, and its conflicts count as unattributed. An entry holds no
// value and no credential: its key, its pattern and the last two writes to
// it (who, which command, when).
type keySet struct {
	seed   maphash.Seed
	ttl    int64 // nanoseconds an unwatched key stays after its last use
	max    int64
	n      atomic.Int64 // entries
	full   atomic.Int64 // keys not tracked because the set was full
	filter [filterSize]atomic.Uint32
	shards [keyShards]keyShard
	pat    func(string) string
}

const (
	keyShardBits = 5
	keyShards    = 1 << keyShardBits
	// filterSize counters of the entries' hashes: a zero counter proves a
	// key absent without a lock. 128 KB; at the default cap a hit still
	// has to be confirmed in the map, which is correct whatever the fill.
	filterBits = 15
	filterSize = 1 << filterBits
	filterMask = filterSize - 1
)

type keyShard struct {
	mu sync.RWMutex
	m  map[string]*keyEntry
	_  [32]byte // keep shards' locks off one cache line
}

// keyEntry is one tracked key. Sessions that watch it hold a pointer (and
// count in watchers) so that the sweep cannot drop it under them; so do
// conflicts waiting for their write (pending).
type keyEntry struct {
	key, pattern string
	hash         uint64
	watchers     atomic.Int32
	pending      atomic.Int32
	dropped      atomic.Bool  // swept: sessions' cached pointers must look again
	lastUse      atomic.Int64 // Unix ns of the last watch, release or versioned use

	mu     sync.Mutex
	writes [2]writeRec // the last two writes through this proxy, newest first
}

// writeRec is one write to a tracked key through this proxy: who wrote
// it and when (40 bytes: the writer is shared by its session's writes).
type writeRec struct {
	by      *writer // nil = no write
	command string
	sent    int64 // Unix ns the write was sent upstream
	done    int64 // Unix ns its reply arrived
}

// writer is who made a write: a session as it was then. A session makes
// a new one only when its name, address, user or database changes, so
// its writes share it and a record holds a pointer, not four strings.
type writer struct {
	session uint64 // SessionInfo.ID
	client  string // the writer's label: CLIENT SETNAME name, else host
	addr    string
	user    string
	db      int
}

func newKeySet(max int, ttl time.Duration, pat func(string) string) *keySet {
	s := &keySet{seed: maphash.MakeSeed(), ttl: int64(ttl), max: int64(max), pat: pat}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*keyEntry)
	}
	return s
}

// watching reports whether any key is tracked: one atomic load.
func (s *keySet) watching() bool { return s.n.Load() > 0 }

func (s *keySet) shard(h uint64) *keyShard { return &s.shards[h>>(64-keyShardBits)] }

// watched reports whether key is tracked, without allocating.
func (s *keySet) watched(key []byte) bool {
	return s.lookup(key) != nil
}

// lookup returns key's entry, or nil.
func (s *keySet) lookup(key []byte) *keyEntry {
	if s.n.Load() == 0 {
		return nil
	}
	h := maphash.Bytes(s.seed, key)
	if s.filter[h&filterMask].Load() == 0 {
		return nil
	}
	sh := s.shard(h)
	sh.mu.RLock()
	e := sh.m[string(key)] // no allocation for the lookup
	sh.mu.RUnlock()
	return e
}

// acquire returns key's entry, adding it when absent (nil when the set is
// full), and marks it used at now; watch also counts one more watcher,
// which the caller must release.
func (s *keySet) acquire(key []byte, now int64, watch bool) *keyEntry {
	h := maphash.Bytes(s.seed, key)
	sh := s.shard(h)
	sh.mu.RLock()
	e := sh.m[string(key)]
	if e != nil {
		// Under the read lock, so the sweep (which takes the write lock)
		// cannot drop the entry between the lookup and the count.
		if watch {
			e.watchers.Add(1)
		}
		e.lastUse.Store(now)
		sh.mu.RUnlock()
		return e
	}
	sh.mu.RUnlock()

	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e = sh.m[string(key)]; e == nil {
		if s.n.Load() >= s.max {
			s.full.Add(1)
			return nil
		}
		k := string(key)
		e = &keyEntry{key: k, pattern: s.pat(k), hash: h}
		sh.m[k] = e
		s.filter[h&filterMask].Add(1)
		s.n.Add(1)
	}
	if watch {
		e.watchers.Add(1)
	}
	e.lastUse.Store(now)
	return e
}

// release ends one watcher's hold on e at now.
func (s *keySet) release(e *keyEntry, now int64) {
	e.lastUse.Store(now)
	e.watchers.Add(-1)
}

// sweep drops the entries nobody watches, no conflict waits on and nobody
// used for ttl, and returns how many remain.
func (s *keySet) sweep(now int64) int64 {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if e.watchers.Load() <= 0 && e.pending.Load() <= 0 && now-e.lastUse.Load() >= s.ttl {
				e.dropped.Store(true)
				delete(sh.m, k)
				s.filter[e.hash&filterMask].Add(^uint32(0))
				s.n.Add(-1)
			}
		}
		sh.mu.Unlock()
	}
	return s.n.Load()
}

// record remembers w as the newest write to e.
func (e *keyEntry) record(w *writeRec) {
	e.mu.Lock()
	e.writes[1] = e.writes[0]
	e.writes[0] = *w
	e.mu.Unlock()
}

// lastWrite returns the newest write to e in database db that was sent
// before `before` and whose reply came after `after` (Unix ns), if any.
func (e *keyEntry) lastWrite(db int, after, before int64) (writeRec, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, w := range e.writes {
		if w.by != nil && w.by.db == db && w.done > after && w.sent < before {
			return w, true
		}
	}
	return writeRec{}, false
}
