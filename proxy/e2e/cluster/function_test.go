package cluster

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/internal/proxytest"
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
