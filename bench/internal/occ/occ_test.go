package occ

import (
	"context"
	"testing"
	"time"

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
