package contention

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
)

// BenchmarkProxyTracking compares the proxy with and without the tracker:
// plain GET/SET traffic (which the tracker never sees: the core's command
// table marks only observed names) and WATCH transactions (which it
// counts). Compare the on/off pairs, e.g.
//
//	go test -run '^$' -bench ProxyTracking -count 6 ./extensions/contention/ | benchstat -col /tracking -
func BenchmarkProxyTracking(b *testing.B) {
	rs := redistest.Start(b)
	for _, tracking := range []string{"off", "on"} {
		var obs []proxy.Observer
		var tr *Tracker
		if tracking == "on" {
			cfg := DefaultConfig()
			var err error
			if tr, err = New(cfg, Deps{Logger: jsonLogger(&proxytest.SyncBuffer{})}); err != nil {
				b.Fatal(err)
			}
			obs = []proxy.Observer{tr}
		}
		// No proxy logging: it would weigh on the numbers.
		p := proxytest.StartProxy(b, rs.Addr, proxytest.WithObservers(obs...), proxytest.WithLogger(zap.NewNop()))
		ctx := context.Background()
		b.Run("op=getset/tracking="+tracking, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				cl := newClient(b, p.Addr, 2, "bench")
				defer cl.Close()
				for i := 0; pb.Next(); i++ {
					k := "bench:" + strconv.Itoa(i%64)
					if err := cl.Set(ctx, k, "v", 0).Err(); err != nil {
						b.Error(err)
						return
					}
					if err := cl.Get(ctx, k).Err(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		b.Run("op=watch/tracking="+tracking, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				cl := newClient(b, p.Addr, 3, "bench")
				defer cl.Close()
				for i := 0; pb.Next(); i++ {
					k := "tx:" + strconv.Itoa(i%64)
					err := cl.Watch(ctx, func(tx *redis.Tx) error {
						_, err := tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
							pipe.Incr(ctx, k)
							return nil
						})
						return err
					}, k)
					if err != nil && !errors.Is(err, redis.TxFailedErr) {
						b.Error(err)
						return
					}
				}
			})
		})
		p.Shutdown(b)
		if tr != nil {
			_ = tr.Close()
		}
	}
}

// BenchmarkSessionObserve measures the tracker's own cost per observed
// command, without the network: a committed WATCH transaction (three
// events) and a successful versioned write (one event, nothing counted).
func BenchmarkSessionObserve(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Window = time.Hour
	tr, err := New(cfg, Deps{Logger: jsonLogger(&proxytest.SyncBuffer{})})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	s := tr.Open(&proxy.SessionInfo{ID: 1, Addr: "10.0.0.1:5000", Name: "bench"})
	watch, multi, exec := ev("watch", okR, "order:1832:lock"), ev("multi", okR), ev("exec", commitR)
	b.Run("watch-multi-exec", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			s.Observe(watch)
			s.Observe(multi)
			s.Observe(exec)
		}
	})
	set := evOut(proxy.Committed, "exset", okR, "order:1832:lock", "v")
	b.Run("exset-ok", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			s.Observe(set)
		}
	})
}
