package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
)

// Tests of shared upstream mode itself. The whole end-to-end suite also
// runs in this mode (EXPROXY_TEST_UPSTREAM_MODE=shared, part of make test);
// these check what is particular to it: that sessions really share, that
// interleaved sessions each get their own replies in order, when a session
// moves to a connection of its own, and that one session cannot hold up
// the others.

// sharedHarness runs the proxy in shared mode with conns shared
// connections per pool and no ready connections, so that Redis's count of
// the proxy's connections is the shared ones and those taken by sessions.
func sharedHarness(t *testing.T, conns int) *proxytest.Harness {
	return proxytest.Start(t, proxytest.WithOptions(func(o *proxy.Options) {
		o.Mode = proxy.SharedUpstream
		o.SharedConns = conns
		o.ReadyConns = -1
	}))
}

// TestE2ESharedInterleavedPipelines: 20 clients pipelining at once over
// one upstream connection each get exactly their own replies, in order.
func TestE2ESharedInterleavedPipelines(t *testing.T) {
	h := sharedHarness(t, 1)
	const clients, depth, rounds = 20, 50, 20
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := h.ProxyRaw(t)
			defer c.Close()
			key := fmt.Sprintf("ctr:%d", i)
			n := 0
			for r := 0; r < rounds; r++ {
				var batch []byte
				for d := 0; d < depth; d++ {
					batch = append(batch, proxytest.EncodeCommand("INCR", key)...)
					batch = append(batch, proxytest.EncodeCommand("ECHO", key+":"+strconv.Itoa(n+1))...)
					n++
				}
				if err := c.WriteE(batch); err != nil {
					errs <- err
					return
				}
				for d := n - depth; d < n; d++ {
					if got, err := c.ReadE(); err != nil || got != ":"+strconv.Itoa(d+1)+"\r\n" {
						errs <- fmt.Errorf("client %d: INCR %d got %q, %v", i, d+1, got, err)
						return
					}
					want := key + ":" + strconv.Itoa(d+1)
					if got, err := c.ReadE(); err != nil || got != "$"+strconv.Itoa(len(want))+"\r\n"+want+"\r\n" {
						errs <- fmt.Errorf("client %d: ECHO %d got %q, %v", i, d+1, got, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := h.NumClients(t); n != 1 {
		t.Errorf("%d clients on shared-conns 1: Redis has %d connections from the proxy, want 1", clients, n)
	}
	if st := h.Stats(); st.SharedConns != 1 || st.SessionsPinned != 0 {
		t.Errorf("stats: %d shared connections, %d sessions pinned; want 1 and 0", st.SharedConns, st.SessionsPinned)
	}
}

// TestE2ESharedPinsOnState: each stateful command moves its session to a
// connection of its own, after the replies it awaited on the shared one;
// the session's protocol comes along.
func TestE2ESharedPinsOnState(t *testing.T) {
	h := sharedHarness(t, 1)
	for _, tc := range []struct {
		name  string
		proto int
		cmds  [][]string
	}{
		{"MULTI", 2, [][]string{{"MULTI"}, {"INCR", "m"}, {"EXEC"}}},
		{"WATCH", 2, [][]string{{"WATCH", "m"}, {"GET", "m"}}},
		{"BLPOP", 2, [][]string{{"RPUSH", "l", "a"}, {"BLPOP", "l", "1"}}},
		{"XREAD BLOCK", 2, [][]string{{"XADD", "s", "1-1", "f", "v"}, {"XREAD", "BLOCK", "10", "STREAMS", "s", "0"}}},
		{"CLIENT SETNAME", 3, [][]string{{"CLIENT", "SETNAME", "pinned-one"}, {"CLIENT", "GETNAME"}}},
		{"SUBSCRIBE", 3, [][]string{{"SUBSCRIBE", "ch"}, {"PING"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.ResetRedis(t)
			var steps []proxytest.Step
			if tc.proto == 3 {
				steps = append(steps, c("HELLO", "3"))
			}
			steps = append(steps, c("SET", "before", "1"))
			for _, cmd := range tc.cmds {
				steps = append(steps, c(cmd...))
			}
			steps = append(steps, c("GET", "before"))
			before := h.Stats().SessionsPinned
			h.SameAsRedisPipelined(t, tc.proto, steps)
			if after := h.Stats().SessionsPinned; after != before+1 {
				t.Errorf("SessionsPinned went %d -> %d, want one more", before, after)
			}
		})
	}
}

// TestE2ESharedStaysShared: what a plain client (redis-benchmark, go-redis
// with default options in RESP2 and RESP3, scripts) sends keeps it shared.
func TestE2ESharedStaysShared(t *testing.T) {
	h := sharedHarness(t, 1)
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		rdb := h.Client(t, proto)
		if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
			t.Fatalf("RESP%d SET: %v", proto, err)
		}
		if v, err := rdb.Get(ctx, "k").Result(); err != nil || v != "v" {
			t.Fatalf("RESP%d GET: %q, %v", proto, v, err)
		}
		if v, err := rdb.Eval(ctx, "return redis.call('incr', KEYS[1])", []string{"n"}).Int(); err != nil || v < 1 {
			t.Fatalf("RESP%d EVAL: %d, %v", proto, v, err)
		}
		if m, err := rdb.HGetAll(ctx, "nohash").Result(); err != nil || len(m) != 0 {
			t.Fatalf("RESP%d HGETALL: %v, %v", proto, m, err)
		}
	}
	if st := h.Stats(); st.SessionsPinned != 0 || st.SharedConns != 2 {
		t.Errorf("go-redis RESP2 and RESP3: %d sessions pinned, %d shared connections; want 0 and 2 (one per protocol)", st.SessionsPinned, st.SharedConns)
	}
	// A failed HELLO leaves the session where it was.
	r := h.ProxyRaw(t)
	if got := r.Do("HELLO", "4"); !strings.HasPrefix(got, "-NOPROTO") {
		t.Errorf("HELLO 4: %q", got)
	}
	if got := r.Do("HGETALL", "nohash"); got != "*0\r\n" {
		t.Errorf("after a failed HELLO, the session answers %q, want RESP2 *0", got)
	}
}

// TestE2ESharedQuit: QUIT answers +OK and closes the client, not the
// shared connection.
func TestE2ESharedQuit(t *testing.T) {
	h := sharedHarness(t, 1)
	a, b := h.ProxyRaw(t), h.ProxyRaw(t)
	a.Do("PING")
	b.Do("PING")
	a.WriteString("*1\r\n$4\r\nQUIT\r\n*1\r\n$4\r\nPING\r\n")
	if out, err := a.ReadUntilEOF(); err != nil || out != "+OK\r\n" {
		t.Errorf("QUIT: %q, %v; want +OK then close", out, err)
	}
	if got := b.Do("PING"); got != "+PONG\r\n" {
		t.Errorf("other client after QUIT: %q", got)
	}
	if st := h.Stats(); st.SharedConns != 1 {
		t.Errorf("shared connections after QUIT: %d, want 1", st.SharedConns)
	}
}

// TestE2ESharedSlowClient: a client that does not read its replies does
// not hold up others on the same shared connection; it is disconnected
// at client-output-limit.
func TestE2ESharedSlowClient(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithOptions(func(o *proxy.Options) {
		o.Mode = proxy.SharedUpstream
		o.ClientOutputLimit = 4 << 20
	}))
	val := strings.Repeat("x", 256<<10)
	setup := h.ProxyRaw(t)
	if got := setup.Do("SET", "big", val); got != "+OK\r\n" {
		t.Fatalf("SET: %q", got)
	}
	slow := h.ProxyRaw(t)
	var batch []byte
	for i := 0; i < 64; i++ { // 16 MB of replies it never reads
		batch = append(batch, proxytest.EncodeCommand("GET", "big")...)
	}
	slow.Write(batch)
	other := h.ProxyRaw(t)
	for i := 0; i < 100; i++ {
		if got := other.Do("INCR", "c"); got != ":"+strconv.Itoa(i+1)+"\r\n" {
			t.Fatalf("other client, INCR %d: %q", i+1, got)
		}
	}
	proxytest.Eventually(t, "slow client disconnected", func() bool { return h.Stats().OutputLimitClosed == 1 })
	if got := other.Do("STRLEN", "big"); got != ":262144\r\n" {
		t.Errorf("other client after the slow one left: %q", got)
	}
}

// TestE2ESharedConnsSpread: with shared-conns 2, sessions spread over two
// connections and each still gets its replies in order.
func TestE2ESharedConnsSpread(t *testing.T) {
	h := sharedHarness(t, 2)
	var conns []*proxytest.Conn
	for i := 0; i < 6; i++ {
		r := h.ProxyRaw(t)
		if got := r.Do("SET", "k"+strconv.Itoa(i), strconv.Itoa(i)); got != "+OK\r\n" {
			t.Fatalf("SET: %q", got)
		}
		conns = append(conns, r)
	}
	for i, r := range conns {
		if got := r.Do("GET", "k"+strconv.Itoa(i)); got != "$1\r\n"+strconv.Itoa(i)+"\r\n" {
			t.Errorf("client %d: %q", i, got)
		}
	}
	if n := h.NumClients(t); n != 2 {
		t.Errorf("shared-conns 2: Redis has %d connections from the proxy", n)
	}
}

// TestE2ESharedUnreachable: while Redis is down, every session waiting on
// the same shared connection gets the dial's error (one dial for all of
// them), stays connected, and is served once Redis is back.
func TestE2ESharedUnreachable(t *testing.T) {
	r := redistest.Start(t)
	r.Stop()
	p := proxytest.StartProxy(t, r.Addr, proxytest.WithOptions(func(o *proxy.Options) {
		o.Mode = proxy.SharedUpstream
		o.DialTimeout = 500 * time.Millisecond
	}))
	const clients = 20
	conns := make([]*proxytest.Conn, clients)
	for i := range conns {
		conns[i] = proxytest.Dial(t, p.Addr)
	}
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Send("PING")
			if got, err := c.ReadE(); err != nil || !strings.HasPrefix(got, "-ERR exproxy: upstream "+r.Addr+" unreachable") {
				t.Errorf("client %d while Redis is down: %q, %v", i, got, err)
			}
		}()
	}
	wg.Wait()
	r.StartAgain()
	for i, c := range conns {
		if got := c.Do("INCR", "n"); got != ":"+strconv.Itoa(i+1)+"\r\n" {
			t.Errorf("client %d after Redis is back: %q", i, got)
		}
	}
	if st := p.Stats(); st.SharedConns != 1 {
		t.Errorf("shared connections: %d, want 1", st.SharedConns)
	}
}
