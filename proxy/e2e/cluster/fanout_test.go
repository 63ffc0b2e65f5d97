package cluster

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/internal/proxytest"
	pcluster "github.com/exproxy/exproxy/proxy/cluster"
)

// keysOnEveryNode returns n keys with the prefix whose slots cover every
// primary (n large enough).
func keysN(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

// MGET, MSET, DEL, UNLINK, EXISTS and TOUCH with keys in many slots are
// split per slot and answered as one Redis would: MGET in the client's key
// order, the counts added.
func TestMultiKeySplit(t *testing.T) {
	h := proxytest.StartCluster(t, theCluster(t))
	h.WaitReady(t)
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			c := h.Client(t, proto)
			direct := h.Direct(t, proto)
			keys := keysN(fmt.Sprintf("mk%d:", proto), 50)
			var pairs []any
			for i, k := range keys {
				pairs = append(pairs, k, "v"+strconv.Itoa(i))
			}
			if err := c.MSet(ctx(t), pairs...).Err(); err != nil {
				t.Fatalf("MSET: %v", err)
			}
			for i, k := range keys {
				if v, err := direct.Get(ctx(t), k).Result(); err != nil || v != "v"+strconv.Itoa(i) {
					t.Fatalf("direct GET %s = %q, %v", k, v, err)
				}
			}
			// MGET in the client's order, with a missing key and a
			// repeated one.
			ask := append([]string{"mk-missing"}, keys...)
			ask = append(ask, keys[3])
			vals, err := c.MGet(ctx(t), ask...).Result()
			if err != nil {
				t.Fatalf("MGET: %v", err)
			}
			if len(vals) != len(ask) || vals[0] != nil || vals[len(vals)-1] != "v3" {
				t.Fatalf("MGET: %v", vals)
			}
			for i := range keys {
				if vals[i+1] != "v"+strconv.Itoa(i) {
					t.Fatalf("MGET element %d: %v", i+1, vals[i+1])
				}
			}
			if n, err := c.Exists(ctx(t), append(keys, "mk-missing", keys[0])...).Result(); err != nil || n != int64(len(keys)+1) {
				t.Fatalf("EXISTS: %d, %v", n, err)
			}
			if n, err := c.Touch(ctx(t), keys...).Result(); err != nil || n != int64(len(keys)) {
				t.Fatalf("TOUCH: %d, %v", n, err)
			}
			if n, err := c.Unlink(ctx(t), keys[:10]...).Result(); err != nil || n != 10 {
				t.Fatalf("UNLINK: %d, %v", n, err)
			}
			if n, err := c.Del(ctx(t), append(keys, "mk-missing")...).Result(); err != nil || n != int64(len(keys)-10) {
				t.Fatalf("DEL: %d, %v", n, err)
			}
			if n, err := direct.Exists(ctx(t), keys[20]).Result(); err != nil || n != 0 {
				t.Fatalf("after DEL: %d, %v", n, err)
			}
			// A wrong type in one slot: the error, as Redis gives it.
			if err := c.LPush(ctx(t), keys[7], "x").Err(); err != nil {
				t.Fatal(err)
			}
			vals, err = c.MGet(ctx(t), keys[5], keys[7], keys[9]).Result()
			if err != nil || vals[1] != nil {
				t.Fatalf("MGET with a list: %v, %v", vals, err)
			}
			// MSETNX cannot be split all-or-nothing: CROSSSLOT.
			if err := c.MSetNX(ctx(t), keys[1], "a", keys[2], "b").Err(); err == nil || err.Error() != pcluster.ErrCrossSlot[1:len(pcluster.ErrCrossSlot)-2] {
				t.Fatalf("MSETNX: %v", err)
			}
			c.Del(ctx(t), keys[7])
		})
	}
}

// Split commands in a pipeline with single-slot ones: each reply in its
// place.
func TestPipelineMixed(t *testing.T) {
	h := proxytest.StartCluster(t, theCluster(t))
	h.WaitReady(t)
	c := h.Client(t, 3)
	keys := keysN("pm:", 30)
	pipe := c.Pipeline()
	var want []string
	for i := 0; i < 200; i++ {
		k := keys[i%len(keys)]
		switch i % 4 {
		case 0:
			pipe.Set(ctx(t), k, strconv.Itoa(i), 0)
			want = append(want, "OK")
		case 1:
			pipe.Get(ctx(t), keys[(i-1)%len(keys)])
			want = append(want, strconv.Itoa(i-1))
		case 2:
			pipe.MGet(ctx(t), keys[(i-2)%len(keys)], "pm:none", keys[(i-2)%len(keys)])
			want = append(want, fmt.Sprint([]any{strconv.Itoa(i - 2), nil, strconv.Itoa(i - 2)}))
		case 3:
			pipe.Exists(ctx(t), keys...)
			want = append(want, "?")
		}
	}
	cmds, err := pipe.Exec(ctx(t))
	if err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	for i, cmd := range cmds {
		var got string
		switch cmd := cmd.(type) {
		case *redis.StatusCmd:
			got = cmd.Val()
		case *redis.StringCmd:
			got = cmd.Val()
		case *redis.SliceCmd:
			got = fmt.Sprint(cmd.Val())
		case *redis.IntCmd:
			got = "?"
			if cmd.Val() < 1 || cmd.Val() > 30 {
				got = fmt.Sprint(cmd.Val())
			}
		}
		if got != want[i] {
			t.Fatalf("command %d %v: %q, want %q", i, cmd.Args(), got, want[i])
		}
	}
}

// Whole-dataset commands answer for the whole cluster: DBSIZE adds up,
// KEYS and a SCAN walk find every key once, RANDOMKEY finds one, FLUSHALL
// empties every node.
func TestWholeDataset(t *testing.T) {
	h := proxytest.StartCluster(t, theCluster(t))
	h.WaitReady(t)
	h.FlushAll(t)
	direct := h.Direct(t, 2)
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			c := h.Client(t, proto)
			if k, err := c.RandomKey(ctx(t)).Result(); err != redis.Nil {
				t.Fatalf("RANDOMKEY of nothing: %q, %v", k, err)
			}
			keys := keysN(fmt.Sprintf("wd%d:", proto), 3000)
			pipe := direct.Pipeline()
			for _, k := range keys {
				pipe.Set(ctx(t), k, "1", 0)
			}
			if _, err := pipe.Exec(ctx(t)); err != nil {
				t.Fatal(err)
			}
			if n, err := c.DBSize(ctx(t)).Result(); err != nil || n != int64(len(keys)) {
				t.Fatalf("DBSIZE: %d, %v", n, err)
			}
			got, err := c.Keys(ctx(t), fmt.Sprintf("wd%d:*", proto)).Result()
			if err != nil {
				t.Fatal(err)
			}
			sort.Strings(got)
			want := slices.Clone(keys)
			sort.Strings(want)
			if !slices.Equal(got, want) {
				t.Fatalf("KEYS: %d keys, want %d", len(got), len(want))
			}
			// SCAN visits every key exactly once.
			seen := map[string]int{}
			var cur uint64
			pages := 0
			for {
				page, next, err := c.Scan(ctx(t), cur, "wd*", 100).Result()
				if err != nil {
					t.Fatalf("SCAN %d: %v", cur, err)
				}
				for _, k := range page {
					seen[k]++
				}
				pages++
				if cur = next; cur == 0 {
					break
				}
				if pages > 10000 {
					t.Fatal("SCAN does not end")
				}
			}
			if len(seen) != len(keys) {
				t.Fatalf("SCAN saw %d keys, want %d", len(seen), len(keys))
			}
			for k, n := range seen {
				if n != 1 {
					t.Fatalf("SCAN saw %s %d times", k, n)
				}
			}
			// With TYPE, and go-redis's iterator.
			it := c.ScanType(ctx(t), 0, "", 500, "string").Iterator()
			n := 0
			for it.Next(ctx(t)) {
				n++
			}
			if it.Err() != nil || n != len(keys) {
				t.Fatalf("SCAN iterator: %d keys, %v", n, it.Err())
			}
			if k, err := c.RandomKey(ctx(t)).Result(); err != nil || !slices.Contains(keys, k) {
				t.Fatalf("RANDOMKEY: %q, %v", k, err)
			}
			if err := c.FlushAll(ctx(t)).Err(); err != nil {
				t.Fatalf("FLUSHALL: %v", err)
			}
			if n, err := direct.DBSize(ctx(t)).Result(); err != nil || n != 0 {
				t.Fatalf("after FLUSHALL: DBSIZE %d, %v", n, err)
			}
			if err := c.Set(ctx(t), keys[0], "x", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if err := c.FlushDB(ctx(t)).Err(); err != nil {
				t.Fatalf("FLUSHDB: %v", err)
			}
			if n, err := c.DBSize(ctx(t)).Result(); err != nil || n != 0 {
				t.Fatalf("after FLUSHDB: DBSIZE %d, %v", n, err)
			}
		})
	}
}

// SCRIPT LOAD and FUNCTION LOAD reach every primary, so EVALSHA and FCALL
// work for keys on any node; SCRIPT EXISTS answers for all of them.
func TestScriptsEverywhere(t *testing.T) {
	h := proxytest.StartCluster(t, theCluster(t))
	h.WaitReady(t)
	c := h.Client(t, 2)
	keys := keysN("sc:", 20)
	sha, err := c.ScriptLoad(ctx(t), "return redis.call('SET', KEYS[1], ARGV[1])").Result()
	if err != nil {
		t.Fatalf("SCRIPT LOAD: %v", err)
	}
	for _, k := range keys {
		if err := c.EvalSha(ctx(t), sha, []string{k}, "s").Err(); err != nil && err != redis.Nil {
			t.Fatalf("EVALSHA on %s: %v", k, err)
		}
	}
	if ex, err := c.ScriptExists(ctx(t), sha, "0000000000000000000000000000000000000000").Result(); err != nil || !ex[0] || ex[1] {
		t.Fatalf("SCRIPT EXISTS: %v, %v", ex, err)
	}
	lib := "#!lua name=cl10\nredis.register_function('cl10get', function(keys) return redis.call('GET', keys[1]) end)"
	if err := c.FunctionLoadReplace(ctx(t), lib).Err(); err != nil {
		t.Fatalf("FUNCTION LOAD: %v", err)
	}
	for _, k := range keys {
		if v, err := c.FCall(ctx(t), "cl10get", []string{k}).Result(); err != nil || v != "s" {
			t.Fatalf("FCALL on %s: %v, %v", k, v, err)
		}
	}
	if err := c.FunctionDelete(ctx(t), "cl10").Err(); err != nil {
		t.Fatalf("FUNCTION DELETE: %v", err)
	}
	for _, n := range theCluster(t).Primaries(t) {
		libs, err := theCluster(t).Client(n).FunctionList(ctx(t), redis.FunctionListQuery{LibraryNamePattern: "cl10"}).Result()
		if err != nil || len(libs) != 0 {
			t.Fatalf("%s still has the library: %v, %v", n.Addr, libs, err)
		}
	}
	if err := c.ScriptFlush(ctx(t)).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
	if ex, err := c.ScriptExists(ctx(t), sha).Result(); err != nil || ex[0] {
		t.Fatalf("SCRIPT EXISTS after FLUSH: %v, %v", ex, err)
	}
	err = theCluster(t).NewClusterClient(2).ForEachMaster(context.Background(), func(ctx context.Context, n *redis.Client) error {
		if ex, err := n.ScriptExists(ctx, sha).Result(); err != nil || ex[0] {
			return fmt.Errorf("%s: %v, %v", n, ex, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
