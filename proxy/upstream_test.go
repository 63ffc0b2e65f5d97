package proxy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
)

// TestUpstreamTLS: a rediss:// upstream is reached over TLS, verified
// against the configured CA; a wrong CA is an error that names the
// upstream and the cause, and the proxy keeps serving.
func TestUpstreamTLS(t *testing.T) {
	files := redistest.NewTLSFiles(t)
	r := redistest.Start(t, redistest.WithTLS(files.CertFile, files.KeyFile, files.CAFile))
	ctx := context.Background()

	addr := smokeProxy(t, r.Addr, func(o *proxy.Options) {
		o.Upstream.TLS = &tls.Config{RootCAs: files.Pool}
	})
	for _, proto := range []int{2, 3} {
		c := redis.NewClient(&redis.Options{Addr: addr, Protocol: proto})
		if err := c.Set(ctx, "tls", "yes", 0).Err(); err != nil {
			t.Fatalf("RESP%d SET through TLS upstream: %v", proto, err)
		}
		if v, err := c.Get(ctx, "tls").Result(); err != nil || v != "yes" {
			t.Fatalf("RESP%d GET = %q, %v", proto, v, err)
		}
		c.Close()
	}

	bad := smokeProxy(t, r.Addr, func(o *proxy.Options) {
		o.Upstream.TLS = &tls.Config{RootCAs: x509.NewCertPool()} // trusts nothing
	})
	c := redis.NewClient(&redis.Options{Addr: bad, Protocol: 2, MaxRetries: -1})
	defer c.Close()
	err := c.Ping(ctx).Err()
	if err == nil || !strings.Contains(err.Error(), r.Addr) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("PING with an untrusted upstream certificate = %v; want an error naming %s and the certificate problem", err, r.Addr)
	}
	if err := c.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("second PING = %v; the connection should survive and answer again", err)
	}
}

// TestUpstreamUnixSocket: the upstream may be a unix socket path.
func TestUpstreamUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "redis.sock")
	redistest.Start(t, redistest.WithConfig("unixsocket", sock), redistest.WithConfig("unixsocketperm", "700"))
	addr := smokeProxy(t, sock, func(o *proxy.Options) { o.Upstream.Network = "unix" })
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "u", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	info, err := c.ClientInfo(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Redis reports a unix-socket client with an address of "/path:0".
	if !strings.Contains(info.Addr, sock) {
		t.Fatalf("upstream connection address %q; want the unix socket %s", info.Addr, sock)
	}
}
