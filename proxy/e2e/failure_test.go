package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
)

// TestE2EUpstreamUnreachable: with Redis down, commands get an -ERR naming
// the upstream and the cause; the proxy keeps serving and recovers when
// Redis comes back on the same port.
func TestE2EUpstreamUnreachable(t *testing.T) {
	r := redistest.Start(t)
	r.Stop()
	p := proxytest.StartProxy(t, r.Addr, proxytest.WithOptions(func(o *proxy.Options) { o.DialTimeout = 500 * time.Millisecond }))

	for i := 0; i < 3; i++ { // the proxy keeps serving: every attempt is answered
		c := proxytest.Dial(t, p.Addr)
		c.Send("PING")
		got, err := c.ReadE()
		if err != nil {
			t.Fatalf("attempt %d: no reply while Redis is down: %v (got %q)", i, err, got)
		}
		if !strings.HasPrefix(got, "-ERR ") || !strings.Contains(got, r.Addr) || !strings.Contains(got, "refused") {
			t.Fatalf("attempt %d: reply %q: want -ERR naming %s and the cause (connection refused)", i, got, r.Addr)
		}
		// Afterwards the connection is either closed or keeps answering
		// with errors; it must not pretend to be connected.
		if c.WriteE(proxytest.EncodeCommand("PING")) == nil {
			if got, err := c.ReadE(); err == nil && !strings.HasPrefix(got, "-ERR ") {
				t.Fatalf("attempt %d: second PING = %q", i, got)
			}
		}
		c.Close()
	}
	if st := p.Stats(); st.UpstreamErrors < 1 {
		t.Errorf("Stats.UpstreamErrors = %d after failed dials", st.UpstreamErrors)
	}

	// A command too large to buffer whole is read to its end and answered.
	big := proxytest.Dial(t, p.Addr)
	go func() { _ = big.WriteE(proxytest.EncodeCommand("SET", "k", strings.Repeat("b", 3<<20))) }()
	if got, err := big.ReadE(); err != nil || !strings.HasPrefix(got, "-ERR ") || !strings.Contains(got, r.Addr) {
		t.Errorf("3 MB SET while Redis is down: %q, %v; want -ERR naming %s", got, err, r.Addr)
	}

	ctx := context.Background()
	cl := proxytest.NewGoRedis(t, p.Addr, 2)
	if err := cl.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), r.Addr) {
		t.Errorf("go-redis PING while Redis is down: %v, want an error naming %s", err, r.Addr)
	}

	r.StartAgain()
	proxytest.Eventually(t, "proxy recovers after Redis restarts", func() bool {
		c, err := net.DialTimeout("tcp", p.Addr, proxytest.IOTimeout)
		if err != nil {
			return false
		}
		defer c.Close()
		rc := proxytest.NewConn(t, c)
		if rc.WriteE(proxytest.EncodeCommand("PING")) != nil {
			return false
		}
		v, err := rc.ReadE()
		return err == nil && v == "+PONG\r\n"
	})
	for _, proto := range proxytest.Protocols {
		cl := proxytest.NewGoRedis(t, p.Addr, proto)
		if err := cl.Set(ctx, "back", "1", 0).Err(); err != nil {
			t.Errorf("RESP%d SET after recovery: %v", proto, err)
		}
	}
}

// TestE2EUpstreamDialTimeout: an upstream whose accept queue is full never
// completes the TCP handshake; the client gets an -ERR naming the upstream
// once the dial timeout passes (bounded here only by proxytest.IOTimeout).
func TestE2EUpstreamDialTimeout(t *testing.T) {
	addr := fullBacklogListener(t)
	p := proxytest.StartProxy(t, addr, proxytest.WithOptions(func(o *proxy.Options) { o.DialTimeout = 300 * time.Millisecond }))
	c := proxytest.Dial(t, p.Addr)
	c.Send("PING")
	got, err := c.ReadE()
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	if !strings.HasPrefix(got, "-ERR ") || !strings.Contains(got, addr) || !strings.Contains(strings.ToLower(got), "timeout") {
		t.Fatalf("reply %q: want -ERR naming %s and the cause (timeout)", got, addr)
	}
	t.Logf("reply: %q", got)
}

// fullBacklogListener returns the address of a listening socket with a
// zero backlog that never accepts, its queue already filled: further
// connection attempts hang (Linux drops their SYNs).
func fullBacklogListener(t *testing.T) string {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind: %v", err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatalf("listen: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			break // the queue is full
		}
		t.Cleanup(func() { c.Close() })
		if i > 20 {
			t.Skip("cannot fill the accept queue on this kernel")
		}
	}
	return addr
}

// TestE2EUpstreamLostMidSession: Redis dies while a BLPOP (and a command
// pipelined behind it) are pending. The client sees exactly what it would
// see from Redis: the connection closes, with no reply invented for the
// commands whose outcome is unknown — client libraries reconnect and
// retry on that, and only on that. A subscriber (its state is gone) is
// closed too; an idle client only when its connection was its own.
// Reconnecting works.
func TestE2EUpstreamLostMidSession(t *testing.T) {
	h := proxytest.Start(t)
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			a := h.ProxyRaw(t)
			sub := h.ProxyRaw(t)
			idle := h.ProxyRaw(t)
			for _, c := range []*proxytest.Conn{a, sub, idle} {
				if proto == 3 {
					c.Do("HELLO", "3")
				}
			}
			idle.Do("PING")
			sub.Do("SUBSCRIBE", "ch")
			a.Write(append(proxytest.EncodeCommand("BLPOP", "q", "0"), proxytest.EncodeCommand("PING")...))
			h.WaitBlocked(t, 1)
			lost := h.Stats().LostCommands

			h.Redis.Stop()

			out, err := a.ReadUntilEOF()
			if err != nil {
				t.Errorf("client with pending commands not closed: %v (got %q)", err, out)
			}
			if out != "" {
				t.Errorf("pending commands got %q before the close; Redis going away sends nothing", out)
			}
			proxytest.Eventually(t, "the lost commands counted", func() bool { return h.Stats().LostCommands >= lost+2 })
			if out, err := sub.ReadUntilEOF(); err != nil {
				t.Errorf("subscriber not closed: %v (got %q)", err, out)
			} else if out != "" && !strings.HasPrefix(out, "-") && !strings.HasPrefix(out, ">") {
				t.Errorf("subscriber got %q before close", out)
			}
			if h.Shared() {
				// Nothing the idle client did left state on the shared
				// connection: it stays, and is served once Redis is back.
				defer func() {
					if got := idle.Do("PING"); got != "+PONG\r\n" {
						t.Errorf("idle client after the restart: PING got %q", got)
					}
				}()
			} else if out, err := idle.ReadUntilEOF(); err != nil {
				t.Errorf("idle client not closed: %v (got %q)", err, out)
			} else if out != "" && !strings.HasPrefix(out, "-") {
				t.Errorf("idle client got %q before close", out)
			}

			h.Redis.StartAgain()
			c := h.ProxyRaw(t)
			if got := c.Do("PING"); got != "+PONG\r\n" {
				t.Fatalf("PING on a new connection after Redis came back: %q", got)
			}
			cl := h.Client(t, proto)
			if err := cl.Ping(context.Background()).Err(); err != nil {
				t.Fatalf("go-redis after Redis came back: %v", err)
			}
		})
	}
}

// TestE2EUpstreamLostMidStream: Redis dies while a client streams a
// command too large to buffer: the client sees the close, as from Redis,
// and not a hang.
func TestE2EUpstreamLostMidStream(t *testing.T) {
	h := proxytest.Start(t)
	c := h.ProxyRaw(t)
	c.Do("PING")
	c.WriteString("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10000000\r\n" + strings.Repeat("m", 3<<20))
	proxytest.Eventually(t, "part of the streamed SET to reach Redis", func() bool {
		for _, l := range h.ClientList(t) {
			if q, _ := strconv.Atoi(proxytest.ClientField(l, "qbuf")); q > 1<<20 {
				return true
			}
		}
		return false
	})
	h.Redis.Stop()
	// The client may still be writing the rest; the proxy may read it to
	// the end or close at once.
	go func() { _ = c.WriteE([]byte(strings.Repeat("m", 7000000) + "\r\n")) }()
	out, err := c.ReadUntilEOF()
	if err != nil {
		t.Fatalf("client not closed after Redis died mid-command: %v (got %q)", err, out)
	}
	if out != "" {
		t.Errorf("client got %q before the close; Redis going away sends nothing", out)
	}
	h.Redis.StartAgain()
	if got := h.ProxyRaw(t).Do("PING"); got != "+PONG\r\n" {
		t.Fatalf("reconnect: %q", got)
	}
}

// TestE2EClientDisconnectClosesUpstream: each client's upstream connection
// lives exactly as long as the client's, blocked or not.
func TestE2EClientDisconnectClosesUpstream(t *testing.T) {
	h := proxytest.Start(t)
	var conns []*proxytest.Conn
	for i := 0; i < 10; i++ {
		c := h.ProxyRaw(t)
		if got := c.Do("PING"); got != "+PONG\r\n" {
			t.Fatalf("PING: %q", got)
		}
		conns = append(conns, c)
	}
	want := 10
	if h.Shared() {
		want = 0
	}
	proxytest.Eventually(t, "a connection per client (pinned) or the shared ones", func() bool {
		return h.NumClients(t) == want+h.BaseClients()
	})
	for _, c := range conns {
		c.Close()
	}
	proxytest.Eventually(t, "upstream connections closed", func() bool { return h.NumClients(t) == h.BaseClients() })

	// A client blocked in BLPOP, and one in the middle of sending a command.
	b := h.ProxyRaw(t)
	b.Send("BLPOP", "q", "0")
	h.WaitBlocked(t, 1)
	half := h.ProxyRaw(t)
	half.Do("PING")
	half.WriteString("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nonly-part")
	// And one in the middle of a command too large to buffer (streamed).
	halfBig := h.ProxyRaw(t)
	halfBig.Do("PING")
	halfBig.WriteString("*3\r\n$3\r\nSET\r\n$2\r\nkb\r\n$10000000\r\n" + strings.Repeat("h", 3<<20))
	proxytest.Eventually(t, "part of the streamed SET to reach Redis", func() bool {
		for _, l := range h.ClientList(t) {
			if q, _ := strconv.Atoi(proxytest.ClientField(l, "qbuf")); q > 1<<20 {
				return true
			}
		}
		return false
	})
	b.Close()
	half.Close()
	halfBig.Close()
	proxytest.Eventually(t, "upstream connections of blocked and half-sent clients closed", func() bool { return h.NumClients(t) == h.BaseClients() })
	h.WaitBlocked(t, 0)
	if v := h.DirectRaw(t).Do("EXISTS", "k", "kb"); v != ":0\r\n" {
		t.Errorf("half-sent SET was executed: EXISTS k kb = %q", v)
	}
}

// TestE2EConnectDisconnectNoLeaks: 1,000 connect/disconnect cycles leave
// no goroutines, file descriptors or upstream connections behind.
func TestE2EConnectDisconnectNoLeaks(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithLogLevel(zapcore.WarnLevel))
	cycle := func(i int) {
		c, err := net.DialTimeout("tcp", h.Addr, proxytest.IOTimeout)
		if err != nil {
			t.Fatalf("cycle %d: dial: %v", i, err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(proxytest.IOTimeout))
		switch i % 4 {
		case 0, 1: // a full command and reply
			if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
				t.Fatalf("cycle %d: write: %v", i, err)
			}
			buf := make([]byte, 7)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "+PONG\r\n" {
				t.Fatalf("cycle %d: reply %q, %v", i, buf, err)
			}
		case 2: // connect and leave at once
		case 3: // send and leave without reading
			_, _ = c.Write([]byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"))
		}
	}
	for i := 0; i < 20; i++ { // warm up pools and lazily started goroutines
		cycle(i)
	}
	proxytest.Eventually(t, "warm-up connections closed upstream", func() bool { return h.NumClients(t) == h.BaseClients() })
	baseG, baseFD := settleGoroutines(), proxytest.OpenFDs()

	for i := 0; i < 1000; i++ {
		cycle(i)
	}
	proxytest.Eventually(t, "upstream connections closed after 1,000 cycles", func() bool { return h.NumClients(t) == h.BaseClients() })
	var g, fd int
	deadline := time.Now().Add(proxytest.IOTimeout)
	for {
		g, fd = settleGoroutines(), proxytest.OpenFDs()
		if (g <= baseG+2 && fd <= baseFD+2) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if g > baseG+2 {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Errorf("goroutines: %d before, %d after 1,000 cycles\n%s", baseG, g, buf[:n])
	}
	if fd > baseFD+2 {
		t.Errorf("open fds: %d before, %d after 1,000 cycles", baseFD, fd)
	}
	if st := h.Stats(); st.ClientsConnected != 0 || st.ClientsTotal < 1020 {
		t.Errorf("Stats after cycles: %+v (want ClientsConnected 0, ClientsTotal >= 1020)", st)
	}
}

func settleGoroutines() int {
	runtime.GC()
	return runtime.NumGoroutine()
}

// malformed inputs on which Redis answers a protocol error and closes.
var malformedClosing = []struct{ name, in string }{
	{"bulk_length_not_a_number", "*1\r\n$abc\r\n"},
	{"multibulk_length_not_a_number", "*abc\r\n"},
	{"expected_dollar", "*1\r\nfoo\r\n"},
	{"expected_dollar_colon", "*1\r\n:1\r\n"},
	{"negative_bulk", "*1\r\n$-1\r\n"},
	{"negative_bulk_second_arg", "*2\r\n$4\r\nECHO\r\n$-5\r\n"},
	{"multibulk_too_long", "*3000000000\r\n"},
	{"bulk_4GB", "*1\r\n$4294967296\r\n"},
	{"bulk_over_512MB", "*1\r\n$536870913\r\n"},
	{"after_good_command", "PING\r\n*1\r\n$x\r\n"},
	{"unbalanced_double_quote", "PING\r\n\"unbalanced\r\n"},
	{"unbalanced_single_quote", "SET a 'b\r\n"},
	{"quote_not_followed_by_space", "SET a \"b\"c\r\n"},
	{"inline_too_big", strings.Repeat("a", 70<<10)},
	{"mbulk_count_too_big", "*" + strings.Repeat("1", 70<<10)},
	{"bulk_count_too_big", "*1\r\n$" + strings.Repeat("1", 70<<10)},
	// A command too large to buffer (streamed through) that turns out
	// malformed after its big argument.
	{"streamed_then_bad_bulk", "*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000000\r\n" + strings.Repeat("s", 2000000) + "\r\n$abc\r\n"},
	{"streamed_then_bad_type", "*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000000\r\n" + strings.Repeat("s", 2000000) + "\r\n:1\r\n"},
}

// odd inputs Redis accepts without closing.
var oddButAccepted = []struct{ name, in string }{
	{"zero_args", "*0\r\nPING\r\n"},
	{"null_multibulk", "*-1\r\nPING\r\n"},
	{"negative_multibulk", "*-5\r\nPING\r\n"},
	{"bulk_header_inline", "$3\r\nfoo\r\n"},
	{"bulk_without_crlf", "*1\r\n$4\r\nPINGXX"}, // Redis skips two bytes, whatever they are
	{"lf_only_inline", "PING\nPING\n"},
}

func TestE2EMalformedInput(t *testing.T) {
	h := proxytest.Start(t)
	for _, tc := range malformedClosing {
		t.Run(tc.name, func(t *testing.T) {
			want := closeExchange(t, h.Redis.Addr, tc.in)
			got := closeExchange(t, h.Addr, tc.in)
			if got != want {
				t.Errorf("%d input bytes starting %q:\n proxy %q\ndirect %q", len(tc.in), tc.in[:min(len(tc.in), 40)], got, want)
			}
			if !strings.Contains(want, "-ERR Protocol error: ") {
				t.Errorf("test assumption: Redis answered %q", want)
			}
		})
	}
	for _, tc := range oddButAccepted {
		t.Run(tc.name, func(t *testing.T) {
			want := exchangeUntilMarker(t, h.Redis.Addr, tc.in)
			got := exchangeUntilMarker(t, h.Addr, tc.in)
			if got != want {
				t.Errorf("input %q:\n proxy %q\ndirect %q", tc.in, got, want)
			}
		})
	}
	if st := h.Stats(); st.ProtocolErrors < int64(len(malformedClosing)) {
		t.Errorf("Stats.ProtocolErrors = %d, want >= %d", st.ProtocolErrors, len(malformedClosing))
	}
	// The proxy still serves.
	if got := h.ProxyRaw(t).Do("PING"); got != "+PONG\r\n" {
		t.Errorf("PING after malformed input: %q", got)
	}
}

// exchangeUntilMarker sends input then ECHO marker and returns what came
// before the marker's reply, or everything up to the close.
func exchangeUntilMarker(t *testing.T, addr, input string) string {
	r := proxytest.Dial(t, addr)
	defer r.Close()
	r.WriteString(input)
	r.Send("ECHO", "--marker--")
	var out strings.Builder
	for {
		v, err := r.ReadE()
		if err != nil {
			out.WriteString(v)
			out.WriteString("<closed: " + err.Error() + ">")
			return out.String()
		}
		if v == "$10\r\n--marker--\r\n" {
			return out.String()
		}
		out.WriteString(v)
	}
}

// TestE2EHugeBulkClaim: a 4 GB claim is refused like Redis refuses it, and
// a 400 MB claim (below the 512 MB limit, so it must be streamed) makes the
// proxy allocate nothing of that size.
func TestE2EHugeBulkClaim(t *testing.T) {
	h := proxytest.Start(t)
	base := settledHeap()
	got := closeExchange(t, h.Addr, "*1\r\n$4294967296\r\n")
	if got != "-ERR Protocol error: invalid bulk length\r\n" {
		t.Errorf("4 GB claim: %q", got)
	}
	after := settledHeap()
	if d := after.TotalAlloc - base.TotalAlloc; d > 64<<20 {
		t.Errorf("4 GB claim: the process allocated %d MB", d>>20)
	}

	base = settledHeap()
	peak := startHeapPeak()
	c := h.ProxyRaw(t)
	const sent = 1 << 20
	c.WriteString("*3\r\n$3\r\nSET\r\n$4\r\nhuge\r\n$400000000\r\n" + strings.Repeat("x", sent))
	// Wait until Redis holds the forwarded part of the value: the proxy
	// has seen the claim and streamed what came (it may keep back a
	// small partial chunk, hence half).
	proxytest.Eventually(t, "partial 400 MB value forwarded to Redis", func() bool {
		for _, l := range h.ClientList(t) {
			q, _ := strconv.Atoi(proxytest.ClientField(l, "qbuf"))
			if proxytest.ClientField(l, "cmd") == "NULL" && q >= sent/2 {
				return true
			}
		}
		return false
	})
	p := peak.end()
	if growth := int64(p) - int64(base.HeapInuse); growth > 64<<20 {
		t.Errorf("a 400 MB claim grew the heap by %d MB", growth>>20)
	}
	after = settledHeap()
	if d := after.TotalAlloc - base.TotalAlloc; d > 64<<20 {
		t.Errorf("a 400 MB claim made the process allocate %d MB", d>>20)
	}
	c.Close()
	proxytest.Eventually(t, "upstream of abandoned 400 MB SET closed", func() bool { return h.NumClients(t) == h.BaseClients() })
}

func TestE2EMaxClients(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithOptions(func(o *proxy.Options) { o.MaxClients = 2 }))
	a, b := h.ProxyRaw(t), h.ProxyRaw(t)
	for _, c := range []*proxytest.Conn{a, b} {
		if got := c.Do("PING"); got != "+PONG\r\n" {
			t.Fatalf("PING: %q", got)
		}
	}
	want := closeExchange(t, h.Addr, "")
	if want != "-ERR max number of clients reached\r\n" {
		t.Errorf("third client got %q, want -ERR max number of clients reached", want)
	}
	// Sending a command does not change the answer.
	if got := closeExchange(t, h.Addr, "*1\r\n$4\r\nPING\r\n"); got != "-ERR max number of clients reached\r\n" {
		t.Errorf("third client with a command got %q", got)
	}
	if st := h.Stats(); st.ClientsRejected < 2 {
		t.Errorf("Stats.ClientsRejected = %d, want >= 2", st.ClientsRejected)
	}
	wantConns := 2
	if h.Shared() {
		wantConns = 0
	}
	proxytest.Eventually(t, "no upstream connection for rejected clients", func() bool {
		return h.NumClients(t) == wantConns+h.BaseClients()
	})
	a.Close()
	proxytest.Eventually(t, "a slot to free up", func() bool {
		c, err := net.DialTimeout("tcp", h.Addr, proxytest.IOTimeout)
		if err != nil {
			return false
		}
		defer c.Close()
		r := proxytest.NewConn(t, c)
		if r.WriteE(proxytest.EncodeCommand("PING")) != nil {
			return false
		}
		v, err := r.ReadE()
		return err == nil && v == "+PONG\r\n"
	})
}

// TestE2ESlowReader: a client that pipelines GETs of a large value and
// never reads is disconnected once its buffered replies pass
// ClientOutputLimit, and it is logged.
func TestE2ESlowReader(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithOptions(func(o *proxy.Options) {
		o.ClientOutputLimit = 1 << 20
		o.WriteTimeout = 10 * time.Minute // the output limit, not a timeout, must act
	}))
	val := strings.Repeat("v", 256<<10)
	if got := h.DirectRaw(t).Do("SET", "big", val); got != "+OK\r\n" {
		t.Fatalf("SET: %q", got)
	}
	c := h.ProxyRaw(t)
	// (A tiny SO_RCVBUF would make the closed proxy socket's remaining
	// data crawl through zero-window probes; the default is realistic.)
	const gets = 400 // 100 MB of replies, far beyond socket buffers plus 1 MB
	var cmds []byte
	for i := 0; i < gets; i++ {
		cmds = append(cmds, proxytest.EncodeCommand("GET", "big")...)
	}
	if err := c.WriteE(cmds); err != nil {
		t.Fatalf("write: %v", err)
	}
	proxytest.Eventually(t, "Stats.OutputLimitClosed >= 1", func() bool { return h.Stats().OutputLimitClosed >= 1 })
	out, err := c.ReadUntilEOF()
	if err != nil {
		t.Fatalf("slow reader not disconnected: %v after %d bytes", err, len(out))
	}
	if len(out) >= gets*len(val) {
		t.Errorf("slow reader received all %d bytes: not disconnected", len(out))
	}
	logs := strings.ToLower(h.Logs.Text())
	if !strings.Contains(logs, "limit") {
		t.Errorf("no log line about the output limit; logs:\n%s", h.Logs.Text())
	}
	proxytest.Eventually(t, "upstream of the slow reader closed", func() bool { return h.NumClients(t) == h.BaseClients() })
	// Others are unaffected.
	if got := h.ProxyRaw(t).Do("STRLEN", "big"); got != ":262144\r\n" {
		t.Errorf("STRLEN through proxy: %q", got)
	}
}

// TestE2EShutdownDrains: Shutdown stops accepting, lets replies already
// pending (a BLPOP, a command pipelined behind it) finish within the drain
// time, closes idle clients, and Serve returns ErrServerClosed.
func TestE2EShutdownDrains(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithOptions(func(o *proxy.Options) { o.DrainTimeout = proxytest.IOTimeout }))
	a := h.ProxyRaw(t)
	a.Write(append(proxytest.EncodeCommand("BLPOP", "q", "0"), proxytest.EncodeCommand("ECHO", "behind")...))
	idle := h.ProxyRaw(t)
	idle.Do("PING")
	sub := h.ProxyRaw(t) // RESP2 subscriber: nothing pending, relay mode
	sub.Do("SUBSCRIBE", "ch")
	sub3 := h.ProxyRaw(t) // RESP3 subscriber
	sub3.Do("HELLO", "3")
	sub3.Do("SUBSCRIBE", "ch")
	mon := h.ProxyRaw(t)
	mon.Do("MONITOR")
	h.WaitBlocked(t, 1)

	done := make(chan error, 1)
	h.ManualShutdown() // this test shuts the proxy down itself
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), proxytest.IOTimeout)
		defer cancel()
		done <- proxytest.CallShutdown(h.Srv, ctx)
	}()
	proxytest.Eventually(t, "listener closed", func() bool {
		c, err := net.DialTimeout("tcp", h.Addr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	if out, err := idle.ReadUntilEOF(); err != nil || out != "" {
		t.Errorf("idle client at shutdown: %q, %v; want closed without a reply", out, err)
	}
	for name, c := range map[string]*proxytest.Conn{"RESP2 subscriber": sub, "RESP3 subscriber": sub3, "MONITOR client": mon} {
		if out, err := c.ReadUntilEOF(); err != nil {
			t.Errorf("%s not closed at shutdown: %v (got %q)", name, err, out)
		}
	}
	h.DirectRaw(t).Do("RPUSH", "q", "v")
	if got := a.Read(); got != "*2\r\n$1\r\nq\r\n$1\r\nv\r\n" {
		t.Errorf("pending BLPOP during shutdown = %q", got)
	}
	if got := a.Read(); got != "$6\r\nbehind\r\n" {
		t.Errorf("pending ECHO during shutdown = %q", got)
	}
	if out, err := a.ReadUntilEOF(); err != nil || out != "" {
		t.Errorf("after its replies, the client is closed: got %q, %v", out, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown = %v", err)
		}
	case <-time.After(proxytest.IOTimeout):
		t.Fatal("Shutdown did not return")
	}
	select {
	case err := <-h.Served():
		if !errors.Is(err, proxy.ErrServerClosed) {
			t.Errorf("Serve = %v, want ErrServerClosed", err)
		}
	case <-time.After(proxytest.IOTimeout):
		t.Fatal("Serve did not return")
	}
	proxytest.Eventually(t, "upstream connections closed", func() bool { return h.NumClients(t) == h.BaseClients() })
}

// TestE2EShutdownDrainDeadline: a reply that never comes does not hold
// Shutdown past its deadline; the client is closed.
func TestE2EShutdownDrainDeadline(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithOptions(func(o *proxy.Options) { o.DrainTimeout = 300 * time.Millisecond }))
	a := h.ProxyRaw(t)
	a.Send("BLPOP", "never", "0")
	h.WaitBlocked(t, 1)
	h.ManualShutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- proxytest.CallShutdown(h.Srv, ctx) }()
	select {
	case err := <-done:
		t.Logf("Shutdown past its deadline returned %v", err)
	case <-time.After(proxytest.IOTimeout):
		t.Fatal("Shutdown did not return after its deadline")
	}
	out, err := a.ReadUntilEOF()
	if err != nil {
		t.Errorf("client with a reply that never came not closed: %v", err)
	}
	if out != "" && !strings.HasPrefix(out, "-") {
		t.Errorf("client got %q at forced close", out)
	}
	proxytest.Eventually(t, "upstream connection closed", func() bool { return h.NumClients(t) == h.BaseClients() })
}

// TestE2EUpstreamKilledByRedis: Redis closing the proxied connection
// (CLIENT KILL by an operator) ends the client's connection too, and it
// can reconnect.
func TestE2EUpstreamKilledByRedis(t *testing.T) {
	h := proxytest.Start(t)
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			c := h.ProxyRaw(t)
			if proto == 3 {
				c.Do("HELLO", "3")
			}
			id := strings.TrimSuffix(strings.TrimPrefix(c.Do("CLIENT", "ID"), ":"), "\r\n")
			if got := h.DirectRaw(t).Do("CLIENT", "KILL", "ID", id); got != ":1\r\n" {
				t.Fatalf("CLIENT KILL ID %s: %q", id, got)
			}
			out, err := c.ReadUntilEOF()
			if err != nil {
				t.Fatalf("client not closed after its upstream connection was killed: %v (got %q)", err, out)
			}
			if out != "" && !strings.HasPrefix(out, "-") {
				t.Errorf("client got %q before close", out)
			}
			if got := h.ProxyRaw(t).Do("PING"); got != "+PONG\r\n" {
				t.Fatalf("reconnect: %q", got)
			}
		})
	}
}

// TestE2ERedisMaxClients: when Redis itself refuses the connection, the
// client sees Redis's own error, then the close.
func TestE2ERedisMaxClients(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithRedis(redistest.WithConfig("maxclients", "1")))
	hold := h.DirectRaw(t) // Redis's only slot
	hold.Do("PING")
	want := closeExchange(t, h.Redis.Addr, "*1\r\n$4\r\nPING\r\n")
	if want != "-ERR max number of clients reached\r\n" {
		t.Fatalf("test assumption: Redis answered %q", want)
	}
	var got string
	if h.Shared() {
		// Redis refused the shared connection, not the client's: the
		// client gets Redis's answer and may try again.
		c := h.ProxyRaw(t)
		got = c.Do("PING")
	} else {
		// Connections the proxy dialled before Redis filled up (its
		// ready ones) serve clients as they would have served them
		// anyway; the first client that needs a new one gets Redis's
		// refusal and the close.
		//
		// Redis writes its refusal and closes at once; a connection that
		// has sent something Redis did not read is reset by the kernel,
		// which can drop the refusal before it is read — a client of
		// Redis's own sees a bare close then too. So the client sees the
		// refusal then the close, or the close alone, never a reply.
		for i := 0; i < 8; i++ {
			c := h.ProxyRaw(t)
			c.Send("PING")
			got, err := c.ReadE()
			switch {
			case err != nil && (errors.Is(err, io.EOF) || proxytest.IsReset(err)):
				return // the close alone
			case err != nil:
				t.Fatalf("client neither served nor closed: %v", err)
			case got == "+PONG\r\n":
				continue
			case got != "-ERR max number of clients reached\r\n":
				t.Fatalf("through proxy: %q, want Redis's -ERR max number of clients reached", got)
			}
			if rest, err := c.ReadUntilEOF(); err != nil {
				t.Errorf("client not closed after %q: %v (then %q)", got, err, rest)
			}
			return
		}
		t.Fatal("every client served: the proxy never needed a connection Redis refused")
	}
	if !strings.Contains(got, "max number of clients reached") {
		t.Errorf("through proxy: %q, want Redis's -ERR max number of clients reached", got)
	}
}

// TestE2EHalfClose: a client that sends its commands and shuts down its
// write side (printf ... | nc) still gets every reply, then the close, as
// from Redis.
func TestE2EHalfClose(t *testing.T) {
	h := proxytest.Start(t)
	in := "SET a 1\r\nGET a\r\n" + string(proxytest.EncodeCommand("INCR", "a")) + "PING\r\n"
	run := func(addr string) string {
		h.ResetRedis(t)
		r := proxytest.Dial(t, addr)
		defer r.Close()
		r.WriteString(in)
		if err := r.C.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatalf("CloseWrite: %v", err)
		}
		out, err := r.ReadUntilEOF()
		if err != nil {
			t.Errorf("%s: %v", addr, err)
		}
		return out
	}
	want := run(h.Redis.Addr)
	got := run(h.Addr)
	if got != want {
		t.Errorf("half-closed client: proxy %q, direct %q", got, want)
	}
}

// TestE2EUpstreamWriteTimeout: a Redis that stops reading (here: the
// process is stopped with SIGSTOP) does not hang the client past
// WriteTimeout: it gets an error and the connection is closed.
func TestE2EUpstreamWriteTimeout(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithOptions(func(o *proxy.Options) { o.WriteTimeout = time.Second }))
	pid, err := strconv.Atoi(strings.TrimSpace(h.InfoField(t, "server", "process_id")))
	if err != nil {
		t.Fatalf("redis pid: %v", err)
	}
	c := h.ProxyRaw(t)
	c.Do("PING") // upstream connected
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	// 32 MB cannot fit in the socket buffers: the proxy's write blocks.
	go func() {
		_ = c.C.SetWriteDeadline(time.Now().Add(proxytest.IOTimeout))
		_, _ = c.C.Write(proxytest.EncodeCommand("SET", "k", strings.Repeat("w", 32<<20)))
	}()
	out, err := c.ReadUntilEOF()
	if err != nil {
		t.Fatalf("client not answered or closed while Redis does not read: %v (got %q)", err, out)
	}
	if out != "" && !strings.HasPrefix(out, "-ERR") {
		t.Errorf("client got %q", out)
	}
	t.Logf("client got %q, then the close", out)
}

// TestE2EClientWriteTimeout: Options.WriteTimeout also bounds a write to a
// client that does not drain, even below ClientOutputLimit.
func TestE2EClientWriteTimeout(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithOptions(func(o *proxy.Options) {
		o.WriteTimeout = time.Second
		o.ClientOutputLimit = 1 << 30
	}))
	val := strings.Repeat("v", 256<<10)
	h.DirectRaw(t).Do("SET", "big", val)
	c := h.ProxyRaw(t)
	proxytest.Eventually(t, "client accepted", func() bool { return h.Stats().ClientsConnected == 1 })
	var cmds []byte
	const gets = 200 // 50 MB of replies, not read
	for i := 0; i < gets; i++ {
		cmds = append(cmds, proxytest.EncodeCommand("GET", "big")...)
	}
	if err := c.WriteE(cmds); err != nil {
		t.Fatal(err)
	}
	proxytest.Eventually(t, "the proxy to close the client that does not read (WriteTimeout 1s)", func() bool {
		return h.Stats().ClientsConnected == 0
	})
	out, err := c.ReadUntilEOF()
	if err != nil || len(out) >= gets*len(val) {
		t.Errorf("client read %d bytes, %v; want the close before all replies", len(out), err)
	}
}

// TestE2EUpstreamLostMidReply: Redis dies while a large reply is half
// forwarded. The proxy cannot finish it and must not write anything else
// into it (an error there would read as part of the value): the client
// gets a prefix of the true bytes, then the close.
func TestE2EUpstreamLostMidReply(t *testing.T) {
	h := proxytest.Start(t)
	const size = 64 << 20
	d := h.DirectRaw(t)
	_ = d.C.SetWriteDeadline(time.Now().Add(5 * proxytest.IOTimeout))
	if _, err := io.Copy(d.C, io.MultiReader(strings.NewReader(fmt.Sprintf("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$%d\r\n", size)),
		&patternReader{n: size}, strings.NewReader("\r\n"))); err != nil {
		t.Fatal(err)
	}
	if got := d.Read(); got != "+OK\r\n" {
		t.Fatalf("SET: %q", got)
	}
	d.Close()
	c := h.ProxyRaw(t)
	c.Send("GET", "big")
	if line, err := c.BR.ReadString('\n'); err != nil || line != fmt.Sprintf("$%d\r\n", size) {
		t.Fatalf("GET header %q, %v", line, err)
	}
	chk := &patternChecker{}
	if _, err := io.CopyN(chk, c.BR, 1<<20); err != nil {
		t.Fatal(err)
	}
	h.Redis.Stop()
	_ = c.C.SetReadDeadline(time.Now().Add(proxytest.IOTimeout))
	n, err := io.Copy(chk, c.BR)
	if err != nil && !proxytest.IsReset(err) {
		t.Fatalf("client not closed after Redis died mid-reply: %v after %d bytes", err, chk.off)
	}
	if chk.bad != 0 {
		t.Errorf("bytes that are not the value's were written into the half-sent reply at offset %d", chk.bad-1)
	}
	if chk.off >= size {
		t.Logf("the whole value arrived (%d bytes): Redis had sent it all before dying", chk.off)
	}
	t.Logf("client got %d bytes of the value, then the close", 1<<20+n)
}

// TestE2EShutdownMidStreamedCommand: Shutdown while a client is half-way
// through sending a command too large to buffer (part of it already
// forwarded to Redis). The command is in flight: the drain lets the client
// finish it, delivers its reply, then closes — rather than waiting for a
// reply that cannot come because the rest is never read.
func TestE2EShutdownMidStreamedCommand(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithOptions(func(o *proxy.Options) { o.DrainTimeout = proxytest.IOTimeout }))
	c := h.ProxyRaw(t)
	const size = 10000000
	c.WriteString(fmt.Sprintf("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n", size) + strings.Repeat("m", 3<<20))
	proxytest.Eventually(t, "part of the streamed SET to reach Redis", func() bool {
		for _, l := range h.ClientList(t) {
			if q, _ := strconv.Atoi(proxytest.ClientField(l, "qbuf")); q > 1<<20 {
				return true
			}
		}
		return false
	})
	h.ManualShutdown()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), proxytest.IOTimeout/2)
		defer cancel()
		done <- proxytest.CallShutdown(h.Srv, ctx)
	}()
	proxytest.Eventually(t, "listener closed", func() bool {
		nc, err := net.DialTimeout("tcp", h.Addr, time.Second)
		if err != nil {
			return true
		}
		nc.Close()
		return false
	})
	go func() { _ = c.WriteE([]byte(strings.Repeat("m", size-3<<20) + "\r\n")) }()
	out, err := c.ReadUntilEOF()
	if err != nil || out != "+OK\r\n" {
		t.Errorf("client finishing its command during the drain got %q, %v; want +OK, then the close", out, err)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
}

// TestE2EUpstreamWriteDeadlineDoesNotLinger: a write deadline set by one
// way of writing to an upstream connection must not fail a later write
// made another way once it expires (found by Redis's test suite: shared
// connections failed write-timeout after their first write).
func TestE2EUpstreamWriteDeadlineDoesNotLinger(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithOptions(func(o *proxy.Options) { o.WriteTimeout = 300 * time.Millisecond }))
	for _, io := range []string{"first", "second"} {
		c := h.ProxyRaw(t)
		if got := c.Do("PING"); got != "+PONG\r\n" {
			t.Fatalf("%s PING: %q", io, got)
		}
		time.Sleep(time.Second)
		if got := c.Do("PING"); got != "+PONG\r\n" {
			t.Fatalf("%s client, PING after the write timeout passed: %q", io, got)
		}
	}
}
