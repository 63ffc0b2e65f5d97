package occ

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/extensions/exstring"
	"github.com/exproxy/exproxy/internal/redistest"
)

// The direct-path methods against a real redis-server: each run must
// commit something and pass its own lost-update check. (EXGET/EXSET VER and
// EXCAS need exproxy; exbench covers them.)
func TestRunDirectMethods(t *testing.T) {
	srv := redistest.Start(t)
	for _, m := range []Method{Watch, Lua} {
		for _, keys := range []int{1, 10} {
			res, err := Run(context.Background(), Config{
				Addr: srv.Addr, Method: m, Clients: 8, Keys: keys,
				Duration: 100 * time.Millisecond, Prefix: "t:" + string(m), Protocol: 2,
			})
			if err != nil {
				t.Fatalf("%s keys=%d: %v", m, keys, err)
			}
			if res.Commits == 0 || res.Attempts < res.Commits {
				t.Fatalf("%s keys=%d: %+v", m, keys, res)
			}
			// The pool may add a stray command of its own (a health check
			// or a reconnect), so allow one per client.
			slack := int64(8)
			if m == Lua && (res.RoundTrips < res.Commits || res.RoundTrips > res.Commits+slack) {
				t.Errorf("lua: %d round trips for %d commits, want one each", res.RoundTrips, res.Commits)
			}
			if m == Watch && (res.RoundTrips < 3*res.Attempts || res.RoundTrips > 3*res.Attempts+slack) {
				// WATCH, GET, MULTI+SET+EXEC pipelined.
				t.Errorf("watch: %d round trips for %d attempts, want 3 each", res.RoundTrips, res.Attempts)
			}
		}
	}
}

// The versioned-string methods against the library loaded into Redis and
// called with FCALL (no proxy): each run commits, passes the value and
// version check, and EXCAS makes one round trip per attempt once a client
// knows a key.
func TestRunLibraryMethods(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, Protocol: 2})
	defer rdb.Close()
	if err := rdb.FunctionLoad(ctx, exstring.Library()).Err(); err != nil {
		t.Fatal(err)
	}
	for _, m := range []Method{ExCAS, ExVer} {
		for _, proto := range []int{2, 3} {
			res, err := Run(ctx, Config{
				Addr: srv.Addr, Method: m, Clients: 8, Keys: 1,
				Duration: 100 * time.Millisecond, Prefix: fmt.Sprintf("lib:%s:%d", m, proto), Protocol: proto,
				Func: exstring.FunctionName,
			})
			if err != nil {
				t.Fatalf("%s resp%d: %v", m, proto, err)
			}
			if res.Commits == 0 || res.Attempts < res.Commits {
				t.Fatalf("%s resp%d: %+v", m, proto, res)
			}
			// EXCAS: one EXGET per client for its first touch, then one
			// round trip per attempt; EXSET VER: EXGET + EXSET per attempt.
			switch {
			case m == ExCAS && (res.RoundTrips < res.Attempts || res.RoundTrips > res.Attempts+16):
				t.Errorf("excas: %d round trips for %d attempts", res.RoundTrips, res.Attempts)
			case m == ExVer && (res.RoundTrips < 2*res.Attempts || res.RoundTrips > 2*res.Attempts+8):
				t.Errorf("exset-ver: %d round trips for %d attempts", res.RoundTrips, res.Attempts)
			}
		}
	}
}

// A final value that disagrees with the committed count must come back as
// ErrLostUpdate, which exbench turns into a failed run.
func TestVerifyDetectsLostUpdate(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, Protocol: 2})
	defer rdb.Close()
	ctx := context.Background()
	keys := []string{"lost:0", "lost:1"}
	if err := rdb.MSet(ctx, "lost:0", "5", "lost:1", "7").Err(); err != nil {
		t.Fatal(err)
	}
	counts := make([]atomic.Int64, 2)
	counts[0].Store(5)
	counts[1].Store(7)
	if err := verify(ctx, rdb, exClient{rdb: rdb}, Watch, keys, counts); err != nil {
		t.Fatalf("matching counts: %v", err)
	}
	counts[1].Store(8) // one increment committed but not in the value
	err := verify(ctx, rdb, exClient{rdb: rdb}, Watch, keys, counts)
	if !errors.Is(err, ErrLostUpdate) {
		t.Fatalf("verify = %v, want ErrLostUpdate", err)
	}
}
