package redistest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// writeKeys writes n keys through a cluster client and returns them.
func writeKeys(t *testing.T, cc *redis.ClusterClient, prefix string, n int) []string {
	t.Helper()
	ctx := context.Background()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s:%d", prefix, i)
		if err := cc.Set(ctx, keys[i], i, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", keys[i], err)
		}
	}
	return keys
}

func checkKeys(t *testing.T, cc *redis.ClusterClient, keys []string) {
	t.Helper()
	ctx := context.Background()
	for i, k := range keys {
		// go-redis learns of a failover only when a command fails.
		v, err := cc.Get(ctx, k).Int()
		for try := 0; err != nil && try < 50; try++ {
			cc.ReloadState(ctx)
			time.Sleep(20 * time.Millisecond)
			v, err = cc.Get(ctx, k).Int()
		}
		if err != nil || v != i {
			t.Fatalf("GET %s = %d, %v; want %d", k, v, err, i)
		}
	}
}

// keysInSlots returns a key for each slot, found with CLUSTER KEYSLOT.
func keysInSlots(t *testing.T, c *Cluster, slots []int) []string {
	t.Helper()
	want := map[int64]bool{}
	for _, s := range slots {
		want[int64(s)] = true
	}
	var keys []string
	rdb := c.Client(c.firstAlive())
	for base := 0; len(want) > 0 && base < 1_000_000; base += 10000 {
		pipe := rdb.Pipeline()
		for n := base; n < base+10000; n++ {
			pipe.ClusterKeySlot(context.Background(), "counter:"+strconv.Itoa(n))
		}
		cmds, err := pipe.Exec(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for i, cmd := range cmds {
			s := cmd.(*redis.IntCmd).Val()
			if want[s] {
				delete(want, s)
				keys = append(keys, "counter:"+strconv.Itoa(base+i))
			}
		}
	}
	if len(want) > 0 {
		t.Fatalf("no key found for slots %v", want)
	}
	return keys
}

func slotOf(t *testing.T, c *Cluster, key string) int {
	t.Helper()
	s, err := c.Client(c.firstAlive()).ClusterKeySlot(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return int(s)
}

// TestCluster walks one cluster through everything the helpers do: create,
// kill a primary, restart it, manual failover, slot moves by hand and by
// redis-cli, each time checking the data and the roles.
func TestCluster(t *testing.T) {
	c := StartCluster(t)
	t.Logf("3 primaries + 3 replicas ready in %v", c.StartupTime)
	if len(c.Nodes) != 6 {
		t.Fatalf("%d nodes, want 6", len(c.Nodes))
	}
	prims := c.Primaries(t)
	if len(prims) != 3 {
		t.Fatalf("%d primaries, want 3", len(prims))
	}
	covered := 0
	for _, p := range prims {
		covered += len(c.SlotsOf(t, p))
		if r := c.ReplicasOf(t, p); len(r) != 1 {
			t.Fatalf("primary %s has replicas %v, want one", p, r)
		}
	}
	if covered != SlotCount {
		t.Fatalf("primaries serve %d slots, want %d", covered, SlotCount)
	}
	ctx := context.Background()
	cc := c.NewClusterClient(2)
	defer cc.Close()
	keys := writeKeys(t, cc, "k", 200)

	t.Run("KillPrimary and Restart", func(t *testing.T) {
		replicas := c.ReplicasOf(t, c.Primaries(t)[0])
		begin := time.Now()
		killed, promoted := c.KillPrimary(t, 0)
		t.Logf("failover after SIGKILL took %v", time.Since(begin))
		if killed.Alive() || promoted != replicas[0] {
			t.Fatalf("killed %s (alive %t), promoted %s; want replica %s promoted", killed, killed.Alive(), promoted, replicas[0])
		}
		if got := c.Primaries(t)[0]; got != promoted {
			t.Fatalf("first primary is %s, want %s", got, promoted)
		}
		checkKeys(t, cc, keys)
		c.Restart(t, killed)
		if r := c.ReplicasOf(t, promoted); !slices.Equal(r, []*ClusterNode{killed}) {
			t.Fatalf("replicas of %s after restart: %v, want [%s]", promoted, r, killed)
		}
	})

	t.Run("Failover", func(t *testing.T) {
		p := c.Primaries(t)[1]
		r := c.ReplicasOf(t, p)[0]
		begin := time.Now()
		c.Failover(t, r)
		t.Logf("CLUSTER FAILOVER took %v", time.Since(begin))
		if got := c.Primaries(t)[1]; got != r {
			t.Fatalf("primary 1 is %s, want %s", got, r)
		}
		if got := c.ReplicasOf(t, r); !slices.Equal(got, []*ClusterNode{p}) {
			t.Fatalf("replicas of the new primary: %v, want [%s]", got, p)
		}
		checkKeys(t, cc, keys)
	})

	t.Run("BeginMove answers ASK", func(t *testing.T) {
		key := "moving"
		slot := slotOf(t, c, key)
		from := c.SlotOwner(t, slot)
		var to *ClusterNode
		for _, p := range c.Primaries(t) {
			if p != from {
				to = p
				break
			}
		}
		old := "{moving}old" // same slot, exists before the move
		if err := c.Client(from).Set(ctx, old, "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
		m := c.BeginMove(t, slot, to)
		err := c.Client(from).Set(ctx, key, "v", 0).Err()
		want := fmt.Sprintf("ASK %d %s", slot, to.Addr)
		if err == nil || err.Error() != want {
			t.Fatalf("SET of a new key in a migrating slot on the source: %v, want %s", err, want)
		}
		if n := m.MigrateKeys(t, 10); n != 1 {
			t.Fatalf("MigrateKeys moved %d keys, want 1", n)
		}
		m.Finish(t)
		if err := c.WaitStable(ctx); err != nil {
			t.Fatal(err)
		}
		if got := c.SlotOwner(t, slot); got != to {
			t.Fatalf("slot %d owner %s, want %s", slot, got, to)
		}
		if v, err := cc.Get(ctx, old).Result(); err != nil || v != "1" {
			t.Fatalf("GET %s after the move: %q, %v", old, v, err)
		}
	})

	t.Run("MoveSlots", func(t *testing.T) {
		prims := c.Primaries(t)
		from, to := prims[2], prims[0]
		before := len(c.SlotsOf(t, to))
		moved := c.MoveSlots(t, from, to, 20)
		if len(moved) != 20 || len(c.SlotsOf(t, to)) != before+20 {
			t.Fatalf("moved %v; %s serves %d slots, want %d", moved, to, len(c.SlotsOf(t, to)), before+20)
		}
		for _, s := range moved {
			if got := c.SlotOwner(t, s); got != to {
				t.Fatalf("slot %d owner %s, want %s", s, got, to)
			}
		}
		checkKeys(t, cc, keys)
	})

	t.Run("moves under writes", func(t *testing.T) {
		// Clients keep incrementing keys in the slots that move, by hand
		// and then again by redis-cli (it takes the source's first
		// slots); every acknowledged increment must be there after.
		prims := c.Primaries(t)
		moving := c.SlotsOf(t, prims[1])[:30]
		keys := keysInSlots(t, c, moving)
		nkeys := len(keys)
		acked := make([]int64, nkeys)
		stop := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					done <- nil
					return
				default:
				}
				i := n % nkeys
				if err := cc.Incr(ctx, keys[i]).Err(); err != nil {
					done <- fmt.Errorf("INCR %s: %w", keys[i], err)
					return
				}
				acked[i]++
			}
		}()
		c.MoveSlots(t, prims[1], prims[2], 30)
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := c.ReshardCLI(rctx, prims[2], prims[0], 200); err != nil {
			t.Fatal(err)
		}
		close(stop)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		for _, s := range moving {
			if got := c.SlotOwner(t, s); got != prims[0] {
				t.Fatalf("slot %d is on %s, not moved twice to %s", s, got, prims[0])
			}
		}
		total := int64(0)
		for i, want := range acked {
			got, err := cc.Get(ctx, keys[i]).Int64()
			if want == 0 && err == redis.Nil {
				continue
			}
			if err != nil || got != want {
				t.Fatalf("%s = %d, %v; %d increments acknowledged", keys[i], got, err, want)
			}
			total += want
		}
		t.Logf("%d increments during the moves, none lost", total)
	})

	t.Run("ReshardCLI", func(t *testing.T) {
		prims := c.Primaries(t)
		from, to := prims[0], prims[1]
		before := len(c.SlotsOf(t, to))
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := c.ReshardCLI(ctx, from, to, 100); err != nil {
			t.Fatal(err)
		}
		if got := len(c.SlotsOf(t, to)); got != before+100 {
			t.Fatalf("%s serves %d slots after resharding 100, want %d", to, got, before+100)
		}
		checkKeys(t, cc, keys)
	})
}

func TestClusterAuthAndTLS(t *testing.T) {
	files := NewTLSFiles(t)
	for _, tc := range []struct {
		name string
		opts []ClusterOption
	}{
		{"requirepass", []ClusterOption{WithAuth("", "s3cret")}},
		{"ACL user and TLS", []ClusterOption{WithAuth("app", "s3cret"), WithClusterTLS(files)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := StartCluster(t, append(tc.opts, WithShards(3, 0))...)
			t.Logf("ready in %v", c.StartupTime)
			ctx := context.Background()
			cc := c.NewClusterClient(3)
			defer cc.Close()
			keys := writeKeys(t, cc, "a", 50)
			// The moves need MIGRATE with AUTH/AUTH2 (and TLS).
			prims := c.Primaries(t)
			c.MoveSlots(t, prims[0], prims[1], 5)
			if err := c.ReshardCLI(ctx, prims[1], prims[2], 5); err != nil {
				t.Fatal(err)
			}
			checkKeys(t, cc, keys)
			// Without credentials a node refuses.
			plain := redis.NewClient(&redis.Options{Addr: c.Nodes[0].Addr, TLSConfig: c.TLSConfig(), Protocol: 2, DisableIdentity: true})
			defer plain.Close()
			err := plain.Get(ctx, "x").Err()
			if err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
				t.Fatalf("GET without credentials: %v, want NOAUTH", err)
			}
		})
	}
}

func TestNewClusterErrors(t *testing.T) {
	_, err := NewCluster(WithShards(2, 1))
	if err == nil || !strings.Contains(err.Error(), "need at least 3") {
		t.Fatalf("NewCluster with 2 primaries: %v", err)
	}
}
