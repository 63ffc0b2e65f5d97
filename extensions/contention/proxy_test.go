package contention

// End-to-end: a real redis-server, the real proxy core in front of it with
// the tracker as its observer, and go-redis clients (RESP2 and RESP3) that
// count their own outcomes. The logged totals must equal the clients'.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/extensions/exstring"
	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
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
	tr := New(cfg, jsonLogger(buf))
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

// TestProxyStaleCountsExact drives versioned writes through the exstring
// extension: EXCAS, EXSET ... VER and CAS with spoiled reads, counting
// refusals on the client side.
func TestProxyStaleCountsExact(t *testing.T) {
	rs := redistest.Start(t)
	ext, err := exstring.New(exstring.Config{Upstream: proxy.Upstream{Network: "tcp", Addr: rs.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	ctx, cancel := context.WithTimeout(context.Background(), proxytest.IOTimeout)
	defer cancel()
	if err := ext.Load(ctx); err != nil {
		t.Fatalf("loading the exstring library: %v", err)
	}
	buf := &proxytest.SyncBuffer{}
	cfg := DefaultConfig()
	cfg.Window = time.Hour
	tr := New(cfg, jsonLogger(buf))
	p := proxytest.StartProxy(t, rs.Addr, proxytest.WithObservers(tr), proxytest.WithRewriters(ext))

	const clients, rounds = 4, 40
	type tally struct{ stale, casFailed int64 }
	results := make([]tally, clients)
	spoiler := newClient(t, p.Addr, 3, "spoiler")
	defer spoiler.Close()
	if err := spoiler.Do(ctx, "EXSET", "ver:1", "0").Err(); err != nil {
		t.Fatalf("EXSET through the proxy: %v", err)
	}
	if err := spoiler.Set(ctx, "plain:1", "0", 0).Err(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			cl := newClient(t, p.Addr, 2+c%2, "ver-"+strconv.Itoa(c))
			defer cl.Close()
			for i := 0; i < rounds; i++ {
				v, err := cl.Do(ctx, "EXGET", "ver:1").Slice()
				if err != nil {
					errs <- fmt.Errorf("EXGET: %w", err)
					return
				}
				ver := v[1].(int64)
				if i%3 == 0 { // spoil: the version moves on before our write
					if err := spoiler.Do(ctx, "EXSET", "ver:1", "s").Err(); err != nil {
						errs <- err
						return
					}
				}
				switch i % 2 {
				case 0:
					r, err := cl.Do(ctx, "EXCAS", "ver:1", "x", ver).Slice()
					if err != nil {
						errs <- fmt.Errorf("EXCAS: %w", err)
						return
					}
					if r[0] == "CAS_FAILED" {
						results[c].stale++
					}
				default:
					err := cl.Do(ctx, "EXSET", "ver:1", "y", "VER", ver).Err()
					if err != nil && err.Error() == "ERR update version is stale" {
						results[c].stale++
					} else if err != nil {
						errs <- fmt.Errorf("EXSET: %w", err)
						return
					}
				}
				// CAS on a plain string: compare against a value that is
				// right only when nobody else wrote in between.
				old, err := cl.Get(ctx, "plain:1").Result()
				if err != nil {
					errs <- err
					return
				}
				if i%5 == 0 {
					if err := spoiler.Set(ctx, "plain:1", "spoiled-"+strconv.Itoa(c*1000+i), 0).Err(); err != nil {
						errs <- err
						return
					}
				}
				n, err := cl.Do(ctx, "CAS", "plain:1", old, "c"+strconv.Itoa(c*1000+i)).Int64()
				if err != nil {
					errs <- fmt.Errorf("CAS: %w", err)
					return
				}
				if n == 0 {
					results[c].casFailed++
				}
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	_ = spoiler.Close()
	p.Shutdown(t)
	_ = tr.Close()
	var want tally
	for _, r := range results {
		want.stale += r.stale
		want.casFailed += r.casFailed
	}
	got := sumWindows(parseLog(t, buf.String()))
	t.Logf("clients: %d stale, %d cas_failed; logged %d, %d", want.stale, want.casFailed, got.Stale, got.CASFailed)
	if want.stale == 0 || want.casFailed == 0 {
		t.Fatalf("the spoiled writes did not fail: %+v", want)
	}
	if got.Stale != want.stale || got.CASFailed != want.casFailed {
		t.Errorf("logged stale %d cas_failed %d; clients %d %d", got.Stale, got.CASFailed, want.stale, want.casFailed)
	}
}
