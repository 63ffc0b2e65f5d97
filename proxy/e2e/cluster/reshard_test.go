package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exproxy/exproxy/internal/proxytest"
	pcluster "github.com/exproxy/exproxy/proxy/cluster"
)

// tagFor returns a hash tag whose keys hash to slot.
func tagFor(slot int) string {
	for i := 0; ; i++ {
		tag := "t" + strconv.Itoa(i)
		if pcluster.SlotString(tag) == slot {
			return tag
		}
	}
}

// Slots move between primaries (key by key, as redis-cli --cluster
// reshard does, and with redis-cli itself) while clients write to them
// through the proxy: no client sees MOVED, ASK or TRYAGAIN or any error,
// and every acknowledged increment is in the final values.
func TestReshardUnderLoad(t *testing.T) {
	c := theCluster(t)
	h := proxytest.StartCluster(t, c)
	h.WaitReady(t)
	prims := c.Primaries(t)
	from, to := prims[0], prims[1]
	slots := c.SlotsOf(t, from)[:12]
	var keys []string
	for _, s := range slots {
		tag := tagFor(s)
		for j := 0; j < 8; j++ {
			keys = append(keys, fmt.Sprintf("{%s}:%d", tag, j))
		}
	}
	// Keys elsewhere too: the other nodes keep serving meanwhile.
	for i := 0; i < 40; i++ {
		keys = append(keys, "rs:other:"+strconv.Itoa(i))
	}
	acked := make([]atomic.Int64, len(keys))
	var stop atomic.Bool
	var errs sync.Map
	var ops atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			cl := h.Client(t, 2+w%2)
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for !stop.Load() {
				i := rng.IntN(len(keys))
				ctx, cancel := context.WithTimeout(context.Background(), proxytest.IOTimeout)
				if rng.IntN(4) == 0 && i < len(slots)*8 {
					// A multi-key command in a slot being migrated: the
					// node answers TRYAGAIN while its keys are split.
					base := i - i%8
					_, err := cl.MGet(ctx, keys[base], keys[base+1], keys[base+2]).Result()
					if err != nil {
						errs.Store(err.Error(), true)
					}
				} else {
					n, err := cl.Incr(ctx, keys[i]).Result()
					if err != nil {
						errs.Store(err.Error(), true)
					} else {
						acked[i].Add(1)
						_ = n
					}
				}
				cancel()
				ops.Add(1)
			}
		}(w)
	}
	time.Sleep(200 * time.Millisecond)
	moved := c.MoveSlots(t, from, to, len(slots))
	t.Logf("moved slots %v from %s to %s with %d operations so far", moved, from.Addr, to.Addr, ops.Load())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.ReshardCLI(ctx, to, from, len(slots)); err != nil {
		t.Fatalf("redis-cli reshard: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	errs.Range(func(k, _ any) bool {
		t.Errorf("a client saw: %v", k)
		return true
	})
	direct := h.Direct(t, 2)
	for i, k := range keys {
		v, _ := direct.Get(context.Background(), k).Int64()
		if v != acked[i].Load() {
			t.Errorf("%s = %d, %d increments acknowledged", k, v, acked[i].Load())
		}
	}
	cs, _ := h.Srv.ClusterStats()
	var redirects int64
	for _, n := range cs.Nodes {
		redirects += n.Moved + n.Asks
	}
	t.Logf("%d operations, %d redirections followed, %d slot map reads", ops.Load(), redirects, cs.Refreshes)
	if cs.SlotsCovered != 16384 || len(cs.Nodes) != 6 {
		t.Errorf("cluster stats: %d slots covered, %d nodes listed (%+v); want 16384 and 6", cs.SlotsCovered, len(cs.Nodes), cs.Nodes)
	}
	if redirects == 0 {
		t.Error("no redirection was followed: the test moved nothing under the clients")
	}
	for _, k := range keys {
		direct.Del(context.Background(), k)
	}
}
