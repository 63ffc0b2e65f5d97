package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zapcore"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/proxy"
)

// TestE2ETrickle: commands arriving a few bytes at a time (split at
// arbitrary points: inside headers, inside bulk bodies, between CR and LF)
// get the same replies as from Redis.
func TestE2ETrickle(t *testing.T) {
	h := proxytest.Start(t)
	var in bytes.Buffer
	in.Write(proxytest.EncodeCommand("SET", "k", strings.Repeat("abc\r\n", 20000))) // 100 KB body
	in.Write(proxytest.EncodeCommand("GET", "k"))
	in.WriteString("SET inl \"x y\"\r\nGET inl\r\n")
	in.Write(proxytest.EncodeCommand("MULTI"))
	in.Write(proxytest.EncodeCommand("INCR", "n"))
	in.Write(proxytest.EncodeCommand("EXEC"))
	in.Write(proxytest.EncodeCommand("HSET", "h", "a", "", "b", "\x00"))
	in.Write(proxytest.EncodeCommand("HGETALL", "h"))
	in.Write(proxytest.EncodeCommand("STRLEN", "k"))
	for _, proto := range proxytest.Protocols {
		for _, mode := range []string{"bytewise", "random"} {
			t.Run(fmt.Sprintf("RESP%d_%s", proto, mode), func(t *testing.T) {
				rng := rand.New(rand.NewSource(int64(proto)))
				run := func(addr string) string {
					h.ResetRedis(t)
					r := proxytest.Dial(t, addr)
					defer r.Close()
					if proto == 3 {
						r.Do("HELLO", "3")
					}
					b := in.Bytes()
					for len(b) > 0 {
						n := 1
						if mode == "random" {
							n = 1 + rng.Intn(700)
						}
						if mode == "bytewise" && bytes.HasPrefix(b, []byte("abc\r\n")) {
							n = 1 + rng.Intn(5000) // keep the 100 KB body from taking 100,000 writes
						}
						if n > len(b) {
							n = len(b)
						}
						r.Write(b[:n])
						b = b[n:]
					}
					r.Send("ECHO", "--end--")
					var out strings.Builder
					for {
						v := r.Read()
						if v == "$7\r\n--end--\r\n" {
							return out.String()
						}
						out.WriteString(v)
					}
				}
				want := run(h.Redis.Addr)
				got := run(h.Addr)
				if got != want {
					t.Errorf("trickled input: replies differ\n proxy %s\ndirect %s", proxytest.Clip(got), proxytest.Clip(want))
				}
			})
		}
	}
}

// TestE2EMaxPendingBackpressure: with a small MaxPending a deep pipeline
// waits instead of failing, and completes in order.
func TestE2EMaxPendingBackpressure(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithOptions(func(o *proxy.Options) { o.MaxPending = 8 }))
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			ctx := context.Background()
			cl := h.Client(t, proto)
			key := "bp" + strconv.Itoa(proto)
			p := cl.Pipeline()
			cmds := make([]*redis.IntCmd, 3000)
			for i := range cmds {
				cmds[i] = p.Incr(ctx, key)
			}
			if _, err := p.Exec(ctx); err != nil {
				t.Fatalf("pipeline: %v", err)
			}
			for i, c := range cmds {
				if c.Val() != int64(i+1) {
					t.Fatalf("reply %d = %d", i, c.Val())
				}
			}
		})
	}
}

// TestE2EBigValuesPipelined: a pipeline that both sends and receives many
// large values (the client writes everything before reading anything)
// completes, as it does against Redis, while the buffered replies stay
// under the default client output limit.
func TestE2EBigValuesPipelined(t *testing.T) {
	h := proxytest.Start(t)
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			ctx := context.Background()
			cl := h.Client(t, proto)
			val := strings.Repeat("0123456789abcdef", (1<<20)/16)
			const n = 24 // 24 MB each way
			p := cl.Pipeline()
			gets := make([]*redis.StringCmd, n)
			for i := 0; i < n; i++ {
				p.Set(ctx, "bv"+strconv.Itoa(i), val, 0)
				gets[i] = p.Get(ctx, "bv"+strconv.Itoa(i))
			}
			if _, err := p.Exec(ctx); err != nil {
				t.Fatalf("pipeline: %v", err)
			}
			for i, g := range gets {
				if g.Val() != val {
					t.Fatalf("GET %d: %d bytes, equal %v", i, len(g.Val()), g.Val() == val)
				}
			}
		})
	}
}

// TestE2EConcurrentClients: many clients at once, each with its own
// state (db, name, transactions), see only their own.
func TestE2EConcurrentClients(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithLogLevel(zapcore.WarnLevel))
	const clients, ops = 16, 100
	var wg sync.WaitGroup
	errc := make(chan error, clients)
	// Stats is read concurrently with the traffic (for the race detector).
	stop := make(chan struct{})
	statsDone := make(chan struct{})
	go func() {
		defer close(statsDone)
		for {
			select {
			case <-stop:
				return
			default:
				_ = h.Srv.Stats()
			}
		}
	}()
	defer func() { close(stop); <-statsDone }()
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx := context.Background()
			proto := 2 + i%2
			cl := proxytest.NewGoRedis(t, h.Addr, proto, func(o *redis.Options) { o.DB = i % 4; o.PoolSize = 2 })
			key := "cc" + strconv.Itoa(i)
			for j := 0; j < ops; j++ {
				var incr *redis.IntCmd
				_, err := cl.TxPipelined(ctx, func(p redis.Pipeliner) error {
					incr = p.Incr(ctx, key)
					p.Get(ctx, key)
					return nil
				})
				if err != nil {
					errc <- fmt.Errorf("client %d op %d: %v", i, j, err)
					return
				}
				if incr.Val() != int64(j+1) {
					errc <- fmt.Errorf("client %d op %d: INCR = %d", i, j, incr.Val())
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	ctx := context.Background()
	for i := 0; i < clients; i++ {
		d := h.Direct(t, 2, func(o *redis.Options) { o.DB = i % 4 })
		if v, err := d.Get(ctx, "cc"+strconv.Itoa(i)).Int(); err != nil || v != ops {
			t.Errorf("client %d: db %d key = %d, %v", i, i%4, v, err)
		}
	}
}

// TestE2ELongInline: inline commands up to Redis's 64 KB line limit work.
func TestE2ELongInline(t *testing.T) {
	h := proxytest.Start(t)
	in := "SET long " + strings.Repeat("z", 60<<10) + "\r\nSTRLEN long\r\n"
	want := exchangeUntilMarker(t, h.Redis.Addr, in)
	got := exchangeUntilMarker(t, h.Addr, in)
	if got != want || want != "+OK\r\n:61440\r\n" {
		t.Errorf("long inline: proxy %q, direct %q", got, want)
	}
}

// TestE2ECommandBehindLargeValue: a small command that arrives in the same
// write as a large (streamed) one is forwarded too, without waiting for
// more input.
func TestE2ECommandBehindLargeValue(t *testing.T) {
	h := proxytest.Start(t)
	for _, size := range []int{100 << 10, 1 << 20, 8 << 20} {
		t.Run(fmt.Sprintf("%dKB", size>>10), func(t *testing.T) {
			r := h.ProxyRaw(t)
			r.Write(append(proxytest.EncodeCommand("SET", "k", strings.Repeat("x", size)), proxytest.EncodeCommand("PING")...))
			if got := r.Read(); got != "+OK\r\n" {
				t.Fatalf("SET: %q", got)
			}
			got, err := r.ReadE()
			if err != nil || got != "+PONG\r\n" {
				t.Fatalf("PING sent in the same write as a %d KB SET: %q, %v (cmdstat_ping on Redis: %s)",
					size>>10, got, err, h.InfoField(t, "commandstats", "cmdstat_ping"))
			}
		})
	}
}

// TestE2EManyArguments: commands with very many arguments (too large for
// one read buffer) give Redis's replies.
func TestE2EManyArguments(t *testing.T) {
	h := proxytest.Start(t)
	many := func(name string, prefix []string, n int, arg func(i int) string) []string {
		args := append([]string{name}, prefix...)
		for i := 0; i < n; i++ {
			args = append(args, arg(i))
		}
		return args
	}
	script := []proxytest.Step{
		{Args: many("RPUSH", []string{"l"}, 200000, func(i int) string { return strconv.Itoa(i) })},
		c("LLEN", "l"), c("LINDEX", "l", "-1"), c("LRANGE", "l", "0", "-1"), // a 200,000-element reply
		{Args: many("HSET", []string{"h"}, 40000, func(i int) string { return "f" + strconv.Itoa(i) })},
		c("HGETALL", "h"), // a 20,000-pair map in RESP3
		{Args: many("MSET", nil, 60000, func(i int) string { return "k" + strconv.Itoa(i/2) })},
		c("GET", "k29999"),
		{Args: many("DEL", nil, 30000, func(i int) string { return "k" + strconv.Itoa(i) })},
		{Args: many("SADD", []string{"s"}, 50000, func(i int) string { return strings.Repeat("m", 1+i%50) + strconv.Itoa(i) })},
		c("SCARD", "s"), c("PING"),
	}
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) { h.SameAsRedis(t, proto, script) })
	}
}

// TestE2EConfiguredLimits: limits set below Redis's defaults are enforced
// with Redis's protocol errors, and the connection is closed.
func TestE2EConfiguredLimits(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithOptions(func(o *proxy.Options) {
		o.Limits.MaxBulkLen = 1 << 10
		o.Limits.MaxInlineLen = 1 << 10
		o.Limits.MaxArgs = 10
	}))
	cases := []struct{ name, in, want string }{
		{"bulk", string(proxytest.EncodeCommand("SET", "k", strings.Repeat("b", 1025))), "-ERR Protocol error: invalid bulk length\r\n"},
		{"args", string(proxytest.EncodeCommand("DEL", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10")), "-ERR Protocol error: invalid multibulk length\r\n"},
		{"inline", "SET k " + strings.Repeat("i", 2000) + "\r\n", "-ERR Protocol error: too big inline request\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := closeExchange(t, h.Addr, tc.in)
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("at_the_limits", func(t *testing.T) {
		r := h.ProxyRaw(t)
		if got := r.Do("SET", "k", strings.Repeat("b", 1024)); got != "+OK\r\n" {
			t.Errorf("1 KB bulk: %q", got)
		}
		if got := r.Do("DEL", "1", "2", "3", "4", "5", "6", "7", "8", "9"); got != ":0\r\n" {
			t.Errorf("10 arguments: %q", got)
		}
	})
}

// TestE2EShutdownUnderLoad: Shutdown while clients keep connecting and
// sending returns, and Serve returns ErrServerClosed (run with -race).
func TestE2EShutdownUnderLoad(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithLogLevel(zapcore.WarnLevel), proxytest.WithOptions(func(o *proxy.Options) { o.DrainTimeout = proxytest.IOTimeout }))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				nc, err := net.DialTimeout("tcp", h.Addr, time.Second)
				if err != nil {
					continue // refused once the listener is closed
				}
				_ = nc.SetDeadline(time.Now().Add(proxytest.IOTimeout))
				_, _ = nc.Write(proxytest.EncodeCommand("PING"))
				buf := make([]byte, 7)
				_, _ = io.ReadFull(nc, buf)
				nc.Close()
			}
		}()
	}
	proxytest.Eventually(t, "some traffic", func() bool { return h.Stats().ClientsTotal > 50 })
	h.ManualShutdown()
	ctx, cancel := context.WithTimeout(context.Background(), proxytest.IOTimeout)
	defer cancel()
	if err := proxytest.CallShutdown(h.Srv, ctx); err != nil {
		t.Errorf("Shutdown under load = %v", err)
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-h.Served():
		if !errors.Is(err, proxy.ErrServerClosed) {
			t.Errorf("Serve = %v", err)
		}
	case <-time.After(proxytest.IOTimeout):
		t.Fatal("Serve did not return")
	}
	if st := h.Stats(); st.ClientsConnected != 0 {
		t.Errorf("after Shutdown: %+v", st)
	}
	proxytest.Eventually(t, "upstream connections closed", func() bool { return h.NumClients(t) == 0 })
}

// TestE2ESteadySlowerReader: a client that reads steadily but slower than
// Redis sends (here: pipelined GETs of 50 MB in all, read 256 KB at a time
// with pauses) gets every byte, as it does from Redis, without being taken
// for a slow reader.
func TestE2ESteadySlowerReader(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithLogLevel(zapcore.InfoLevel))
	val := strings.Repeat("v", 256<<10)
	h.DirectRaw(t).Do("SET", "big", val)
	const gets = 200
	var cmds []byte
	for i := 0; i < gets; i++ {
		cmds = append(cmds, proxytest.EncodeCommand("GET", "big")...)
	}
	want := gets * (len(val) + len("$262144\r\n\r\n"))
	c := h.ProxyRaw(t)
	base := settledHeap()
	peak := startHeapPeak()
	c.Write(cmds)
	buf := make([]byte, 256<<10)
	total := 0
	_ = c.C.SetReadDeadline(time.Now().Add(3 * proxytest.IOTimeout))
	for total < want {
		n, err := c.BR.Read(buf)
		total += n
		if err != nil {
			peak.end()
			t.Fatalf("after %d of %d bytes: %v (Stats %+v)", total, want, err, h.Stats())
		}
		time.Sleep(2 * time.Millisecond)
	}
	// Logged, not asserted: the proxy may legitimately buffer up to
	// ClientOutputLimit for a reader that stalls on a busy machine.
	growth := int64(peak.end()) - int64(base.HeapInuse)
	t.Logf("heap growth while relaying %d MB to a slower reader: %d MB", want>>20, growth>>20)
}
