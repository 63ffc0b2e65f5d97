package contention

import (
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/exproxy/exproxy/proxy"
)

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func (t *Tracker) tableSizes() (keys, patterns, clients int) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		keys += s.w.keys.len()
		patterns += s.w.patterns.len()
		clients += s.w.clients.len()
		s.mu.Unlock()
	}
	return
}

// TestMillionKeysMemoryFlat sends a million distinct keys (and as many
// distinct patterns, since half of them have no variable segment) through
// one window and checks the tables stay within their caps, the heap stays
// flat, the totals stay exact, and a genuinely hot key survives eviction.
func TestMillionKeysMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("a million keys takes a few seconds")
	}
	const n = 1_000_000
	tr, buf, _ := newTestTracker(t, func(c *Config) { c.MaxKeys, c.MaxPatterns, c.MaxClients = 2000, 500, 100 })
	cfg := tr.cfg
	var sessions []proxy.SessionObserver
	for i := 0; i < nShards; i++ {
		sessions = append(sessions, tr.Open(&proxy.SessionInfo{ID: uint64(i), Addr: "10.0.0." + strconv.Itoa(i) + ":1"}))
	}
	watch, multi, abort, commit := ev("watch", okR, ""), ev("multi", okR), ev("exec", nil2), ev("exec", commitR)
	before := heapInUse()
	var hotAborts int64
	for i := 0; i < n; i++ {
		s := sessions[i%nShards]
		var key string
		if i%2 == 0 {
			key = "user:" + strconv.Itoa(i) + ":lock" // pattern user:*:lock
		} else {
			key = "u" + strconv.Itoa(i) // its own pattern
		}
		if i%10 == 0 {
			key = "hot:counter"
			hotAborts++
		}
		watch.Args[0] = []byte(key)
		s.Observe(watch)
		s.Observe(multi)
		if key == "hot:counter" {
			s.Observe(abort)
		} else {
			s.Observe(commit)
		}
	}
	after := heapInUse()
	keys, pats, clis := tr.tableSizes()
	if keys > cfg.MaxKeys || pats > cfg.MaxPatterns || clis > cfg.MaxClients {
		t.Errorf("tables over cap: keys %d/%d patterns %d/%d clients %d/%d", keys, cfg.MaxKeys, pats, cfg.MaxPatterns, clis, cfg.MaxClients)
	}
	growth := int64(after) - int64(before)
	t.Logf("heap before %d KB, after %d KB, growth %d KB; tables: %d keys, %d patterns", before>>10, after>>10, growth>>10, keys, pats)
	if growth > 50<<20 {
		t.Errorf("heap grew by %d MB for a bounded table", growth>>20)
	}
	for _, s := range sessions {
		s.Close()
	}
	_ = tr.Close()
	lines := parseLog(t, buf.String())
	tot := sumWindows(lines)
	if tot.Transactions != n || tot.Aborts != hotAborts {
		t.Errorf("totals: %d transactions, %d aborts; want %d, %d", tot.Transactions, tot.Aborts, n, hotAborts)
	}
	// Each session aborts hot:counter, then moves on: the chain is given
	// up, but the key's own counts are exact because it was never evicted.
	hot, ok := findRow(lines, MsgKey, "hot:counter")
	if !ok || hot.Rank != 1 || hot.Aborts != hotAborts {
		t.Errorf("hot key row: %+v (found %v)", hot, ok)
	}
}

// TestShardsShareCapacity checks that one busy shard can use the spare
// capacity the quiet shards leave, and that all shards together never
// exceed the cap.
func TestShardsShareCapacity(t *testing.T) {
	tests := []struct {
		name      string
		sessions  int
		wantTotal int
	}{
		// Cap 160: each of the 8 shards keeps 10 of its own, 80 are shared.
		{"one busy session", 1, 10 + 80},
		{"two busy sessions", 2, 2*10 + 80},
		{"every shard busy", nShards, 160},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, _, _ := newTestTracker(t, func(c *Config) { c.MaxKeys = 160 })
			for i := 0; i < tc.sessions; i++ {
				s := tr.Open(&proxy.SessionInfo{ID: uint64(i), Addr: "10.0.0.1:1"})
				for j := 0; j < 1000; j++ {
					s.Observe(ev("watch", okR, "k"+strconv.Itoa(i)+"x"+strconv.Itoa(j)))
					s.Observe(ev("multi", okR))
					s.Observe(ev("exec", commitR))
				}
			}
			if keys, _, _ := tr.tableSizes(); keys != tc.wantTotal {
				t.Errorf("keys held %d, want %d", keys, tc.wantTotal)
			}
			tr.Flush()
			// A new window starts with the whole pool again.
			if keys, _, _ := tr.tableSizes(); keys != 0 {
				t.Errorf("new window holds %d keys", keys)
			}
		})
	}
}

// TestKeySetMemory fills the attribution set to its default cap, each key
// with two writes recorded, and checks its memory per key stays small
// (the set's cap is what bounds the proxy's memory for attribution).
func TestKeySetMemory(t *testing.T) {
	const n = 50_000
	pat := func(k string) string { return builtinPattern(k) }
	before := heapInUse()
	ks := newKeySet(n, time.Minute, pat)
	who := &writer{session: 1, client: "billing", addr: "10.0.0.1:5000", user: "default"}
	for i := 0; i < n+100; i++ {
		e := ks.acquire([]byte("order:"+strconv.Itoa(i)+":lock"), int64(i), false)
		if e == nil {
			continue
		}
		e.record(&writeRec{by: who, command: "set", sent: 1, done: 2})
		e.record(&writeRec{by: who, command: "incr", sent: 3, done: 4})
	}
	after := heapInUse()
	if ks.n.Load() != n || ks.full.Load() != 100 {
		t.Fatalf("%d keys tracked, %d refused", ks.n.Load(), ks.full.Load())
	}
	per := (int64(after) - int64(before)) / n
	t.Logf("%d bytes per tracked key (keys of ~16 bytes), %d MB for %d keys", per, (int64(after)-int64(before))>>20, n)
	if per > 400 {
		t.Errorf("%d bytes per tracked key", per)
	}
	runtime.KeepAlive(ks)
}
