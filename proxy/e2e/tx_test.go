package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/exproxy/exproxy/internal/proxytest"
)

func TestE2ETransactionsSameAsRedis(t *testing.T) {
	h := proxytest.Start(t)
	script := []proxytest.Step{
		c("MULTI"), c("SET", "k", "1"), c("INCR", "k"), c("GET", "k"), c("HSET", "h", "a", "1"), c("HGETALL", "h"), c("EXEC"),
		c("MULTI"), c("SET", "k", "2"), c("DISCARD"), c("GET", "k"),
		c("EXEC"), c("DISCARD"), c("MULTI"), c("MULTI"), c("EXEC"),
		// EXECABORT after a queued syntax error.
		c("MULTI"), c("SET", "k"), c("INCR", "k"), c("NOSUCHCMD"), c("EXEC"), c("GET", "k"),
		// runtime error inside EXEC: the others still run.
		c("MULTI"), c("SET", "s", "x"), c("INCR", "s"), c("SET", "s", "y"), c("EXEC"),
		// WATCH without a concurrent write.
		c("WATCH", "k", "s"), c("MULTI"), c("GET", "k"), c("EXEC"), c("WATCH", "k"), c("UNWATCH"),
		c("MULTI"), c("WATCH", "k"), c("DISCARD"),
		// WATCH then a write by the same connection aborts the EXEC.
		c("WATCH", "k"), c("SET", "k", "own"), c("MULTI"), c("GET", "k"), c("EXEC"),
		// an empty transaction, and one with RESP3-typed replies inside.
		c("MULTI"), c("EXEC"),
		c("MULTI"), c("ZADD", "z", "1.5", "m"), c("ZSCORE", "z", "m"), c("SMEMBERS", "nos"), c("GET", "nope"), c("EXEC"),
		// a command too large to buffer whole, queued and executed.
		c("MULTI"), c("SET", "big", strings.Repeat("q", 3<<20)), c("STRLEN", "big"), c("EXEC"),
		c("MULTI"), c("GET", "big"), c("EXEC"),
		c("PING"),
	}
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			h.SameAsRedis(t, proto, script)
		})
		t.Run(fmt.Sprintf("pipelined_RESP%d", proto), func(t *testing.T) {
			h.SameAsRedisPipelined(t, proto, script)
		})
	}
}

// TestE2EExecAbortedByConcurrentWrite: WATCH k, MULTI, queue, another
// client writes k, EXEC is a nil reply — "*-1" in RESP2, "_" in RESP3.
func TestE2EExecAbortedByConcurrentWrite(t *testing.T) {
	h := proxytest.Start(t)
	for _, proto := range proxytest.Protocols {
		for _, writerVia := range []string{"direct", "proxy"} {
			t.Run(fmt.Sprintf("RESP%d_writer_%s", proto, writerVia), func(t *testing.T) {
				a := h.ProxyRaw(t)
				if proto == 3 {
					a.Do("HELLO", "3")
				}
				key := fmt.Sprintf("w%d%s", proto, writerVia)
				if got := a.Do("WATCH", key); got != "+OK\r\n" {
					t.Fatalf("WATCH: %q", got)
				}
				if got := a.Do("MULTI"); got != "+OK\r\n" {
					t.Fatalf("MULTI: %q", got)
				}
				if got := a.Do("SET", key, "mine"); got != "+QUEUED\r\n" {
					t.Fatalf("SET in MULTI: %q", got)
				}
				var b *proxytest.Conn
				if writerVia == "direct" {
					b = h.DirectRaw(t)
				} else {
					b = h.ProxyRaw(t)
				}
				if got := b.Do("SET", key, "theirs"); got != "+OK\r\n" {
					t.Fatalf("concurrent SET: %q", got)
				}
				want := "*-1\r\n"
				if proto == 3 {
					want = "_\r\n"
				}
				if got := a.Do("EXEC"); got != want {
					t.Fatalf("EXEC = %q, want %q", got, want)
				}
				if got := a.Do("GET", key); got != "$6\r\ntheirs\r\n" {
					t.Fatalf("GET after aborted EXEC: %q", got)
				}
				// The WATCH is gone after EXEC: a new transaction succeeds.
				a.Do("WATCH", key)
				a.Do("MULTI")
				a.Do("SET", key, "again")
				if got := a.Do("EXEC"); got != "*1\r\n+OK\r\n" {
					t.Fatalf("second EXEC = %q", got)
				}
				// UNWATCH disarms: a concurrent write no longer aborts.
				a.Do("WATCH", key)
				a.Do("UNWATCH")
				b.Do("SET", key, "x")
				a.Do("MULTI")
				a.Do("GET", key)
				if got := a.Do("EXEC"); got != "*1\r\n$1\r\nx\r\n" {
					t.Fatalf("EXEC after UNWATCH = %q", got)
				}
			})
		}
	}
}
