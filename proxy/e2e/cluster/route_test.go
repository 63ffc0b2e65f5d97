package cluster

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/internal/proxytest"
	pcluster "github.com/exproxy/exproxy/proxy/cluster"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), proxytest.IOTimeout)
	t.Cleanup(cancel)
	return c
}

// Keys written through the proxy by a plain client land on the node that
// serves their slot (the ClusterClient reads them there), in every slot,
// and read back through the proxy; pipelined commands spanning all nodes
// get their replies in order.
func TestKeysAcrossSlots(t *testing.T) {
	h := proxytest.StartCluster(t, theCluster(t))
	h.WaitReady(t)
	const n = 10000
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			c := h.Client(t, proto)
			direct := h.Direct(t, proto)
			prefix := fmt.Sprintf("k%d:", proto)
			slots := map[int]bool{}
			// Pipelines of 100 commands, each spread over every node.
			for i := 0; i < n; i += 100 {
				pipe := c.Pipeline()
				for j := i; j < i+100; j++ {
					k := prefix + strconv.Itoa(j)
					slots[pcluster.SlotString(k)] = true
					pipe.Set(ctx(t), k, "v"+strconv.Itoa(j), 0)
				}
				cmds, err := pipe.Exec(ctx(t))
				if err != nil {
					t.Fatalf("pipeline at %d: %v", i, err)
				}
				for _, cmd := range cmds {
					if cmd.(*redis.StatusCmd).Val() != "OK" {
						t.Fatalf("%v: %v", cmd.Args(), cmd.(*redis.StatusCmd).Val())
					}
				}
			}
			if len(slots) < 5000 {
				t.Fatalf("only %d slots used", len(slots))
			}
			for i := 0; i < n; i++ {
				k := prefix + strconv.Itoa(i)
				if v, err := direct.Get(ctx(t), k).Result(); err != nil || v != "v"+strconv.Itoa(i) {
					t.Fatalf("direct GET %s = %q, %v", k, v, err)
				}
			}
			// Read back through the proxy, pipelined: each reply in its place.
			for i := 0; i < n; i += 500 {
				pipe := c.Pipeline()
				for j := i; j < i+500; j++ {
					pipe.Get(ctx(t), prefix+strconv.Itoa(j))
				}
				cmds, err := pipe.Exec(ctx(t))
				if err != nil {
					t.Fatalf("pipeline at %d: %v", i, err)
				}
				for j, cmd := range cmds {
					if v := cmd.(*redis.StringCmd).Val(); v != "v"+strconv.Itoa(i+j) {
						t.Fatalf("GET %s through the proxy = %q", prefix+strconv.Itoa(i+j), v)
					}
				}
			}
			// One at a time too.
			for i := 0; i < 300; i++ {
				k := prefix + strconv.Itoa(i*31%n)
				if v, err := c.Get(ctx(t), k).Result(); err != nil || v != "v"+strconv.Itoa(i*31%n) {
					t.Fatalf("GET %s = %q, %v", k, v, err)
				}
			}
		})
	}
}

// A multi-key command whose keys are in different slots gets the
// cluster's own CROSSSLOT; hash tags keep keys together.
func TestCrossSlot(t *testing.T) {
	h := proxytest.StartCluster(t, theCluster(t))
	h.WaitReady(t)
	for _, proto := range proxytest.Protocols {
		c := h.Client(t, proto)
		err := c.Do(ctx(t), "SUNIONSTORE", "dst", "a", "b").Err()
		if err == nil || err.Error() != "CROSSSLOT Keys in request don't hash to the same slot" {
			t.Fatalf("resp%d: SUNIONSTORE across slots: %v", proto, err)
		}
		if err := c.SAdd(ctx(t), "{u}a", "1").Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.SAdd(ctx(t), "{u}b", "2").Err(); err != nil {
			t.Fatal(err)
		}
		if n, err := c.SUnionStore(ctx(t), "{u}dst", "{u}a", "{u}b").Result(); err != nil || n != 2 {
			t.Fatalf("SUNIONSTORE with a hash tag: %d, %v", n, err)
		}
	}
	// The same refusal, byte for byte, from a cluster node itself.
	node := proxytest.Dial(t, theCluster(t).Nodes[0].Addr)
	want := node.Do("SUNIONSTORE", "{x}dst", "{x}a", "{y}b")
	if got := proxytest.Dial(t, h.Addr).Do("SUNIONSTORE", "{x}dst", "{x}a", "{y}b"); got != want || want != pcluster.ErrCrossSlot {
		t.Fatalf("proxy %q, node %q", got, want)
	}
}

// SELECT 0 is accepted and any other database refused with the cluster's
// own error.
func TestSelect(t *testing.T) {
	h := proxytest.StartCluster(t, theCluster(t))
	h.WaitReady(t)
	r := proxytest.Dial(t, h.Addr)
	if got := r.Do("SELECT", "0"); got != "+OK\r\n" {
		t.Fatalf("SELECT 0: %q", got)
	}
	if got := r.Do("SELECT", "1"); got != "-ERR SELECT is not allowed in cluster mode\r\n" {
		t.Fatalf("SELECT 1: %q", got)
	}
	if got := r.Do("SELECT", "x"); !strings.HasPrefix(got, "-ERR value is not an integer") {
		t.Fatalf("SELECT x: %q", got)
	}
	if got := r.Do("PING"); got != "+PONG\r\n" {
		t.Fatalf("PING: %q", got)
	}
}
