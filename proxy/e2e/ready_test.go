package e2e

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
)

// Ready connections: a session that needs a connection of its own takes
// one dialled before it was wanted, and gives it back once its state is
// gone, so stateful episodes cost no connect and pin nobody for life.

func readyHarness(t *testing.T, ready int) *proxytest.Harness {
	t.Helper()
	h := proxytest.Start(t, proxytest.WithOptions(func(o *proxy.Options) {
		o.Mode = proxy.SharedUpstream
		o.ReadyConns = ready
	}))
	proxytest.Eventually(t, "the ready connections dialled", func() bool { return h.Stats().ReadyConns == int64(ready) })
	return h
}

// TestE2EFirstStatefulCommandNeedsNoConnect: the connection a session's
// first transaction runs on existed before the session asked for it.
func TestE2EFirstStatefulCommandNeedsNoConnect(t *testing.T) {
	h := readyHarness(t, 2)
	before := map[string]bool{}
	for _, l := range h.ClientList(t) {
		before[proxytest.ClientField(l, "id")] = true
	}
	c := h.ProxyRaw(t)
	for _, step := range [][]string{{"MULTI"}, {"INCR", "n"}, {"EXEC"}} {
		c.Do(step...)
	}
	// CLIENT ID keeps the session on that connection and names it.
	id := strings.TrimSuffix(strings.TrimPrefix(c.Do("CLIENT", "ID"), ":"), "\r\n")
	if !before[id] {
		t.Errorf("the transaction ran on connection %s, dialled after it was asked for; ready ones were %v", id, before)
	}
	proxytest.Eventually(t, "the ready set refilled", func() bool { return h.Stats().ReadyConns == 2 })
}

// TestE2ESessionsShareAgain: an application that runs WATCH loops on
// pooled connections takes a connection of its own per transaction and
// gives it back after, so Redis does not see one connection per client
// that ever ran WATCH; the counts say so.
func TestE2ESessionsShareAgain(t *testing.T) {
	h := readyHarness(t, 2)
	ctx := context.Background()
	const clients, loops = 10, 30
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := h.Client(t, 2+i%2, func(o *redis.Options) { o.PoolSize = 1 })
			key := "ctr" + strconv.Itoa(i%3)
			for done := 0; done < loops; {
				err := c.Watch(ctx, func(tx *redis.Tx) error {
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
				switch {
				case err == nil:
					done++
				case !errors.Is(err, redis.TxFailedErr):
					t.Errorf("client %d: %v", i, err)
					return
				}
				// A plain command between transactions, as an
				// application would send.
				if err := c.Get(ctx, "other").Err(); err != nil && !errors.Is(err, redis.Nil) {
					t.Errorf("client %d: GET: %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := h.Stats()
	if st.SessionsShared < st.SessionsPinned-clients {
		t.Errorf("%d times a session took a connection of its own, %d times it gave it back; want all but the last back",
			st.SessionsPinned, st.SessionsShared)
	}
	total := 0
	for i := 0; i < 3; i++ {
		n, _ := h.Direct(t, 2).Get(ctx, "ctr"+strconv.Itoa(i)).Int()
		total += n
	}
	if total != clients*loops {
		t.Errorf("counters sum to %d, want %d: an increment was lost", total, clients*loops)
	}
	// Shared (RESP2, RESP3), ready, and the spares kept per pool.
	if n := h.NumClients(t); n > 2+2+8 {
		t.Errorf("Redis has %d connections from the proxy after %d clients' transactions; want them reused", n, clients)
	}
}

// TestE2EStickyStateKeepsTheConnection: state the proxy does not follow
// (a client name) keeps the session on its own connection for good.
func TestE2EStickyStateKeepsTheConnection(t *testing.T) {
	h := readyHarness(t, 1)
	c := h.ProxyRaw(t)
	c.Do("CLIENT", "SETNAME", "sticky")
	shared := h.Stats().SessionsShared
	for i := 0; i < 3; i++ {
		c.Do("GET", "k")
	}
	if got := c.Do("CLIENT", "GETNAME"); got != "$6\r\nsticky\r\n" {
		t.Errorf("CLIENT GETNAME after plain commands: %q", got)
	}
	if st := h.Stats(); st.SessionsShared != shared {
		t.Errorf("a named session shared again")
	}
	// RESET clears the name, and with it the reason to keep the connection.
	if got := c.Do("RESET"); got != "+RESET\r\n" {
		t.Fatalf("RESET: %q", got)
	}
	c.Do("GET", "k")
	if st := h.Stats(); st.SessionsShared != shared+1 {
		t.Errorf("after RESET the session still has its own connection")
	}
}

// TestE2ETransactionWhileRedisIsBusy: a session in database 9 starts a
// transaction while another client's script keeps Redis busy. Redis
// accepts MULTI and refuses the queued command with BUSY; the session's
// connection of its own comes ready, already in database 9 (a SELECT on
// the way would be refused with BUSY too).
func TestE2ETransactionWhileRedisIsBusy(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithRedis(redistest.WithConfig("busy-reply-threshold", "100")))
	for _, via := range []string{"direct", "proxy"} {
		t.Run(via, func(t *testing.T) {
			dial := h.ProxyRaw
			if via == "direct" {
				dial = h.DirectRaw
			}
			busy, c, probe := dial(t), dial(t), h.DirectRaw(t)
			busy.Do("SELECT", "9")
			if got := c.Do("SELECT", "9"); got != "+OK\r\n" {
				t.Fatalf("SELECT 9: %q", got)
			}
			if via == "proxy" && h.Shared() {
				proxytest.Eventually(t, "db 9's ready connections", func() bool { return h.Stats().ReadyConns >= 4 })
			}
			// A script that runs until killed: however slow the host, Redis
			// stays busy for as long as the test needs.
			busy.Send("EVAL", "while true do end", "0")
			// Wait until Redis answers BUSY, however slow the host is.
			proxytest.Eventually(t, "Redis busy with the script", func() bool {
				return strings.HasPrefix(probe.Do("PING"), "-BUSY")
			})
			if got := c.Do("MULTI"); got != "+OK\r\n" {
				t.Errorf("MULTI while busy: %q", got)
			}
			if got := c.Do("INCR", "n"); !strings.HasPrefix(got, "-BUSY") {
				t.Errorf("INCR in MULTI while busy: %q", got)
			}
			if got := probe.Do("SCRIPT", "KILL"); got != "+OK\r\n" {
				t.Errorf("SCRIPT KILL: %q", got)
			}
			if got := busy.Read(); !strings.HasPrefix(got, "-ERR Script killed") {
				t.Errorf("EVAL: %q", got)
			}
			if got := c.Do("EXEC"); !strings.HasPrefix(got, "-EXECABORT") {
				t.Errorf("EXEC after a refused command: %q", got)
			}
		})
	}
}

// TestE2ELongScriptDoesNotHoldUpOthers: while one client's script keeps
// Redis busy, another client's command is answered as Redis answers it —
// BUSY once the script passed busy-reply-threshold — rather than waiting
// behind the script on a shared connection; SCRIPT KILL reaches Redis
// and stops the script.
func TestE2ELongScriptDoesNotHoldUpOthers(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithRedis(redistest.WithConfig("busy-reply-threshold", "100")))
	// In database 9 the fresh connection that replaces the retired one
	// is refused its setup (SELECT) with BUSY: the client still gets
	// Redis's BUSY for its command, not the proxy's words.
	for _, db := range []string{"0", "9"} {
		for _, via := range []string{"direct", "proxy"} {
			t.Run(via+"/db"+db, func(t *testing.T) {
				dial := h.ProxyRaw
				if via == "direct" {
					dial = h.DirectRaw
				}
				script, other, killer, probe := dial(t), dial(t), dial(t), h.DirectRaw(t)
				for _, c := range []*proxytest.Conn{script, other, killer} {
					if got := c.Do("SELECT", db); got != "+OK\r\n" {
						t.Fatalf("SELECT %s: %q", db, got)
					}
				}
				retired := h.Stats().SharedRetired
				script.Send("EVAL", "while true do end", "0")
				proxytest.Eventually(t, "Redis busy with the script", func() bool {
					return strings.HasPrefix(probe.Do("PING"), "-BUSY")
				})
				if via == "proxy" && h.Shared() {
					// What reaches the shared connection before the proxy
					// retires it (100 ms without replies) waits behind the
					// script: docs/proxy-core.md, Long scripts.
					proxytest.Eventually(t, "the shared connection retired", func() bool { return h.Stats().SharedRetired > retired })
				}
				if got := other.Do("PING"); got != "-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n" {
					t.Errorf("PING while a script runs: %q, want Redis's BUSY", got)
				}
				if got := killer.Do("SCRIPT", "KILL"); got != "+OK\r\n" {
					t.Errorf("SCRIPT KILL: %q", got)
				}
				if got := script.Read(); !strings.HasPrefix(got, "-ERR Script killed by user with SCRIPT KILL") {
					t.Errorf("the killed script's client got %q", got)
				}
				if got := other.Do("PING"); got != "+PONG\r\n" {
					t.Errorf("PING after the kill: %q", got)
				}
			})
		}
	}
}
