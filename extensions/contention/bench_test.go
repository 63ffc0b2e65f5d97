package contention

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
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
	// tracking=on attributes conflicts (the default); noattr is tracking
	// without attribution, so the core asks no WriteWatcher.
	for _, tracking := range []string{"off", "on", "noattr"} {
		var obs []proxy.Observer
		var tr *Tracker
		if tracking != "off" {
			cfg := DefaultConfig()
			cfg.Attribution = tracking == "on"
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
		// The same GET/SET while another client holds a WATCH on an
		// unrelated key: the core then asks the tracker about every SET
		// (Watching is true, Watched false).
		b.Run("op=getset-watching/tracking="+tracking, func(b *testing.B) {
			holder := newClient(b, p.Addr, 2, "holder")
			defer holder.Close()
			hold := holder.Conn()
			defer hold.Close()
			if err := hold.Do(ctx, "WATCH", "held:key").Err(); err != nil {
				b.Fatal(err)
			}
			if tr != nil && tracking == "on" && !tr.Watching() {
				b.Fatal("nothing watched")
			}
			b.ReportAllocs()
			b.ResetTimer()
			defer reportCPU(b)()
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
	// Added with attribution: an unconditional write to a key nobody
	// tracks, a conditional one (counted as a commit), and the write the
	// core reports to a watched key.
	cold := evOut(proxy.Committed, "exset", okR, "cold:key", "v")
	b.Run("exset-ok-untracked", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			s.Observe(cold)
		}
	})
	cas := evOut(proxy.Committed, "excas", casOK, "order:1832:lock", "v", "7")
	b.Run("excas-ok", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			s.Observe(cas)
		}
	})
	w := tr.Open(&proxy.SessionInfo{ID: 2, Addr: "10.0.0.2:5000", Name: "writer"})
	s.Observe(watch) // held: the key stays watched
	now := time.Now()
	write := writeEv("set", now, now, "order:1832:lock")
	b.Run("write-to-watched-key", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			w.Observe(write)
		}
	})
}

// BenchmarkWatched is what the core pays per write command while any key
// is watched: Watching (an atomic load) and Watched for the command's key,
// a miss (the common case) or a hit, with 1,000 keys watched; and with
// attribution off, where Watching is false and Watched is never asked.
func BenchmarkWatched(b *testing.B) {
	for _, attribution := range []bool{true, false} {
		cfg := DefaultConfig()
		cfg.Window = time.Hour
		cfg.Attribution = attribution
		tr, err := New(cfg, Deps{})
		if err != nil {
			b.Fatal(err)
		}
		// 1,000 keys watched by four sessions (a session tracks 256 at most).
		var ss []proxy.SessionObserver
		for i := 0; i < 4; i++ {
			ss = append(ss, tr.Open(&proxy.SessionInfo{ID: uint64(i + 1), Addr: "10.0.0.1:5000"}))
		}
		for i := 0; i < 1000; i++ {
			ss[i%4].Observe(ev("watch", okR, "order:"+strconv.Itoa(i)+":lock"))
		}
		mode := "on"
		if !attribution {
			mode = "off"
		}
		for _, c := range []struct{ name, key string }{{"miss", "session:9f86d081884c7d65"}, {"hit", "order:500:lock"}} {
			key := []byte(c.key)
			b.Run("key="+c.name+"/attribution="+mode, func(b *testing.B) {
				b.ReportAllocs()
				n := 0
				for i := 0; i < b.N; i++ {
					if tr.Watching() && tr.Watched(key) {
						n++
					}
				}
				if attribution && (n == b.N) != (c.name == "hit") {
					b.Fatalf("%s: %d of %d watched", c.name, n, b.N)
				}
			})
		}
		b.Run("parallel-miss/attribution="+mode, func(b *testing.B) {
			key := []byte("session:9f86d081884c7d65")
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if tr.Watching() && tr.Watched(key) {
						b.Error("watched")
					}
				}
			})
		})
		for _, s := range ss {
			s.Close()
		}
		_ = tr.Close()
	}
}

// hotKeys are the keys of the versioned-string benchmarks, named as
// redis-benchmark's key:__rand_int__ names them, and their order of use:
// a stride through them, so that with many keys a session's next key is
// never its last one (as with random keys from many clients).
func hotKeys(n int) (keys []string, next func(i int) int) {
	for i := range n {
		keys = append(keys, fmt.Sprintf("key:%012d", i))
	}
	return keys, func(i int) int { return i * 7919 % n }
}

// versionedBench is a tracker with the default configuration (attribution
// on, no per-conflict events) and one session named as a client of the
// proxy, as the core opens it.
func versionedBench(b *testing.B) (*Tracker, proxy.SessionObserver) {
	b.Helper()
	cfg := DefaultConfig()
	cfg.Window = time.Hour
	tr, err := New(cfg, Deps{Logger: jsonLogger(&proxytest.SyncBuffer{})})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tr.Close() })
	return tr, tr.Open(&proxy.SessionInfo{ID: 1, Addr: "10.0.0.1:5000", User: "default"})
}

// observeLoop delivers evs[next(i)] b.N times, with Sent and Done set as
// the core sets them: from a clock that moves 1µs per event, so that the
// clock reads are not counted as the tracker's cost.
func observeLoop(b *testing.B, s proxy.SessionObserver, evs []*proxy.Event, next func(int) int) {
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		e := evs[next(i)]
		now = now.Add(time.Microsecond)
		e.Sent, e.Done = now, now
		s.Observe(e)
	}
}

// reportCPU starts counting the process's CPU time; the function it
// returns reports it per operation as cpu-ns/op. On a shared host ns/op
// also counts the time other work held the cores; cpu-ns/op does not.
func reportCPU(b *testing.B) func() {
	c0, ok := cpuTime()
	return func() {
		if c1, ok1 := cpuTime(); ok && ok1 && b.N > 0 {
			b.ReportMetric(float64(c1-c0)/float64(b.N), "cpu-ns/op")
		}
	}
}

// BenchmarkRefused is the tracker's cost per refused versioned write, the
// event behind every failed EXCAS: `EXCAS key v 99` answered CAS_FAILED,
// on one key or on 1,000 (where the session's last key is never the
// next). blame=client: every key was written by another session of the
// proxy before, so the refusal is attributed at once; blame=none: no
// write was seen (the keys were created beforehand, as in the profile),
// so the refusal waits for one — and as refusals come faster than their
// grace ends, the 4,096 conflicts that may wait are soon waiting and the
// rest count as unattributed at once, which is what most events cost.
func BenchmarkRefused(b *testing.B) {
	for _, blame := range []string{"client", "none"} {
		for _, n := range []int{1, 1000} {
			b.Run(fmt.Sprintf("blame=%s/keys=%d", blame, n), func(b *testing.B) {
				tr, s := versionedBench(b)
				keys, next := hotKeys(n)
				evs := make([]*proxy.Event, n)
				for i, k := range keys {
					evs[i] = evOut(proxy.Stale, "excas", casFail, k, "v", "99")
				}
				if blame == "client" {
					w := tr.Open(&proxy.SessionInfo{ID: 2, Addr: "10.0.0.2:5000", Name: "writer"})
					for _, k := range keys {
						now := time.Now()
						w.Observe(at(evOut(proxy.Committed, "excas", casOK, k, "v", "7"), now, now))
					}
				}
				observeLoop(b, s, evs, next)
			})
		}
	}
}

// BenchmarkRefusedParallel is BenchmarkRefused/keys=1000 from 32
// sessions at once, one goroutine each (at GOMAXPROCS 1 or 2), as in the
// profile (32 redis-benchmark clients): the
// sessions share the tracker's shards, its attribution set and its list
// of waiting conflicts.
func BenchmarkRefusedParallel(b *testing.B) {
	for _, blame := range []string{"client", "none"} {
		b.Run("blame="+blame+"/keys=1000/sessions=32", func(b *testing.B) {
			tr, _ := versionedBench(b)
			keys, next := hotKeys(1000)
			if blame == "client" {
				w := tr.Open(&proxy.SessionInfo{ID: 2, Addr: "10.0.0.2:5000", Name: "writer"})
				for _, k := range keys {
					now := time.Now()
					w.Observe(at(evOut(proxy.Committed, "excas", casOK, k, "v", "7"), now, now))
				}
			}
			// Each goroutine its own session and events, made beforehand.
			type client struct {
				s   proxy.SessionObserver
				evs []*proxy.Event
			}
			const sessions = 32
			var clients [sessions]client
			for n := range clients {
				c := &clients[n]
				c.s = tr.Open(&proxy.SessionInfo{ID: uint64(100 + n), Addr: "10.0.0.1:" + strconv.Itoa(5000+n), User: "default"})
				for _, k := range keys {
					c.evs = append(c.evs, evOut(proxy.Stale, "excas", casFail, k, "v", "99"))
				}
			}
			var id atomic.Int64
			b.SetParallelism(sessions / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			b.ResetTimer()
			defer reportCPU(b)()
			b.RunParallel(func(pb *testing.PB) {
				n := int(id.Add(1)-1) % sessions
				c := &clients[n]
				now := time.Now()
				for i := n * 131; pb.Next(); i++ {
					e := c.evs[next(i%len(keys))]
					now = now.Add(time.Microsecond)
					e.Sent, e.Done = now, now
					c.s.Observe(e)
				}
			})
		})
	}
}

// BenchmarkCommitted is the tracker's cost per applied conditional
// versioned write (`EXCAS key v 7` answered OK: a commit counted, and a
// write recorded on the key for attribution), and per versioned read
// (EXGET, which keeps its key tracked), on one key or on 1,000.
func BenchmarkCommitted(b *testing.B) {
	for _, op := range []string{"excas", "exget"} {
		for _, n := range []int{1, 1000} {
			b.Run(fmt.Sprintf("op=%s/keys=%d", op, n), func(b *testing.B) {
				_, s := versionedBench(b)
				keys, next := hotKeys(n)
				evs := make([]*proxy.Event, n)
				for i, k := range keys {
					if op == "excas" {
						evs[i] = evOut(proxy.Committed, "excas", casOK, k, "v", "7")
					} else {
						evs[i] = ev("exget", "*2\r\n$1\r\nv\r\n:7\r\n", k)
					}
				}
				observeLoop(b, s, evs, next)
			})
		}
	}
}
