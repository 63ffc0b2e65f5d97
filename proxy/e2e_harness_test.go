package proxy_test

// End-to-end harness: a real redis-server (internal/redistest), the proxy
// built in-process in front of it, and helpers to talk to both the proxy and
// Redis directly with go-redis (RESP2 and RESP3), raw TCP and redis-cli.
// Most tests compare "through the proxy" with "direct to Redis": the proxy
// is transparent, so Redis itself is the oracle.
//
// The tests, by file:
//
//	e2e_types_test.go     data types, binary values, 1/64 MB values (heap), 10k pipelines, inline
//	e2e_tx_test.go        MULTI/EXEC/DISCARD/WATCH, aborted EXEC, EXECABORT
//	e2e_conn_test.go      SELECT, AUTH/ACL, HELLO, every RESP3 type
//	e2e_pubsub_test.go    pub/sub RESP2/3, MONITOR, CLIENT TRACKING, mode switches, pushes
//	e2e_blocking_test.go  blocking commands, CLIENT REPLY/SETNAME/ID, RESET, QUIT
//	e2e_scripting_test.go EVAL/EVALSHA/SCRIPT/FUNCTION/FCALL
//	e2e_injected_test.go  the proxy sends nothing on a client's behalf
//	e2e_failure_test.go   Redis down/lost/killed, disconnects and leaks, malformed input,
//	                      limits, slow readers, timeouts, shutdown
//	e2e_goredis_test.go   go-redis high-level API, radix, redis-cli, replication
//	e2e_stress_test.go    trickled input, backpressure, big pipelines, concurrency
//	e2e_upstream_test.go  unix and TLS upstreams, unix listener, stats, no secrets in logs
//	e2e_deep_test.go      Redis's 8,000-deep recursive Lua reply, and its neighbours on a shared connection
//	e2e_difffuzz_test.go  differential fuzz: mutated pipelines, direct vs through the proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
)

// ioTimeout guards every network operation against hangs. It is not an
// assertion about speed: the box is slow and noisy, so it is generous.
const ioTimeout = 20 * time.Second

var protocols = []int{2, 3}

// ---------------------------------------------------------------------------
// Logger: a zap logger writing to t.Log that stays safe after the test ends
// (a session goroutine logging late must not panic the test binary) and
// keeps the lines for assertions.

type testLogSink struct {
	mu    sync.Mutex
	tb    testing.TB
	done  bool
	late  int
	lines []string
}

func (s *testLogSink) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		s.late++
		return len(p), nil
	}
	if len(s.lines) < 20000 {
		s.lines = append(s.lines, line)
	}
	s.tb.Log(line)
	return len(p), nil
}

func (s *testLogSink) Sync() error { return nil }

func (s *testLogSink) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

func newTestLogger(tb testing.TB, level zapcore.Level) (*zap.Logger, *testLogSink) {
	sink := &testLogSink{tb: tb}
	// Registered first, so it runs last (cleanups are LIFO).
	tb.Cleanup(func() {
		sink.mu.Lock()
		sink.done = true
		sink.mu.Unlock()
	})
	enc := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	core := zapcore.NewCore(enc, zapcore.AddSync(sink), level)
	return zap.New(core), sink
}

// ---------------------------------------------------------------------------
// Proxy under test.

type proxyRun struct {
	tb     testing.TB
	Srv    *proxy.Server
	Addr   string // where clients connect
	Opts   proxy.Options
	logs   *testLogSink
	served chan error
	once   sync.Once
}

type harnessConfig struct {
	redisOpts []redistest.Option
	mod       func(*proxy.Options)
	logLevel  zapcore.Level
}

type harnessOption func(*harnessConfig)

func withRedis(o ...redistest.Option) harnessOption {
	return func(c *harnessConfig) { c.redisOpts = append(c.redisOpts, o...) }
}

func withOptions(f func(*proxy.Options)) harnessOption {
	return func(c *harnessConfig) {
		prev := c.mod
		c.mod = func(o *proxy.Options) {
			if prev != nil {
				prev(o)
			}
			f(o)
		}
	}
}

func withLogLevel(l zapcore.Level) harnessOption {
	return func(c *harnessConfig) { c.logLevel = l }
}

// newServer calls proxy.New and turns a panic (an unfinished core) into a
// test failure instead of a crash of the whole test binary.
func newServer(opts proxy.Options) (srv *proxy.Server, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("proxy.New panicked: %v", r)
		}
	}()
	return proxy.New(opts)
}

// startProxy runs a proxy in front of upstream (which need not be up).
func startProxy(tb testing.TB, upstream string, hopts ...harnessOption) *proxyRun {
	tb.Helper()
	cfg := harnessConfig{logLevel: zapcore.DebugLevel}
	for _, o := range hopts {
		o(&cfg)
	}
	logger, sink := newTestLogger(tb, cfg.logLevel)
	opts := proxy.Options{
		Listen:   "127.0.0.1:0", // unused: the test hands Serve its own listener
		Upstream: proxy.Upstream{Network: "tcp", Addr: upstream},
		Logger:   logger,
	}
	// The whole suite runs in either upstream mode (make test runs both).
	if m, ok := proxy.ParseUpstreamMode(os.Getenv("EXPROXY_TEST_UPSTREAM_MODE")); ok {
		opts.Mode = m
	}
	if cfg.mod != nil {
		cfg.mod(&opts)
	}
	srv, err := newServer(opts)
	if err != nil {
		tb.Fatalf("proxy.New: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	p := &proxyRun{tb: tb, Srv: srv, Addr: l.Addr().String(), Opts: opts, logs: sink, served: make(chan error, 1)}
	go func() {
		defer func() {
			if r := recover(); r != nil {
				p.served <- fmt.Errorf("Serve panicked: %v", r)
			}
		}()
		p.served <- srv.Serve(l)
	}()
	tb.Cleanup(func() { p.shutdown(tb) })
	return p
}

// shutdown stops the proxy once and checks that Serve returned
// ErrServerClosed.
func (p *proxyRun) shutdown(tb testing.TB) {
	p.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		if err := callShutdown(p.Srv, ctx); err != nil {
			tb.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-p.served:
			if !errors.Is(err, proxy.ErrServerClosed) {
				tb.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		case <-time.After(ioTimeout):
			tb.Errorf("Serve did not return within %v of Shutdown", ioTimeout)
		}
	})
}

func callShutdown(srv *proxy.Server, ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("Shutdown panicked: %v", r)
		}
	}()
	return srv.Shutdown(ctx)
}

func (p *proxyRun) stats() (st proxy.Stats) {
	defer func() {
		if r := recover(); r != nil {
			p.tb.Fatalf("Stats panicked: %v", r)
		}
	}()
	return p.Srv.Stats()
}

// harness is one Redis and one proxy in front of it.
type harness struct {
	*proxyRun
	Redis    *redistest.Server
	password string   // for the test's own admin connections to Redis
	own      sync.Map // local addresses of the test's own connections to Redis
}

func newHarness(tb testing.TB, hopts ...harnessOption) *harness {
	tb.Helper()
	cfg := harnessConfig{}
	for _, o := range hopts {
		o(&cfg)
	}
	r := redistest.Start(tb, cfg.redisOpts...)
	h := &harness{Redis: r}
	h.proxyRun = startProxy(tb, r.Addr, hopts...)
	return h
}

// ---------------------------------------------------------------------------
// go-redis clients.

func goRedisOptions(addr string, proto int) *redis.Options {
	return &redis.Options{
		Addr:            addr,
		Protocol:        proto,
		DisableIdentity: true,
		MaxRetries:      -1, // a retry would hide a proxy bug
		DialTimeout:     ioTimeout,
		ReadTimeout:     ioTimeout,
		WriteTimeout:    ioTimeout,
	}
}

// client is a go-redis client talking to the proxy.
func (h *harness) client(tb testing.TB, proto int, mods ...func(*redis.Options)) *redis.Client {
	return newGoRedis(tb, h.Addr, proto, mods...)
}

// direct is a go-redis client talking to Redis itself.
func (h *harness) direct(tb testing.TB, proto int, mods ...func(*redis.Options)) *redis.Client {
	mods = append([]func(*redis.Options){func(o *redis.Options) {
		o.Password = h.password
		o.ClientName = directClientName // numClients leaves these out
	}}, mods...)
	return newGoRedis(tb, h.Redis.Addr, proto, mods...)
}

func newGoRedis(tb testing.TB, addr string, proto int, mods ...func(*redis.Options)) *redis.Client {
	o := goRedisOptions(addr, proto)
	for _, m := range mods {
		m(o)
	}
	c := redis.NewClient(o)
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// ---------------------------------------------------------------------------
// Raw connections: exact bytes both ways.

type rawConn struct {
	tb testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(tb testing.TB, addr string) *rawConn {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return &rawConn{tb: tb, c: c, br: newBufioReader(c)}
}

func newBufioReader(c net.Conn) *bufio.Reader { return bufio.NewReaderSize(c, 64<<10) }

// proxyRaw and directRaw open raw connections to the proxy and to Redis;
// directRaw authenticates when the harness has a password.
func (h *harness) proxyRaw(tb testing.TB) *rawConn { return dialRaw(tb, h.Addr) }

// directClientName names the test's own go-redis connections to Redis.
const directClientName = "e2e-direct"

func (h *harness) directRaw(tb testing.TB) *rawConn {
	r := dialRaw(tb, h.Redis.Addr)
	h.own.Store(r.c.LocalAddr().String(), true)
	if h.password != "" {
		if got := r.do("AUTH", h.password); got != "+OK\r\n" {
			tb.Fatalf("AUTH on admin connection: %q", got)
		}
	}
	return r
}

// encodeCommand renders args as a RESP multibulk command.
func encodeCommand(args ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.Bytes()
}

func (r *rawConn) write(p []byte) {
	r.tb.Helper()
	if err := r.writeE(p); err != nil {
		r.tb.Fatalf("write: %v", err)
	}
}

func (r *rawConn) writeE(p []byte) error {
	_ = r.c.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, err := r.c.Write(p)
	return err
}

func (r *rawConn) writeString(s string) { r.tb.Helper(); r.write([]byte(s)) }

func (r *rawConn) send(args ...string) { r.tb.Helper(); r.write(encodeCommand(args...)) }

// read returns the next top-level RESP value, raw.
func (r *rawConn) read() string {
	r.tb.Helper()
	v, err := r.readE()
	if err != nil {
		r.tb.Fatalf("read reply: %v (got so far %q)", err, v)
	}
	return v
}

func (r *rawConn) readE() (string, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(ioTimeout))
	var b bytes.Buffer
	err := readValue(r.br, &b)
	return b.String(), err
}

// do sends one command and reads one value.
func (r *rawConn) do(args ...string) string {
	r.tb.Helper()
	r.send(args...)
	return r.read()
}

// readUntilEOF returns everything the peer sends until it closes; err is
// nil for a clean EOF (or a reset after the peer closed).
func (r *rawConn) readUntilEOF() (string, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(ioTimeout))
	b, err := io.ReadAll(r.br)
	if err != nil && isReset(err) {
		err = nil
	}
	return string(b), err
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

func (r *rawConn) close() { _ = r.c.Close() }

// readValue copies one complete RESP2/RESP3 value from br to w. An
// attribute belongs to the value after it; a push is a value of its own.
func readValue(br *bufio.Reader, w *bytes.Buffer) error {
	line, err := br.ReadString('\n')
	w.WriteString(line)
	if err != nil {
		return err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return fmt.Errorf("bad RESP line %q", line)
	}
	typ, body := line[0], line[1:len(line)-2]
	switch typ {
	case '+', '-', ':', '_', ',', '#', '(':
		return nil
	case '$', '=', '!':
		n, err := strconv.Atoi(body)
		if err != nil {
			return fmt.Errorf("bad length in %q", line)
		}
		if n < 0 {
			return nil
		}
		_, err = io.CopyN(w, br, int64(n)+2)
		return err
	case '*', '~', '>', '%', '|':
		n, err := strconv.Atoi(body)
		if err != nil {
			return fmt.Errorf("bad count in %q", line)
		}
		if typ == '%' || typ == '|' {
			n *= 2
		}
		for i := 0; i < n; i++ {
			if err := readValue(br, w); err != nil {
				return err
			}
		}
		if typ == '|' {
			return readValue(br, w)
		}
		return nil
	}
	return fmt.Errorf("unknown RESP type in %q", line)
}

// ---------------------------------------------------------------------------
// Same-as-Redis scripts.

// step is one command of a script; n is how many values it answers with
// (0 means 1; pushes count as values).
type step struct {
	args []string
	n    int
}

func c(args ...string) step { return step{args: args} }

// resetRedis empties data, scripts and functions so a script can run again
// from the same state.
func (h *harness) resetRedis(tb testing.TB) {
	tb.Helper()
	a := h.directRaw(tb)
	defer a.close()
	for _, cmd := range [][]string{{"FLUSHALL"}, {"SCRIPT", "FLUSH"}, {"FUNCTION", "FLUSH"}} {
		if got := a.do(cmd...); got != "+OK\r\n" {
			tb.Fatalf("%v: %q", cmd, got)
		}
	}
}

// runScript runs steps on a fresh connection to addr and returns each
// step's reply bytes. proto 3 sends HELLO 3 first (its reply is not
// returned: it holds the connection id).
func runScript(tb testing.TB, addr string, proto int, prelude []string, steps []step) []string {
	tb.Helper()
	r := dialRaw(tb, addr)
	defer r.close()
	if len(prelude) > 0 {
		r.do(prelude...)
	}
	if proto == 3 {
		if got := r.do("HELLO", "3"); !strings.HasPrefix(got, "%") {
			tb.Fatalf("HELLO 3 on %s: %q", addr, got)
		}
	}
	out := make([]string, len(steps))
	for i, s := range steps {
		r.send(s.args...)
		n := s.n
		if n == 0 {
			n = 1
		}
		var sb strings.Builder
		for j := 0; j < n; j++ {
			v, err := r.readE()
			sb.WriteString(v)
			if err != nil {
				tb.Errorf("%s step %d %q: read: %v (got %q)", addr, i, s.args, err, sb.String())
				out[i] = sb.String()
				return out
			}
		}
		out[i] = sb.String()
	}
	return out
}

// sameAsRedis runs steps directly against Redis, resets Redis, runs them
// through the proxy, and requires byte-identical replies.
func (h *harness) sameAsRedis(tb testing.TB, proto int, steps []step) {
	tb.Helper()
	h.sameAsRedisPrelude(tb, proto, nil, steps)
}

func (h *harness) sameAsRedisPrelude(tb testing.TB, proto int, prelude []string, steps []step) {
	tb.Helper()
	if h.password != "" && prelude == nil {
		prelude = []string{"AUTH", h.password}
	}
	h.resetRedis(tb)
	want := runScript(tb, h.Redis.Addr, proto, prelude, steps)
	h.resetRedis(tb)
	got := runScript(tb, h.Addr, proto, prelude, steps)
	for i := range steps {
		// HELLO's map holds the connection id, which differs.
		if helloMask(got[i]) != helloMask(want[i]) {
			tb.Errorf("RESP%d step %d %q:\n proxy: %s\ndirect: %s", proto, i, steps[i].args, clip(got[i]), clip(want[i]))
		}
	}
}

// sameAsRedisPipelined is sameAsRedis with every step sent in one write,
// so the proxy frames the replies of many types in one batch.
func (h *harness) sameAsRedisPipelined(tb testing.TB, proto int, steps []step) {
	tb.Helper()
	run := func(addr string) string {
		h.resetRedis(tb)
		r := dialRaw(tb, addr)
		defer r.close()
		if h.password != "" {
			r.do("AUTH", h.password)
		}
		var in []byte
		if proto == 3 {
			in = append(in, encodeCommand("HELLO", "3")...)
		}
		values := 0
		for _, s := range steps {
			in = append(in, encodeCommand(s.args...)...)
			values += max(s.n, 1)
		}
		in = append(in, encodeCommand("ECHO", "--end--")...)
		errc := make(chan error, 1)
		go func() { errc <- r.writeE(in) }()
		var out strings.Builder
		if proto == 3 {
			r.read()
		}
		for i := 0; i < values; i++ {
			v, err := r.readE()
			out.WriteString(v)
			if err != nil {
				tb.Errorf("%s: value %d: %v", addr, i, err)
				return out.String()
			}
		}
		if v := r.read(); v != "$7\r\n--end--\r\n" {
			tb.Errorf("%s: after %d values, %q instead of the end marker", addr, values, v)
		}
		if err := <-errc; err != nil {
			tb.Errorf("%s: write: %v", addr, err)
		}
		return helloMask(out.String())
	}
	want := run(h.Redis.Addr)
	got := run(h.Addr)
	if got != want {
		// Find the first difference for a readable message.
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		lo := max(0, i-80)
		tb.Errorf("RESP%d pipelined replies differ at byte %d:\n proxy: %s\ndirect: %s", proto, i,
			clip(got[lo:min(len(got), i+200)]), clip(want[lo:min(len(want), i+200)]))
	}
}

func clip(s string) string {
	if len(s) > 400 {
		return fmt.Sprintf("%q...(%d bytes)", s[:400], len(s))
	}
	return strconv.Quote(s)
}

// ---------------------------------------------------------------------------
// redis-cli.

func redisCLI(tb testing.TB, addr string, stdin []byte, args ...string) (string, error) {
	tb.Helper()
	cli := redistest.CLI()
	if cli == "" {
		tb.Fatal("redis-cli not found on PATH; install redis-tools")
	}
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, append([]string{"-h", host, "-p", port}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// ---------------------------------------------------------------------------
// Polling and process counters.

// eventually polls cond until it holds or a generous deadline passes.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(ioTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// infoField reads one field of INFO section from Redis directly.
func (h *harness) infoField(tb testing.TB, section, field string) string {
	tb.Helper()
	a := h.directRaw(tb)
	defer a.close()
	v := a.do("INFO", section)
	for _, line := range strings.Split(v, "\r\n") {
		if strings.HasPrefix(line, field+":") {
			return strings.TrimPrefix(line, field+":")
		}
	}
	return ""
}

// waitBlocked waits until Redis reports n clients blocked.
func (h *harness) waitBlocked(tb testing.TB, n int) {
	tb.Helper()
	eventually(tb, fmt.Sprintf("%d blocked clients", n), func() bool {
		return h.infoField(tb, "clients", "blocked_clients") == strconv.Itoa(n)
	})
}

// clientList returns Redis's CLIENT LIST lines (direct).
func (h *harness) clientList(tb testing.TB) []string {
	tb.Helper()
	a := h.directRaw(tb)
	defer a.close()
	v := a.do("CLIENT", "LIST")
	i := strings.Index(v, "\r\n")
	body := strings.TrimSuffix(v[i+2:], "\r\n")
	var lines []string
	for _, l := range strings.Split(body, "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// numClients counts Redis's client connections other than the test's own
// direct ones (the proxy's upstream connections, in practice).
// shared reports whether the proxy runs in shared upstream mode, where
// client connections do not map one-to-one onto Redis connections.
func (p *proxyRun) shared() bool { return p.Opts.Mode == proxy.SharedUpstream }

// baseClients is how many Redis connections the proxy holds for no client
// in particular: its shared connections.
func (h *harness) baseClients() int { return int(h.stats().SharedConns) }

func (h *harness) numClients(tb testing.TB) int {
	tb.Helper()
	n := 0
	for _, l := range h.clientList(tb) {
		if strings.Contains(l, " name="+directClientName+" ") {
			continue
		}
		if _, mine := h.own.Load(clientField(l, "addr")); mine {
			continue
		}
		n++
	}
	return n
}

// clientField returns one field of a CLIENT LIST line.
func clientField(line, name string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v
		}
	}
	return ""
}

func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}
