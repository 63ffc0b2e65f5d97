package clients

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/exproxy/exproxy/internal/proxytest"
)

// TestLostConnectionLikeRedis: a BLPOP is in flight when its connection
// to Redis is killed (CLIENT KILL ID from an admin connection). Directly,
// each library sees its connection drop and does what it does about that:
// ioredis re-sends the BLPOP after reconnecting, node-redis fails it and
// reconnects, redis-py raises ConnectionError or, with a Retry policy on
// ConnectionError, sends it again. Then an RPUSH wakes whatever BLPOP is
// waiting. Through the proxy — whose upstream connection serving the
// client is the one killed — the library must end up with the same
// result, the same error class, and the same list left behind: never a
// reply the proxy made up.
func TestLostConnectionLikeRedis(t *testing.T) {
	h := proxytest.Start(t)
	variants := map[string][]map[string]any{"redis-py": {{"retry": false}, {"retry": true}}}
	for _, lib := range libraries() {
		for _, proto := range proxytest.Protocols {
			vs := variants[lib.name]
			if vs == nil {
				vs = []map[string]any{{}}
			}
			for _, args := range vs {
				t.Run(fmt.Sprintf("%s/RESP%d/%s", lib.name, proto, describe(args)), func(t *testing.T) {
					need(t, lib, proto)
					var outs []map[string]any
					for _, a := range addrs(h) {
						out := lostRun(t, h, lib, a.addr, proto, args)
						t.Logf("%s: %v", a.via, out)
						outs = append(outs, out)
					}
					if _, ok := outs[0]["blpop"]; !ok && outs[0]["blpop_error"] == nil {
						t.Fatalf("direct run: neither a BLPOP result nor an error: %v", outs[0])
					}
					sameOutcome(t, lib, outs[0], outs[1])
				})
			}
		}
	}
}

// lostRun runs the lost scenario once against addr and returns the
// script's outcomes with what the test saw: whether a BLPOP blocked again
// after the kill (so the RPUSH went to it) and the list's length at the
// end.
func lostRun(t *testing.T, h *proxytest.Harness, lib library, addr string, proto int, args map[string]any) map[string]any {
	t.Helper()
	h.ResetRedis(t)
	r := start(t, lib, "lost", addr, proto, args)
	waitFor(t, lib, r, "the BLPOP to block", func() bool { return blocked(t, h) == 1 })
	killBlocked(t, h)
	// Either the library sends the BLPOP again (it blocks again) or it
	// gives up and the script ends.
	waitFor(t, lib, r, "the BLPOP to block again or the script to end", func() bool {
		return r.exited() || blocked(t, h) == 1
	})
	reblocked := !r.exited()
	admin := h.DirectRaw(t)
	defer admin.Close()
	if got := admin.Do("RPUSH", "q", "v"); got != ":1\r\n" {
		t.Fatalf("RPUSH: %q", got)
	}
	out := r.result(t, lib)
	out["reblocked"] = reblocked
	out["llen"] = strings.TrimSpace(admin.Do("LLEN", "q"))
	return out
}

// waitFor polls cond until it holds; a script that ends while the test
// waits for something else fails the test with its output.
func waitFor(t *testing.T, lib library, r *run, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(proxytest.IOTimeout)
	for !cond() {
		if r.exited() && !cond() {
			r.result(t, lib) // fails (or skips) with the script's output
			t.Fatalf("the script ended while waiting for %s\nstdout: %s\nstderr: %s", what, r.stdout.String(), r.stderr.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func blocked(t *testing.T, h *proxytest.Harness) int {
	var n int
	_, _ = fmt.Sscan(h.InfoField(t, "clients", "blocked_clients"), &n)
	return n
}

// killBlocked kills, in Redis, the connection blocked in BLPOP: the
// client's own directly, the proxy's upstream connection serving it
// through the proxy.
func killBlocked(t *testing.T, h *proxytest.Harness) {
	t.Helper()
	for _, l := range h.ClientList(t) {
		// flags=b, not cmd=blpop: cmd is the last command a connection
		// ran, and in shared mode a connection that served an earlier
		// BLPOP and went back to the ready set still shows it.
		if strings.Contains(proxytest.ClientField(l, "flags"), "b") && proxytest.ClientField(l, "cmd") == "blpop" {
			admin := h.DirectRaw(t)
			defer admin.Close()
			if got := admin.Do("CLIENT", "KILL", "ID", proxytest.ClientField(l, "id")); got != ":1\r\n" {
				t.Fatalf("CLIENT KILL: %q", got)
			}
			return
		}
	}
	t.Fatalf("no connection blocked in BLPOP:\n%s", strings.Join(h.ClientList(t), "\n"))
}

// describe names a variant's arguments for a subtest.
func describe(args map[string]any) string {
	if len(args) == 0 {
		return "default"
	}
	var parts []string
	for _, k := range []string{"retry", "user"} {
		if v, ok := args[k]; ok {
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	return strings.Join(parts, ",")
}
