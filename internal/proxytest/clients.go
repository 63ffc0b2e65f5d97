package proxytest

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/internal/redistest"
)

// DirectClientName names the test's own go-redis connections to Redis, so
// NumClients can leave them out.
const DirectClientName = "e2e-direct"

// GoRedisOptions are the options of every test client: no retries (a
// retry would hide a proxy bug, and a resent EXINCRBY would count twice),
// no CLIENT SETINFO, and IOTimeout on every operation.
func GoRedisOptions(addr string, proto int) *redis.Options {
	return &redis.Options{
		Addr:            addr,
		Protocol:        proto,
		DisableIdentity: true,
		MaxRetries:      -1,
		DialTimeout:     IOTimeout,
		ReadTimeout:     IOTimeout,
		WriteTimeout:    IOTimeout,
	}
}

// NewGoRedis returns a go-redis client of addr with GoRedisOptions edited
// by mods, closed when the test ends.
func NewGoRedis(tb testing.TB, addr string, proto int, mods ...func(*redis.Options)) *redis.Client {
	o := GoRedisOptions(addr, proto)
	for _, m := range mods {
		m(o)
	}
	c := redis.NewClient(o)
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Client is a go-redis client talking to the proxy.
func (h *Harness) Client(tb testing.TB, proto int, mods ...func(*redis.Options)) *redis.Client {
	return NewGoRedis(tb, h.Addr, proto, mods...)
}

// Direct is a go-redis client talking to Redis itself, authenticated with
// the harness's Password.
func (h *Harness) Direct(tb testing.TB, proto int, mods ...func(*redis.Options)) *redis.Client {
	mods = append([]func(*redis.Options){func(o *redis.Options) {
		o.Password = h.Password
		o.ClientName = DirectClientName
	}}, mods...)
	return NewGoRedis(tb, h.Redis.Addr, proto, mods...)
}

// ProxyRaw opens a raw connection to the proxy.
func (h *Harness) ProxyRaw(tb testing.TB) *Conn { return Dial(tb, h.Addr) }

// DirectRaw opens a raw connection to Redis, authenticated when the
// harness has a Password.
func (h *Harness) DirectRaw(tb testing.TB) *Conn {
	tb.Helper()
	r := Dial(tb, h.Redis.Addr)
	h.own.Store(r.C.LocalAddr().String(), true)
	if h.Password != "" {
		if got := r.Do("AUTH", h.Password); got != "+OK\r\n" {
			tb.Fatalf("AUTH on admin connection: %q", got)
		}
	}
	return r
}

// RedisCLI runs redis-cli against addr with args, stdin (when not nil) as
// its input, and returns its combined output.
func RedisCLI(tb testing.TB, addr string, stdin []byte, args ...string) (string, error) {
	tb.Helper()
	cli := redistest.CLI()
	if cli == "" {
		tb.Fatal("redis-cli not found on PATH; install redis-tools")
	}
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), IOTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, append([]string{"-h", host, "-p", port}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
