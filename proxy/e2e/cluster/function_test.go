package cluster

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/internal/proxytest"
	pcluster "github.com/exproxy/exproxy/proxy/cluster"
)

// FUNCTION LIST lists the libraries of every primary, each once, as one
// Redis holding them all would: one loaded through the proxy (on every
// primary) and one loaded directly on a single node.
func TestFunctionListEveryNode(t *testing.T) {
	cl := theCluster(t)
	h := proxytest.StartCluster(t, cl)
	h.WaitReady(t)
	prims := cl.Primaries(t)
	only := cl.Client(prims[len(prims)-1])
	t.Cleanup(func() {
		for _, n := range cl.Primaries(t) {
			cl.Client(n).FunctionDelete(ctx(t), "fl10all")
			cl.Client(n).FunctionDelete(ctx(t), "fl10one")
		}
	})
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			c := h.Client(t, proto)
			if err := c.FunctionLoadReplace(ctx(t), "#!lua name=fl10all\nredis.register_function('fl10a', function() return 1 end)").Err(); err != nil {
				t.Fatalf("FUNCTION LOAD through the proxy: %v", err)
			}
			if err := only.FunctionLoadReplace(ctx(t), "#!lua name=fl10one\nredis.register_function('fl10b', function() return 2 end)").Err(); err != nil {
				t.Fatalf("FUNCTION LOAD on %s: %v", prims[len(prims)-1].Addr, err)
			}
			for _, q := range []redis.FunctionListQuery{
				{LibraryNamePattern: "fl10*"},
				{LibraryNamePattern: "fl10*", WithCode: true},
			} {
				libs, err := c.FunctionList(ctx(t), q).Result()
				if err != nil {
					t.Fatalf("FUNCTION LIST %+v: %v", q, err)
				}
				var names []string
				for _, l := range libs {
					names = append(names, l.Name)
					if q.WithCode != strings.Contains(l.Code, "register_function") {
						t.Fatalf("FUNCTION LIST %+v: code %q", q, l.Code)
					}
					if len(l.Functions) != 1 {
						t.Fatalf("FUNCTION LIST %+v: %s has functions %v", q, l.Name, l.Functions)
					}
				}
				sort.Strings(names)
				if fmt.Sprint(names) != "[fl10all fl10one]" {
					t.Fatalf("FUNCTION LIST %+v: %v", q, names)
				}
			}
			libs, err := c.FunctionList(ctx(t), redis.FunctionListQuery{LibraryNamePattern: "fl10o*"}).Result()
			if err != nil || len(libs) != 1 || libs[0].Name != "fl10one" {
				t.Fatalf("FUNCTION LIST LIBRARYNAME fl10o*: %v, %v", libs, err)
			}
			// Not a keyword Redis knows: its own error, once.
			got := c.Do(ctx(t), "FUNCTION", "LIST", "NOSUCH").Err()
			want := cl.Client(prims[0]).Do(ctx(t), "FUNCTION", "LIST", "NOSUCH").Err()
			if got == nil || want == nil || got.Error() != want.Error() {
				t.Fatalf("FUNCTION LIST NOSUCH: %v, want %v", got, want)
			}
			if err := c.FunctionDelete(ctx(t), "fl10all").Err(); err != nil {
				t.Fatalf("FUNCTION DELETE: %v", err)
			}
			only.FunctionDelete(ctx(t), "fl10one")
			if libs, err := c.FunctionList(ctx(t), redis.FunctionListQuery{LibraryNamePattern: "fl10*"}).Result(); err != nil || len(libs) != 0 {
				t.Fatalf("FUNCTION LIST after DELETE: %v, %v", libs, err)
			}
		})
	}
}

// SCRIPT KILL and FUNCTION KILL reach the node running a long script at
// once, though the script holds the shared connection it came on: +OK,
// and the script's client gets Redis's error; with nothing running,
// NOTBUSY. FUNCTION STATS shows the running function meanwhile.
func TestKillBusyNode(t *testing.T) {
	cl := theCluster(t)
	h := proxytest.StartCluster(t, cl)
	h.WaitReady(t)
	for _, n := range cl.Primaries(t) {
		if err := cl.Client(n).ConfigSet(ctx(t), "busy-reply-threshold", "100").Err(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, n := range cl.Primaries(t) {
			cl.Client(n).ConfigSet(ctx(t), "busy-reply-threshold", "5000")
			cl.Client(n).FunctionDelete(ctx(t), "kill10")
		}
	})
	// The killer speaks the runner's protocol: the same pool, so the same
	// shared connection at the script's node (SharedConns is 1).
	killer := h.Client(t, 2)
	killer3 := h.Client(t, 3)
	if err := killer.FunctionLoadReplace(ctx(t), "#!lua name=kill10\nredis.register_function{function_name='spin10', callback=function() while true do end end, flags={'no-writes'}}").Err(); err != nil {
		t.Fatalf("FUNCTION LOAD: %v", err)
	}
	for _, tc := range []struct {
		name string
		run  func(c *redis.Client) error
		kill []any
		want string // in the script's error
	}{
		{"script", func(c *redis.Client) error {
			return c.Eval(ctx(t), "while true do end", []string{"kill10:key"}).Err()
		}, []any{"SCRIPT", "KILL"}, "Script killed"},
		{"function", func(c *redis.Client) error {
			return c.FCall(ctx(t), "spin10", []string{"kill10:key"}).Err()
		}, []any{"FUNCTION", "KILL"}, "Script killed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := killer.Do(ctx(t), tc.kill...).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOTBUSY") {
				t.Fatalf("%v with nothing running: %v", tc.kill, err)
			}
			runner := h.Client(t, 2, func(o *redis.Options) { o.ReadTimeout = 30 * time.Second })
			done := make(chan error, 1)
			go func() { done <- tc.run(runner) }()
			// The script has started once the node answers BUSY.
			node := cl.Client(cl.SlotOwner(t, pcluster.SlotString("kill10:key")))
			deadline := time.Now().Add(10 * time.Second)
			for {
				err := node.Get(ctx(t), "kill10:key").Err()
				if err != nil && strings.HasPrefix(err.Error(), "BUSY") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the script did not start: %v", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if tc.name == "function" {
				for _, c := range []*redis.Client{killer, killer3} {
					st := c.Do(ctx(t), "FUNCTION", "STATS")
					if err := st.Err(); err != nil || !strings.Contains(fmt.Sprint(st.Val()), "spin10") {
						t.Fatalf("FUNCTION STATS while spin10 runs: %v, %v", st.Val(), err)
					}
				}
			}
			start := time.Now()
			res, err := killer.Do(ctx(t), tc.kill...).Result()
			took := time.Since(start)
			if err != nil || res != "OK" {
				t.Fatalf("%v: %v, %v", tc.kill, res, err)
			}
			if took > time.Second {
				t.Fatalf("%v took %v", tc.kill, took)
			}
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("the script's client got %v, want %q", err, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the script's client got no reply")
			}
		})
	}
}
