package contention

import (
	"strings"
	"testing"
	"time"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/proxy"
)

// FuzzPattern checks the built-in grouping on arbitrary keys: it never
// panics, keeps every separator where it was, and is idempotent (a pattern
// groups to itself, so patterns from different proxies can be merged).
func FuzzPattern(f *testing.F) {
	for _, k := range []string{"order:1832:lock", "user-42:x", "a::b", "{u:1}", "550e8400-e29b-41d4-a716-446655440000", "-_-", "9f86d081884c7d65_1"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		p := builtinPattern(key)
		if builtinPattern(p) != p {
			t.Fatalf("not idempotent: %q → %q → %q", key, p, builtinPattern(p))
		}
		seps := func(s string) string {
			return strings.Map(func(r rune) rune {
				if r < 128 && (isMajorSep(byte(r)) || isMinorSep(byte(r))) {
					return r
				}
				return -1
			}, s)
		}
		// UUIDs collapse with their dashes; otherwise separators survive.
		if !strings.Contains(p, "*") && p != key {
			t.Fatalf("changed without a wildcard: %q → %q", key, p)
		}
		if !isUUIDLike(key) && seps(p) != seps(key) {
			t.Fatalf("separators moved: %q → %q", key, p)
		}
	})
}

func isUUIDLike(s string) bool {
	for i := 0; i+36 <= len(s); i++ {
		if isUUID(s[i : i+36]) {
			return true
		}
	}
	return false
}

// FuzzSession feeds arbitrary event sequences (names, replies, keys) to a
// session and checks the counters stay consistent with each other.
func FuzzSession(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13})
	f.Add([]byte{0, 2, 3, 0, 2, 3, 0, 2, 4, 9})
	names := []string{"watch", "unwatch", "multi", "exec", "discard", "reset", "exset", "excas", "excad", "cas", "cad", "exincrby",
		"exget", "write", "write-by-other"}
	replies := []string{okR, queued, nil2, nil3, commitR, execAbrt, noMulti, staleR, casFail, casOK, ":0\r\n", ":1\r\n", "+RESET\r\n", "-ERR x\r\n", ""}
	keys := []string{"a", "b", "c:1", "c:2"}
	f.Fuzz(func(t *testing.T, prog []byte) {
		cfg := DefaultConfig()
		cfg.Window = 1 << 62
		tr := newTracker(cfg, jsonLogger(&proxytest.SyncBuffer{}), (&fakeClock{}).now)
		defer tr.Close()
		s := tr.Open(&proxy.SessionInfo{ID: 1, Addr: "1.2.3.4:5"})
		other := tr.Open(&proxy.SessionInfo{ID: 2, Addr: "1.2.3.5:5", Name: "other"})
		for i := 0; i+1 < len(prog); i += 2 {
			name := names[int(prog[i])%len(names)]
			reply := replies[int(prog[i+1])%len(replies)]
			var args []string
			for j := 0; j <= int(prog[i])%3; j++ {
				args = append(args, keys[(int(prog[i+1])+j)%len(keys)])
			}
			to := s
			if name == "write-by-other" {
				to = other
			}
			e := ev(name, reply, args...)
			if strings.HasPrefix(name, "write") {
				// What the core reports of a write to watched keys
				// (+QUEUED inside MULTI among the replies).
				e = writeEv("set", time.Time{}, time.Time{}, args...)
				e.Reply, e.Kind = []byte(reply), 0
				if reply != "" {
					e.Kind = reply[0]
				}
			}
			e.Outcome = proxy.Outcome(prog[i] % 4) // any outcome with any reply: the tracker trusts it
			to.Observe(e)
		}
		s.Close()
		other.Close()
		tr.expire(0, true) // every conflict attributed one way or another
		cur, _ := tr.snapshot(100)
		c := cur.Totals
		if c.Commits+c.Aborts+c.ExecAborts > c.Transactions || c.Retries > c.Aborts+c.Commits ||
			c.CommitRetries > c.Aborts || c.RetriesMax > c.Aborts || c.ChainsGivenUp > c.Aborts {
			t.Fatalf("inconsistent totals %+v", c)
		}
		if a := c.Attributed + c.Outside + c.Unattributed; a > c.Aborts+c.Stale+c.CASFailed || tr.pendingCount() != 0 {
			t.Fatalf("attributed more conflicts than there were: %+v", c)
		}
		if tr.keys.n.Load() > int64(len(keys)) {
			t.Fatalf("%d keys tracked of %d", tr.keys.n.Load(), len(keys))
		}
		for _, k := range cur.Keys {
			if k.Aborts > c.Aborts || k.Transactions > c.Transactions || k.Stale > c.Stale {
				t.Fatalf("key %q exceeds totals: %+v vs %+v", k.Key, k, c)
			}
		}
	})
}
