package contention

// End-to-end: a real redis-server, the real proxy core in front of it with
// the tracker as its observer, and go-redis clients (RESP2 and RESP3) that
// count their own outcomes. The logged totals must equal the clients'.
// Refused versioned writes need the exstring extension as well: they are
// tested where the two are wired together, in cmd/exproxy
// (TestExtensionsStaleCountsExact).

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
)

// newClient is a go-redis client of addr with one connection, so one
// proxy session per client, named name.
func newClient(tb testing.TB, addr string, proto int, name string) *redis.Client {
	return proxytest.NewGoRedis(tb, addr, proto, func(o *redis.Options) {
		o.ClientName = name
		o.PoolSize = 1
	})
}

// clientTally is what one client saw.
type clientTally struct {
	name                     string
	commits, aborts, maxRetr int64
}

// TestProxyWatchCountsExact runs clients that increment a few keys with
// WATCH/GET/MULTI/SET/EXEC and retry on abort. Some attempts are spoiled on
// purpose (another connection writes the watched key between WATCH and
// EXEC) so aborts are certain; the rest race naturally.
func TestProxyWatchCountsExact(t *testing.T) {
	rs := redistest.Start(t)
	buf := &proxytest.SyncBuffer{}
	cfg := DefaultConfig()
	cfg.Window = time.Hour // one window, ended by Close
	cfg.Top = 100
	tr, err := New(cfg, Deps{Logger: jsonLogger(buf)})
	if err != nil {
		t.Fatal(err)
	}
	p := proxytest.StartProxy(t, rs.Addr, proxytest.WithObservers(tr))

	const clients, increments = 8, 60
	keys := []string{"counter:1", "counter:2", "counter:3"}
	ctx := context.Background()
	spoiler := newClient(t, p.Addr, 2, "spoiler")
	defer spoiler.Close()
	var spoiled sync.Map // key → extra increments from the spoiler
	var mu sync.Mutex
	var tallies []clientTally
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			proto := 2 + c%2
			tally := clientTally{name: fmt.Sprintf("worker-%d-resp%d", c, proto)}
			cl := newClient(t, p.Addr, proto, tally.name)
			defer cl.Close()
			for i := 0; i < increments; i++ {
				key := keys[(c+i)%len(keys)]
				var retries int64
				for attempt := 0; ; attempt++ {
					err := cl.Watch(ctx, func(tx *redis.Tx) error {
						n, err := tx.Get(ctx, key).Int64()
						if err != nil && !errors.Is(err, redis.Nil) {
							return err
						}
						if i%4 == 0 && attempt == 0 {
							if err := spoiler.Incr(ctx, key).Err(); err != nil {
								return err
							}
							v, _ := spoiled.LoadOrStore(key, new(int64))
							mu.Lock()
							*v.(*int64)++
							mu.Unlock()
						}
						_, err = tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
							pipe.Set(ctx, key, n+1, 0)
							return nil
						})
						return err
					}, key)
					if errors.Is(err, redis.TxFailedErr) {
						tally.aborts++
						retries++
						continue
					}
					if err != nil {
						errs <- fmt.Errorf("%s: %w", tally.name, err)
						return
					}
					tally.commits++
					tally.maxRetr = max(tally.maxRetr, retries)
					break
				}
			}
			mu.Lock()
			tallies = append(tallies, tally)
			mu.Unlock()
		}(c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	_ = spoiler.Close()
	p.Shutdown(t)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}

	var want clientTally
	for _, x := range tallies {
		want.commits += x.commits
		want.aborts += x.aborts
		want.maxRetr = max(want.maxRetr, x.maxRetr)
	}
	// Redis agrees with the clients: every commit and spoil is one increment.
	direct := proxytest.NewGoRedis(t, rs.Addr, 2)
	defer direct.Close()
	var sum, spoils int64
	for _, k := range keys {
		n, err := direct.Get(ctx, k).Int64()
		if err != nil {
			t.Fatal(err)
		}
		sum += n
		if v, ok := spoiled.Load(k); ok {
			spoils += *v.(*int64)
		}
	}
	if sum != want.commits+spoils || want.commits != clients*increments {
		t.Fatalf("redis holds %d, clients committed %d and spoiled %d", sum, want.commits, spoils)
	}

	lines := parseLog(t, buf.String())
	got := sumWindows(lines)
	t.Logf("clients: %d commits, %d aborts (max %d retries); log: %+v", want.commits, want.aborts, want.maxRetr, got)
	if got.Transactions != want.commits+want.aborts || got.Commits != want.commits || got.Aborts != want.aborts {
		t.Errorf("logged transactions/commits/aborts %d/%d/%d, clients %d/%d/%d",
			got.Transactions, got.Commits, got.Aborts, want.commits+want.aborts, want.commits, want.aborts)
	}
	// Every abort was retried on the same key by the same session, and
	// every chain ended in a commit.
	if got.Retries != want.aborts || got.CommitRetries != want.aborts || got.RetriesMax != want.maxRetr ||
		got.ChainsGivenUp != 0 || got.ExecAborts != 0 || got.ExecErrors != 0 || got.GivenUp != 0 {
		t.Errorf("logged retries %+v; clients: %d aborts, max %d retries", got, want.aborts, want.maxRetr)
	}
	if got.WatchExecCount != uint64(want.commits+want.aborts) {
		t.Errorf("timed transactions %d, want %d", got.WatchExecCount, want.commits+want.aborts)
	}
	// Per client (CLIENT SETNAME / HELLO SETNAME reached the tracker):
	// every worker aborted at least its spoiled attempts, so each is logged.
	for _, x := range tallies {
		row, ok := findRow(lines, MsgClient, x.name)
		if !ok || row.Aborts != x.aborts || row.Commits != x.commits || row.RetriesMax != x.maxRetr {
			t.Errorf("client %s: logged %+v (found %v), counted %+v", x.name, row, ok, x)
		}
	}
	var keyAborts int64
	for _, k := range keys {
		row, ok := findRow(lines, MsgKey, k)
		if !ok || row.Pattern != "counter:*" {
			t.Errorf("key %s: %+v (found %v)", k, row, ok)
		}
		keyAborts += row.Aborts
	}
	if pat, _ := findRow(lines, MsgPattern, "counter:*"); keyAborts != want.aborts || pat.Aborts != want.aborts {
		t.Errorf("per key aborts sum to %d, pattern %d, want %d", keyAborts, pat.Aborts, want.aborts)
	}
}
