package proxytest

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
)

// ClusterHarness is a proxy in front of a Redis Cluster (redistest), with
// clients of both: plain go-redis clients of the proxy, as an application
// that swapped only its connection string uses, and a go-redis
// ClusterClient of the cluster itself, as the oracle.
type ClusterHarness struct {
	*Proxy
	Cluster *redistest.Cluster
}

// StartCluster starts a proxy in front of c (a redis+cluster:// upstream
// seeded with every node) and shuts it down when the test ends. The
// cluster's credentials and TLS become the proxy's own.
func StartCluster(tb testing.TB, c *redistest.Cluster, opts ...Option) *ClusterHarness {
	tb.Helper()
	seeds := c.Addrs()
	cfg := newConfig(append([]Option{WithOptions(func(o *proxy.Options) {
		o.Upstream = proxy.Upstream{
			Network: "tcp", Addr: seeds[0], Cluster: true, Seeds: seeds,
			Username: c.User(), Password: c.Password(), TLS: c.TLSConfig(),
		}
	})}, opts...))
	return &ClusterHarness{Proxy: startProxy(tb, seeds[0], cfg), Cluster: c}
}

// Client is a plain go-redis client of the proxy.
func (h *ClusterHarness) Client(tb testing.TB, proto int, mods ...func(*redis.Options)) *redis.Client {
	if pw := h.Cluster.Password(); pw != "" {
		mods = append([]func(*redis.Options){func(o *redis.Options) {
			o.Username, o.Password = h.Cluster.User(), pw
		}}, mods...)
	}
	return NewGoRedis(tb, h.Addr, proto, mods...)
}

// Direct is a go-redis ClusterClient of the cluster itself, closed when
// the test ends.
func (h *ClusterHarness) Direct(tb testing.TB, proto int) *redis.ClusterClient {
	cc := h.Cluster.NewClusterClient(proto)
	tb.Cleanup(func() { _ = cc.Close() })
	return cc
}

// WaitReady waits until the proxy has the slot map and every slot has a
// primary.
func (h *ClusterHarness) WaitReady(tb testing.TB) {
	tb.Helper()
	Eventually(tb, "the proxy's slot map", func() bool {
		ok, _ := h.Srv.ClusterReady()
		return ok
	})
}

// FlushAll empties every primary (directly).
func (h *ClusterHarness) FlushAll(tb testing.TB) {
	tb.Helper()
	cc := h.Cluster.NewClusterClient(2)
	defer cc.Close()
	err := cc.ForEachMaster(context.Background(), func(ctx context.Context, c *redis.Client) error {
		return c.FlushAll(ctx).Err()
	})
	if err != nil {
		tb.Fatalf("FLUSHALL on every primary: %v", err)
	}
}
