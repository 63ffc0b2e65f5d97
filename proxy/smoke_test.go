package proxy_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"

	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
)

func smokeProxy(t *testing.T, upstream string, mod func(*proxy.Options)) string {
	t.Helper()
	opts := proxy.Options{Upstream: proxy.Upstream{Network: "tcp", Addr: upstream}, Logger: zaptest.NewLogger(t)}
	if mod != nil {
		mod(&opts)
	}
	srv, err := proxy.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return l.Addr().String()
}

func TestSmoke(t *testing.T) {
	r := redistest.Start(t)
	addr := smokeProxy(t, r.Addr, nil)
	for _, proto := range []int{2, 3} {
		c := redis.NewClient(&redis.Options{Addr: addr, Protocol: proto})
		ctx := context.Background()
		if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
			t.Fatalf("proto %d: set: %v", proto, err)
		}
		if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
			t.Fatalf("proto %d: get: %q %v", proto, v, err)
		}
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := 0; i < 1000; i++ {
				p.Incr(ctx, "n")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := cmds[999].(*redis.IntCmd).Val(); got != int64(1000*(proto-2)+1000) {
			t.Fatalf("proto %d: last incr %d", proto, got)
		}
		c.Close()
	}
}
