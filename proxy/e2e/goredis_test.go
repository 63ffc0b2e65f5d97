package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediocregopher/radix/v4"
	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
)

// TestE2EGoRedisHighLevel drives the proxy the way applications do, in
// both protocols: pipelines, transactions, optimistic locking with retry,
// pub/sub, blocking commands and SCAN iteration.
func TestE2EGoRedisHighLevel(t *testing.T) {
	h := proxytest.Start(t)
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			ctx := context.Background()
			h.ResetRedis(t)
			cl := h.Client(t, proto)

			t.Run("DefaultOptions", func(t *testing.T) {
				// As applications create it: the connect handshake pipelines
				// HELLO with CLIENT SETINFO (which Redis 7.0 refuses).
				dc := redis.NewClient(&redis.Options{Addr: h.Addr, Protocol: proto})
				defer dc.Close()
				if err := dc.Set(ctx, "def", "v", 0).Err(); err != nil {
					t.Fatalf("SET with default options: %v", err)
				}
				if v, err := dc.Get(ctx, "def").Result(); err != nil || v != "v" {
					t.Fatalf("GET with default options = %q, %v", v, err)
				}
			})

			t.Run("Pipelined", func(t *testing.T) {
				var get *redis.StringCmd
				var incr *redis.IntCmd
				var hall *redis.MapStringStringCmd
				cmds, err := cl.Pipelined(ctx, func(p redis.Pipeliner) error {
					p.Set(ctx, "p:a", "1", 0)
					incr = p.Incr(ctx, "p:a")
					get = p.Get(ctx, "p:a")
					p.HSet(ctx, "p:h", "f", "v")
					hall = p.HGetAll(ctx, "p:h")
					p.Get(ctx, "p:missing")
					return nil
				})
				if err != nil && !errors.Is(err, redis.Nil) {
					t.Fatalf("Pipelined: %v", err)
				}
				if len(cmds) != 6 || incr.Val() != 2 || get.Val() != "2" || hall.Val()["f"] != "v" {
					t.Fatalf("Pipelined results: %v", cmds)
				}
				if !errors.Is(cmds[5].Err(), redis.Nil) {
					t.Fatalf("GET missing in pipeline: %v", cmds[5].Err())
				}
			})

			t.Run("TxPipelined", func(t *testing.T) {
				var incr *redis.IntCmd
				_, err := cl.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.Set(ctx, "tx:a", "10", 0)
					incr = p.IncrBy(ctx, "tx:a", 5)
					p.Expire(ctx, "tx:a", time.Hour)
					return nil
				})
				if err != nil || incr.Val() != 15 {
					t.Fatalf("TxPipelined: %v, incr %d", err, incr.Val())
				}
				// A runtime error inside EXEC is reported for that command only.
				cmds, err := cl.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.Set(ctx, "tx:s", "str", 0)
					p.Incr(ctx, "tx:s")
					p.Get(ctx, "tx:s")
					return nil
				})
				if err == nil || len(cmds) != 3 || cmds[0].Err() != nil || cmds[1].Err() == nil || cmds[2].Err() != nil {
					t.Fatalf("TxPipelined with a failing command: %v %v", err, cmds)
				}
			})

			t.Run("WatchRetry", func(t *testing.T) {
				const workers, per = 4, 25
				key := "watch:ctr"
				var wg sync.WaitGroup
				var retries sync.Map
				errc := make(chan error, workers)
				for w := 0; w < workers; w++ {
					wg.Add(1)
					go func(w int) {
						defer wg.Done()
						wc := h.Client(t, proto)
						for i := 0; i < per; i++ {
							for attempt := 0; ; attempt++ {
								err := wc.Watch(ctx, func(tx *redis.Tx) error {
									n, err := tx.Get(ctx, key).Int()
									if err != nil && !errors.Is(err, redis.Nil) {
										return err
									}
									_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
										p.Set(ctx, key, n+1, 0)
										return nil
									})
									return err
								}, key)
								if err == nil {
									break
								}
								if !errors.Is(err, redis.TxFailedErr) {
									errc <- err
									return
								}
								retries.Store(fmt.Sprint(w, i, attempt), true)
								if attempt > 1000 {
									errc <- fmt.Errorf("worker %d: no progress", w)
									return
								}
							}
						}
					}(w)
				}
				wg.Wait()
				close(errc)
				for err := range errc {
					t.Fatal(err)
				}
				if n, err := cl.Get(ctx, key).Int(); err != nil || n != workers*per {
					t.Fatalf("counter = %d, %v; want %d", n, err, workers*per)
				}
				n := 0
				retries.Range(func(any, any) bool { n++; return true })
				t.Logf("%d aborted EXECs retried", n)
			})

			t.Run("PubSub", func(t *testing.T) {
				ps := cl.Subscribe(ctx, "gr:ch")
				defer ps.Close()
				if _, err := ps.Receive(ctx); err != nil { // subscription confirmation
					t.Fatalf("Receive: %v", err)
				}
				if err := ps.PSubscribe(ctx, "gr:p*"); err != nil {
					t.Fatal(err)
				}
				pub := h.Client(t, proto)
				ch := ps.Channel()
				// PSubscribe's confirmation is consumed by the channel reader;
				// publish until the pattern subscriber is counted.
				proxytest.Eventually(t, "pattern subscription active", func() bool {
					n, _ := pub.PubSubNumPat(ctx).Result()
					return n == 1
				})
				for i := 0; i < 10; i++ {
					if err := pub.Publish(ctx, "gr:ch", strconv.Itoa(i)).Err(); err != nil {
						t.Fatal(err)
					}
				}
				pub.Publish(ctx, "gr:pattern", "p")
				for i := 0; i < 10; i++ {
					select {
					case m := <-ch:
						if m.Channel != "gr:ch" || m.Payload != strconv.Itoa(i) {
							t.Fatalf("message %d: %+v", i, m)
						}
					case <-time.After(proxytest.IOTimeout):
						t.Fatalf("message %d not received", i)
					}
				}
				select {
				case m := <-ch:
					if m.Pattern != "gr:p*" || m.Payload != "p" {
						t.Fatalf("pattern message: %+v", m)
					}
				case <-time.After(proxytest.IOTimeout):
					t.Fatal("pattern message not received")
				}
				if err := ps.Unsubscribe(ctx); err != nil {
					t.Fatal(err)
				}
				if err := ps.Ping(ctx); err != nil {
					t.Fatalf("PING on pub/sub connection: %v", err)
				}
			})

			t.Run("Blocking", func(t *testing.T) {
				bc := h.Client(t, proto, func(o *redis.Options) { o.ReadTimeout = -1 })
				res := make(chan []string, 1)
				go func() {
					v, err := bc.BRPop(ctx, 0, "gr:q1", "gr:q2").Result()
					if err != nil {
						v = []string{"error", err.Error()}
					}
					res <- v
				}()
				h.WaitBlocked(t, 1)
				cl.RPush(ctx, "gr:q2", "x")
				if v := <-res; len(v) != 2 || v[0] != "gr:q2" || v[1] != "x" {
					t.Fatalf("BRPOP = %q", v)
				}
				v, err := bc.BLMove(ctx, "gr:none", "gr:dst", "LEFT", "RIGHT", time.Second).Result()
				if !errors.Is(err, redis.Nil) {
					t.Fatalf("BLMOVE timeout = %q, %v; want redis.Nil", v, err)
				}
				z, err := bc.BZPopMin(ctx, time.Second, "gr:nozset").Result()
				if !errors.Is(err, redis.Nil) {
					t.Fatalf("BZPOPMIN timeout = %v, %v; want redis.Nil", z, err)
				}
			})

			t.Run("Scan", func(t *testing.T) {
				const n = 1000
				p := cl.Pipeline()
				for i := 0; i < n; i++ {
					p.Set(ctx, "scan:"+strconv.Itoa(i), i, 0)
				}
				p.HSet(ctx, "scan:hash", "a", 1, "b", 2)
				if _, err := p.Exec(ctx); err != nil {
					t.Fatal(err)
				}
				seen := map[string]bool{}
				it := cl.Scan(ctx, 0, "scan:*", 50).Iterator()
				for it.Next(ctx) {
					seen[it.Val()] = true
				}
				if err := it.Err(); err != nil {
					t.Fatal(err)
				}
				if len(seen) != n+1 {
					t.Fatalf("SCAN saw %d keys, want %d", len(seen), n+1)
				}
				var fields []string
				hit := cl.HScan(ctx, "scan:hash", 0, "", 0).Iterator()
				for hit.Next(ctx) {
					fields = append(fields, hit.Val())
				}
				sort.Strings(fields)
				if strings.Join(fields, ",") != "1,2,a,b" {
					t.Fatalf("HSCAN = %v, %v", fields, hit.Err())
				}
			})
		})
	}
}

// TestE2ERedisCLI: redis-cli through the proxy prints what it prints
// against Redis, in RESP2 and RESP3 (-3), and its --pipe mode works.
func TestE2ERedisCLI(t *testing.T) {
	h := proxytest.Start(t)
	cmds := [][]string{
		{"PING"}, {"SET", "cli", "a b\nc"}, {"GET", "cli"}, {"HSET", "cli:h", "f", "v"}, {"HGETALL", "cli:h"},
		{"ZADD", "cli:z", "1.5", "m"}, {"ZSCORE", "cli:z", "m"}, {"GET", "nope"}, {"NOSUCH"}, {"SADD", "cli:s", "1"},
		{"SMEMBERS", "cli:s"}, {"CONFIG", "GET", "maxmemory-policy"},
	}
	for _, mode := range [][]string{nil, {"-3"}, {"--raw"}, {"--no-raw"}, {"--csv"}} {
		t.Run(fmt.Sprintf("mode%v", mode), func(t *testing.T) {
			for _, cmd := range cmds {
				h.ResetRedis(t)
				want, werr := proxytest.RedisCLI(t, h.Redis.Addr, nil, append(append([]string{}, mode...), cmd...)...)
				h.ResetRedis(t)
				got, gerr := proxytest.RedisCLI(t, h.Addr, nil, append(append([]string{}, mode...), cmd...)...)
				if got != want || (gerr == nil) != (werr == nil) {
					t.Errorf("redis-cli %v %v:\n proxy %q (%v)\ndirect %q (%v)", mode, cmd, got, gerr, want, werr)
				}
			}
		})
	}
	t.Run("stdin_session", func(t *testing.T) {
		in := []byte("SET k 1\nINCR k\nMULTI\nINCR k\nEXEC\nSELECT 2\nGET k\n")
		h.ResetRedis(t)
		want, _ := proxytest.RedisCLI(t, h.Redis.Addr, in)
		h.ResetRedis(t)
		got, err := proxytest.RedisCLI(t, h.Addr, in)
		if err != nil || got != want {
			t.Errorf("stdin session:\n proxy %q (%v)\ndirect %q", got, err, want)
		}
	})
	t.Run("pipe", func(t *testing.T) {
		h.ResetRedis(t)
		var in []byte
		for i := 0; i < 5000; i++ {
			in = append(in, proxytest.EncodeCommand("SET", "pipe:"+strconv.Itoa(i), strings.Repeat("x", i%100))...)
		}
		out, err := proxytest.RedisCLI(t, h.Addr, in, "--pipe")
		if err != nil || !strings.Contains(out, "errors: 0, replies: 5000") {
			t.Fatalf("redis-cli --pipe through proxy: %v\n%s", err, out)
		}
		if got := h.DirectRaw(t).Do("DBSIZE"); got != ":5000\r\n" {
			t.Fatalf("DBSIZE after --pipe: %q", got)
		}
	})
}

// TestE2ERedisCLITools: redis-cli's helper modes work through the proxy as
// they do against Redis.
func TestE2ERedisCLITools(t *testing.T) {
	h := proxytest.Start(t)
	seed := h.DirectRaw(t)
	for i := 0; i < 50; i++ {
		seed.Do("SET", "tool:"+strconv.Itoa(i), strings.Repeat("x", i))
	}
	seed.Do("RPUSH", "tool:list", "a", "b", "c")
	script := filepath.Join(t.TempDir(), "s.lua")
	if err := os.WriteFile(script, []byte("return {KEYS[1], ARGV[1], redis.call('GET', KEYS[1])}"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--scan", "--pattern", "tool:1*"},
		{"--bigkeys"},
		{"--memkeys"},
		{"--eval", script, "tool:3", ",", "arg"},
		{"--no-auth-warning", "INFO", "keyspace"},
	} {
		t.Run(args[0], func(t *testing.T) {
			want, werr := proxytest.RedisCLI(t, h.Redis.Addr, nil, args...)
			got, gerr := proxytest.RedisCLI(t, h.Addr, nil, args...)
			if werr != nil {
				t.Fatalf("direct: %v\n%s", werr, want)
			}
			if gerr != nil {
				t.Fatalf("through proxy: %v\n%s", gerr, got)
			}
			sortLines := func(s string) string { // SCAN order is not part of the contract
				l := strings.Split(s, "\n")
				sort.Strings(l)
				return strings.Join(l, "\n")
			}
			if sortLines(got) != sortLines(want) {
				t.Errorf("redis-cli %v:\n proxy:\n%s\ndirect:\n%s", args, got, want)
			}
		})
	}
}

// TestE2EReplicationCommands: the replication handshake (REPLCONF, SYNC)
// that redis-cli --rdb uses to take a backup passes through like any
// other command.
func TestE2EReplicationCommands(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithRedis(redistest.WithConfig("repl-diskless-sync-delay", "0")))
	h.DirectRaw(t).Do("SET", "backup", "me")
	dir := t.TempDir()
	want, werr := proxytest.RedisCLI(t, h.Redis.Addr, nil, "--rdb", filepath.Join(dir, "direct.rdb"))
	if werr != nil {
		t.Fatalf("direct redis-cli --rdb: %v\n%s", werr, want)
	}
	got, gerr := proxytest.RedisCLI(t, h.Addr, nil, "--rdb", filepath.Join(dir, "proxy.rdb"))
	if gerr != nil || !strings.Contains(got, "Transfer finished with success") {
		t.Fatalf("redis-cli --rdb through the proxy: %v\n%s", gerr, got)
	}
	d, _ := os.ReadFile(filepath.Join(dir, "direct.rdb"))
	p, _ := os.ReadFile(filepath.Join(dir, "proxy.rdb"))
	if len(p) == 0 || len(p) != len(d) || !bytes.Contains(p, []byte("backup")) {
		t.Errorf("RDB through proxy: %d bytes, direct %d bytes", len(p), len(d))
	}
}

// TestE2EReplicaThroughProxy: a Redis replica whose master address is the
// proxy replicates (full sync, then the command stream).
func TestE2EReplicaThroughProxy(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithRedis(redistest.WithConfig("repl-diskless-sync-delay", "0")))
	h.DirectRaw(t).Do("SET", "before", "sync")
	_, port, _ := net.SplitHostPort(h.Addr)
	replica := redistest.Start(t, redistest.WithConfig("replicaof", "127.0.0.1", port))
	rc := proxytest.Dial(t, replica.Addr)
	proxytest.Eventually(t, "replica link up", func() bool {
		return strings.Contains(rc.Do("INFO", "replication"), "master_link_status:up")
	})
	if got := rc.Do("GET", "before"); got != "$4\r\nsync\r\n" {
		t.Errorf("replica GET before = %q", got)
	}
	h.DirectRaw(t).Do("SET", "after", "stream")
	proxytest.Eventually(t, "write replicated through the proxy", func() bool { return rc.Do("GET", "after") == "$6\r\nstream\r\n" })
}

// TestE2ERadix: a second client library (radix v4), RESP2 and RESP3, with
// a pipeline and a transaction.
func TestE2ERadix(t *testing.T) {
	h := proxytest.Start(t)
	for _, proto := range []string{"2", "3"} {
		t.Run("RESP"+proto, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), proxytest.IOTimeout)
			defer cancel()
			conn, err := radix.Dialer{Protocol: proto}.Dial(ctx, "tcp", h.Addr)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer conn.Close()
			var ok string
			if err := conn.Do(ctx, radix.Cmd(&ok, "SET", "rx", "1")); err != nil || ok != "OK" {
				t.Fatalf("SET = %q, %v", ok, err)
			}
			p := radix.NewPipeline()
			var n1, n2 int
			var m map[string]string
			p.Append(radix.Cmd(&n1, "INCR", "rx"))
			p.Append(radix.Cmd(&n2, "INCR", "rx"))
			p.Append(radix.Cmd(nil, "HSET", "rxh", "a", "1", "b", "2"))
			p.Append(radix.Cmd(&m, "HGETALL", "rxh"))
			if err := conn.Do(ctx, p); err != nil || n1 != 2 || n2 != 3 || m["a"] != "1" || m["b"] != "2" {
				t.Fatalf("pipeline: %v, %d %d %v", err, n1, n2, m)
			}
			var exec []string
			tx := radix.NewPipeline()
			tx.Append(radix.Cmd(nil, "MULTI"))
			tx.Append(radix.Cmd(nil, "SET", "rx", "10"))
			tx.Append(radix.Cmd(nil, "GET", "rx"))
			tx.Append(radix.Cmd(&exec, "EXEC"))
			if err := conn.Do(ctx, tx); err != nil || len(exec) != 2 || exec[1] != "10" {
				t.Fatalf("MULTI/EXEC: %v, %q", err, exec)
			}
		})
	}
}
