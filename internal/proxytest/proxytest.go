// Package proxytest runs the proxy in-process in front of a real
// redis-server (internal/redistest) for end-to-end tests, and gives them
// the clients to talk to both: raw connections (exact bytes both ways),
// go-redis (RESP2 and RESP3) and redis-cli. The proxy is meant to be
// transparent, so most tests compare "through the proxy" with "direct to
// Redis" and let Redis be the oracle.
//
// The upstream mode comes from EXPROXY_TEST_UPSTREAM_MODE (shared or
// pinned; unset means the library default), so one suite runs in both
// modes: make test runs the end-to-end packages once per mode.
package proxytest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
)

// IOTimeout guards every network operation against hangs. It is not an
// assertion about speed: test machines are slow and noisy, so it is
// generous.
const IOTimeout = 20 * time.Second

// Protocols are the RESP versions every client-facing test runs in.
var Protocols = []int{2, 3}

// ModeEnv names the environment variable that sets the upstream mode.
const ModeEnv = "EXPROXY_TEST_UPSTREAM_MODE"

// UpstreamMode is the proxy's upstream mode for this run: the value of
// EXPROXY_TEST_UPSTREAM_MODE, or the library default when it is unset. A
// value that is neither shared nor pinned fails the test, so a typo in CI
// cannot quietly test one mode twice.
func UpstreamMode(tb testing.TB) proxy.UpstreamMode {
	tb.Helper()
	v := os.Getenv(ModeEnv)
	if v == "" {
		return proxy.Options{}.Mode
	}
	m, ok := proxy.ParseUpstreamMode(v)
	if !ok {
		tb.Fatalf("%s=%q: want shared or pinned", ModeEnv, v)
	}
	return m
}

type config struct {
	redisOpts []redistest.Option
	mod       func(*proxy.Options)
	logLevel  zapcore.Level
	logger    *zap.Logger
	rewriters []proxy.Rewriter
	observers []proxy.Observer
}

// Option adjusts the Redis or the proxy a test starts.
type Option func(*config)

// WithRedis passes options to redistest.Start (Start only).
func WithRedis(o ...redistest.Option) Option {
	return func(c *config) { c.redisOpts = append(c.redisOpts, o...) }
}

// WithOptions edits the proxy's Options before proxy.New; the Upstream,
// Logger, Mode, Rewriters and Observers are already filled in. Several
// apply in order.
func WithOptions(f func(*proxy.Options)) Option {
	return func(c *config) {
		prev := c.mod
		c.mod = func(o *proxy.Options) {
			if prev != nil {
				prev(o)
			}
			f(o)
		}
	}
}

// WithRewriters appends rewriters, in precedence order.
func WithRewriters(r ...proxy.Rewriter) Option {
	return func(c *config) { c.rewriters = append(c.rewriters, r...) }
}

// WithObservers appends observers.
func WithObservers(o ...proxy.Observer) Option {
	return func(c *config) { c.observers = append(c.observers, o...) }
}

// WithLogLevel sets the level of the test logger (default debug).
func WithLogLevel(l zapcore.Level) Option {
	return func(c *config) { c.logLevel = l }
}

// WithLogger replaces the test logger (benchmarks pass zap.NewNop() so
// that logging does not weigh on the numbers). Proxy.Logs is then nil.
func WithLogger(l *zap.Logger) Option {
	return func(c *config) { c.logger = l }
}

func newConfig(opts []Option) config {
	cfg := config{logLevel: zapcore.DebugLevel}
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

// Proxy is a proxy.Server serving on a free loopback port.
type Proxy struct {
	Srv  *proxy.Server
	Addr string // where clients connect
	Opts proxy.Options
	Logs *LogSink // what the proxy logged; nil with WithLogger

	tb     testing.TB
	served chan error
	once   sync.Once
}

// NewServer calls proxy.New and turns a panic (an unfinished core) into a
// test failure instead of a crash of the whole test binary.
func NewServer(opts proxy.Options) (srv *proxy.Server, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("proxy.New panicked: %v", r)
		}
	}()
	return proxy.New(opts)
}

// StartProxy runs a proxy in front of the TCP address upstream (which need
// not be up) and shuts it down when the test ends.
func StartProxy(tb testing.TB, upstream string, opts ...Option) *Proxy {
	tb.Helper()
	return startProxy(tb, upstream, newConfig(opts))
}

func startProxy(tb testing.TB, upstream string, cfg config) *Proxy {
	tb.Helper()
	logger, sink := cfg.logger, (*LogSink)(nil)
	if logger == nil {
		logger, sink = NewLogger(tb, cfg.logLevel)
	}
	opts := proxy.Options{
		Listen:    "127.0.0.1:0", // unused: Serve gets the test's own listener
		Upstream:  proxy.Upstream{Network: "tcp", Addr: upstream},
		Logger:    logger,
		Mode:      UpstreamMode(tb),
		Rewriters: cfg.rewriters,
		Observers: cfg.observers,
	}
	if cfg.mod != nil {
		cfg.mod(&opts)
	}
	srv, err := NewServer(opts)
	if err != nil {
		tb.Fatalf("proxy.New: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	p := &Proxy{tb: tb, Srv: srv, Addr: l.Addr().String(), Opts: opts, Logs: sink, served: make(chan error, 1)}
	go func() {
		defer func() {
			if r := recover(); r != nil {
				p.served <- fmt.Errorf("Serve panicked: %v", r)
			}
		}()
		p.served <- srv.Serve(l)
	}()
	tb.Cleanup(func() { p.Shutdown(tb) })
	return p
}

// Shutdown stops the proxy (once; later calls do nothing) and checks that
// Serve returned ErrServerClosed. When it returns, every session has ended
// and its observers have been closed.
func (p *Proxy) Shutdown(tb testing.TB) {
	p.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), IOTimeout)
		defer cancel()
		if err := CallShutdown(p.Srv, ctx); err != nil {
			tb.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-p.served:
			if !errors.Is(err, proxy.ErrServerClosed) {
				tb.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		case <-time.After(IOTimeout):
			tb.Errorf("Serve did not return within %v of Shutdown", IOTimeout)
		}
	})
}

// ManualShutdown is for a test that shuts the proxy down itself (with
// CallShutdown, then reading Served): the cleanup will not.
func (p *Proxy) ManualShutdown() { p.once.Do(func() {}) }

// Served delivers what Serve returned, once.
func (p *Proxy) Served() <-chan error { return p.served }

// CallShutdown calls srv.Shutdown, a panic turned into an error.
func CallShutdown(srv *proxy.Server, ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("Shutdown panicked: %v", r)
		}
	}()
	return srv.Shutdown(ctx)
}

// Stats returns the server's counters; a panic fails the test.
func (p *Proxy) Stats() (st proxy.Stats) {
	defer func() {
		if r := recover(); r != nil {
			p.tb.Fatalf("Stats panicked: %v", r)
		}
	}()
	return p.Srv.Stats()
}

// Shared reports whether the proxy runs in shared upstream mode, where
// client connections do not map one-to-one onto Redis connections.
func (p *Proxy) Shared() bool { return p.Opts.Mode == proxy.SharedUpstream }

// Harness is one Redis and one proxy in front of it.
type Harness struct {
	*Proxy
	Redis *redistest.Server
	// Password is what the test's own admin connections to Redis
	// (DirectRaw, Direct, ResetRedis, ...) authenticate with; a test that
	// sets requirepass sets it too.
	Password string

	own sync.Map // local addresses of the test's own connections to Redis
}

// Start starts a Redis (WithRedis) and a proxy in front of it.
func Start(tb testing.TB, opts ...Option) *Harness {
	tb.Helper()
	cfg := newConfig(opts)
	return startFor(tb, redistest.Start(tb, cfg.redisOpts...), cfg)
}

// StartFor starts a proxy in front of a Redis the test already runs (when
// something, such as an extension, needs its address before the proxy
// exists). WithRedis has no effect here.
func StartFor(tb testing.TB, r *redistest.Server, opts ...Option) *Harness {
	tb.Helper()
	return startFor(tb, r, newConfig(opts))
}

func startFor(tb testing.TB, r *redistest.Server, cfg config) *Harness {
	tb.Helper()
	return &Harness{Redis: r, Proxy: startProxy(tb, r.Addr, cfg)}
}
