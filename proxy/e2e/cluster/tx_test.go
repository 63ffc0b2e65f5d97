package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/internal/proxytest"
	pcluster "github.com/exproxy/exproxy/proxy/cluster"
)

// twoNodes returns keys served by two different primaries.
func twoNodes(t *testing.T, prefix string) (a, b string) {
	c := theCluster(t)
	a = prefix + "a"
	na := c.SlotOwner(t, pcluster.SlotString(a))
	for i := 0; ; i++ {
		b = fmt.Sprintf("%sb%d", prefix, i)
		if c.SlotOwner(t, pcluster.SlotString(b)) != na {
			return a, b
		}
	}
}

// MULTI/EXEC run on the node of the transaction's keys; keys of another
// node get CROSSSLOT and the EXEC EXECABORT, as a cluster node answers a
// transaction with a refused command; nothing of it is applied.
func TestTransactions(t *testing.T) {
	h := proxytest.StartCluster(t, theCluster(t))
	h.WaitReady(t)
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			c := h.Client(t, proto)
			direct := h.Direct(t, proto)
			a, b := twoNodes(t, fmt.Sprintf("tx%d", proto))
			cmds, err := c.TxPipelined(ctx(t), func(p redis.Pipeliner) error {
				p.Set(ctx(t), a, "1", 0)
				p.Incr(ctx(t), a)
				p.Get(ctx(t), a)
				return nil
			})
			if err != nil || cmds[2].(*redis.StringCmd).Val() != "2" {
				t.Fatalf("MULTI on one node: %v, %v", cmds, err)
			}
			// Keys on two nodes: CROSSSLOT, EXECABORT, nothing applied.
			r := proxytest.Dial(t, h.Addr)
			if proto == 3 {
				r.Do("HELLO", "3")
			}
			if got := r.Do("MULTI"); got != "+OK\r\n" {
				t.Fatalf("MULTI: %q", got)
			}
			if got := r.Do("PING"); got != "+QUEUED\r\n" {
				t.Fatalf("PING in MULTI: %q", got)
			}
			if got := r.Do("SET", a, "x"); got != "+QUEUED\r\n" {
				t.Fatalf("SET a: %q", got)
			}
			if got := r.Do("SET", b, "y"); got != pcluster.ErrCrossSlot {
				t.Fatalf("SET b: %q", got)
			}
			if got := r.Do("EXEC"); got != "-EXECABORT Transaction discarded because of previous errors.\r\n" {
				t.Fatalf("EXEC: %q", got)
			}
			if v, _ := direct.Get(ctx(t), a).Result(); v != "2" {
				t.Fatalf("a = %q after the aborted transaction", v)
			}
			if got := r.Do("GET", b); !strings.HasPrefix(got, "$-1") && got != "_\r\n" {
				t.Fatalf("GET b: %q", got)
			}
			// Keyless only: on the home node; DISCARD of a held MULTI.
			r.Do("MULTI")
			r.Do("PING")
			if got := r.Do("EXEC"); got != "*1\r\n+PONG\r\n" {
				t.Fatalf("MULTI PING EXEC: %q", got)
			}
			r.Do("MULTI")
			if got := r.Do("DISCARD"); got != "+OK\r\n" {
				t.Fatalf("DISCARD: %q", got)
			}
			if got := r.Do("EXEC"); got != "-ERR EXEC without MULTI\r\n" {
				t.Fatalf("EXEC without MULTI: %q", got)
			}
			if got := r.Do("MULTI"); got != "+OK\r\n" {
				t.Fatal(got)
			}
			if got := r.Do("MULTI"); got != "-ERR MULTI calls can not be nested\r\n" {
				t.Fatalf("nested MULTI: %q", got)
			}
			r.Do("DISCARD")
		})
	}
}

// WATCH aborts EXEC when another client writes the key, across the
// proxy; go-redis's optimistic-locking helper works unchanged.
func TestWatch(t *testing.T) {
	h := proxytest.StartCluster(t, theCluster(t))
	h.WaitReady(t)
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			c := h.Client(t, proto)
			other := h.Client(t, proto)
			k := fmt.Sprintf("w%d:{k}", proto)
			c.Set(ctx(t), k, "0", 0)
			err := c.Watch(ctx(t), func(tx *redis.Tx) error {
				other.Set(ctx(t), k, "changed", 0)
				_, err := tx.TxPipelined(ctx(t), func(p redis.Pipeliner) error {
					p.Set(ctx(t), k, "mine", 0)
					return nil
				})
				return err
			}, k)
			if !errors.Is(err, redis.TxFailedErr) {
				t.Fatalf("WATCH then another client's write: %v", err)
			}
			if v, _ := c.Get(ctx(t), k).Result(); v != "changed" {
				t.Fatalf("value %q", v)
			}
			// Concurrent increments with WATCH retries: none lost.
			counter := fmt.Sprintf("w%d:counter", proto)
			c.Set(ctx(t), counter, "0", 0)
			var wg sync.WaitGroup
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cl := h.Client(t, proto)
					for i := 0; i < 20; i++ {
						for {
							err := cl.Watch(ctx(t), func(tx *redis.Tx) error {
								n, err := tx.Get(ctx(t), counter).Int()
								if err != nil {
									return err
								}
								_, err = tx.TxPipelined(ctx(t), func(p redis.Pipeliner) error {
									p.Set(ctx(t), counter, n+1, 0)
									return nil
								})
								return err
							}, counter)
							if err == nil {
								break
							}
							if !errors.Is(err, redis.TxFailedErr) {
								t.Error(err)
								return
							}
						}
					}
				}()
			}
			wg.Wait()
			if n, _ := c.Get(ctx(t), counter).Int(); n != 160 {
				t.Fatalf("counter %d, want 160", n)
			}
			// WATCH on one node, a key of another inside MULTI: CROSSSLOT.
			a, b := twoNodes(t, fmt.Sprintf("wx%d", proto))
			r := proxytest.Dial(t, h.Addr)
			r.Do("WATCH", a)
			r.Do("MULTI")
			if got := r.Do("SET", b, "1"); got != pcluster.ErrCrossSlot {
				t.Fatalf("SET on another node: %q", got)
			}
			if got := r.Do("EXEC"); !strings.HasPrefix(got, "-EXECABORT") {
				t.Fatalf("EXEC: %q", got)
			}
		})
	}
}

// Blocking commands run on the node of their key and are woken by
// another client's write.
func TestBlocking(t *testing.T) {
	h := proxytest.StartCluster(t, theCluster(t))
	h.WaitReady(t)
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			c := h.Client(t, proto)
			other := h.Client(t, proto)
			for i := 0; i < 5; i++ {
				k := fmt.Sprintf("bl%d:%d", proto, i)
				done := make(chan []string, 1)
				go func() {
					v, err := c.BLPop(context.Background(), 10*time.Second, k).Result()
					if err != nil {
						t.Error(err)
					}
					done <- v
				}()
				time.Sleep(50 * time.Millisecond)
				if err := other.RPush(ctx(t), k, "x").Err(); err != nil {
					t.Fatal(err)
				}
				select {
				case v := <-done:
					if len(v) != 2 || v[0] != k || v[1] != "x" {
						t.Fatalf("BLPOP: %v", v)
					}
				case <-time.After(proxytest.IOTimeout):
					t.Fatal("BLPOP not woken")
				}
			}
			// XREAD BLOCK and BZPOPMIN too.
			s := fmt.Sprintf("st%d", proto)
			done := make(chan error, 1)
			go func() {
				_, err := c.XRead(context.Background(), &redis.XReadArgs{Streams: []string{s, "$"}, Block: 10 * time.Second}).Result()
				done <- err
			}()
			time.Sleep(50 * time.Millisecond)
			other.XAdd(ctx(t), &redis.XAddArgs{Stream: s, Values: []string{"f", "v"}})
			if err := <-done; err != nil {
				t.Fatalf("XREAD BLOCK: %v", err)
			}
			// Keys in two slots: CROSSSLOT, as from a node.
			a, b := twoNodes(t, fmt.Sprintf("blx%d", proto))
			if err := c.BLPop(ctx(t), time.Second, a, b).Err(); err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
				t.Fatalf("BLPOP on two nodes: %v", err)
			}
			// A pipelined GET on another node behind a BLPOP still comes
			// after it.
			r := proxytest.Dial(t, h.Addr)
			if proto == 3 {
				r.Do("HELLO", "3")
			}
			other.Set(ctx(t), b, "bv", 0)
			r.Write(append(proxytest.EncodeCommand("BLPOP", a, "5"), proxytest.EncodeCommand("GET", b)...))
			time.Sleep(100 * time.Millisecond)
			other.RPush(ctx(t), a, "av")
			first := r.Read()
			if !strings.Contains(first, "av") {
				t.Fatalf("first reply %q, want BLPOP's", first)
			}
			if got := r.Read(); got != "$2\r\nbv\r\n" {
				t.Fatalf("second reply %q", got)
			}
		})
	}
}

// SUBSCRIBE and PSUBSCRIBE through the proxy get what is published on any
// node (cluster PUBLISH reaches every node); SSUBSCRIBE gets what is
// published to its shard channel.
func TestPubSub(t *testing.T) {
	h := proxytest.StartCluster(t, theCluster(t))
	h.WaitReady(t)
	direct := h.Direct(t, 2)
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			c := h.Client(t, proto)
			ps := c.Subscribe(ctx(t), "news")
			defer ps.Close()
			if _, err := ps.Receive(ctx(t)); err != nil {
				t.Fatal(err)
			}
			pps := c.PSubscribe(ctx(t), "ev.*")
			defer pps.Close()
			if _, err := pps.Receive(ctx(t)); err != nil {
				t.Fatal(err)
			}
			// Published on every primary in turn (directly): each arrives.
			for i, n := range theCluster(t).Primaries(t) {
				if err := theCluster(t).Client(n).Publish(ctx(t), "news", fmt.Sprint(i)).Err(); err != nil {
					t.Fatal(err)
				}
				m, err := ps.ReceiveMessage(ctx(t))
				if err != nil || m.Payload != fmt.Sprint(i) {
					t.Fatalf("message %d: %v, %v", i, m, err)
				}
				theCluster(t).Client(n).Publish(ctx(t), "ev.x", "p")
				pm, err := pps.ReceiveMessage(ctx(t))
				if err != nil || pm.Pattern != "ev.*" || pm.Payload != "p" {
					t.Fatalf("pattern message: %v, %v", pm, err)
				}
			}
			// Through the proxy too. (Its count is the subscribers of the
			// node it ran on, as in any cluster.)
			if err := h.Client(t, proto).Publish(ctx(t), "news", "via").Err(); err != nil {
				t.Fatalf("PUBLISH: %v", err)
			}
			if m, err := ps.ReceiveMessage(ctx(t)); err != nil || m.Payload != "via" {
				t.Fatalf("message: %v, %v", m, err)
			}
			// Sharded.
			for i := 0; i < 3; i++ {
				ch := fmt.Sprintf("sh%d:%d", proto, i)
				ss := c.SSubscribe(ctx(t), ch)
				if _, err := ss.Receive(ctx(t)); err != nil {
					t.Fatalf("SSUBSCRIBE %s: %v", ch, err)
				}
				if err := direct.SPublish(ctx(t), ch, "hello").Err(); err != nil {
					t.Fatal(err)
				}
				m, err := ss.ReceiveMessage(ctx(t))
				if err != nil || m.Channel != ch || m.Payload != "hello" {
					t.Fatalf("sharded message: %v, %v", m, err)
				}
				if n, err := h.Client(t, proto).SPublish(ctx(t), ch, "again").Result(); err != nil || n != 1 {
					t.Fatalf("SPUBLISH through the proxy: %d, %v", n, err)
				}
				if m, err := ss.ReceiveMessage(ctx(t)); err != nil || m.Payload != "again" {
					t.Fatalf("sharded message: %v, %v", m, err)
				}
				ss.Close()
			}
		})
	}
}
