package contention

// End to end, the moment from which attribution sees a write, through the
// real proxy core and a real redis-server: docs/contention.md (limits of
// attribution) says what these tests check.

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
)

// gatedTracker is the tracker with the "victim" session's WATCH replies
// held back on their way to it, as on a busy host: Redis has run the
// WATCH, but the tracker has not yet heard so.
type gatedTracker struct {
	*Tracker
	arrived chan struct{} // the victim's WATCH reply reached the observer
	release chan struct{} // let it through
}

func (g *gatedTracker) Open(info *proxy.SessionInfo) proxy.SessionObserver {
	return &gatedSession{SessionObserver: g.Tracker.Open(info), g: g}
}

type gatedSession struct {
	proxy.SessionObserver
	g *gatedTracker
}

func (s *gatedSession) Observe(ev *proxy.Event) {
	if ev.Name == "watch" && ev.Info != nil && ev.Info.Name == "victim" {
		s.g.arrived <- struct{}{}
		<-s.g.release
	}
	s.SessionObserver.Observe(ev)
}

var _ proxy.WriteWatcher = (*gatedTracker)(nil)

// TestProxyAttributionWindow, for a key no one watched before:
//
//   - a write sent after the victim's WATCH was sent, but before its reply
//     reached the tracker, is attributed (the core arms the tracker when it
//     sends the WATCH);
//   - a write queued in MULTI after the WATCH was sent counts when its EXEC
//     commits, with the EXEC's name for the transaction's write;
//   - a write queued in MULTI before the WATCH was sent is not seen, though
//     its EXEC runs after the WATCH: the core asks about a write when it
//     sends it, and a queued write is sent when it is queued. The abort
//     counts as outside this proxy.
func TestProxyAttributionWindow(t *testing.T) {
	rs := redistest.Start(t)
	buf := &proxytest.SyncBuffer{}
	cfg := DefaultConfig()
	cfg.Window = time.Hour
	tr, err := New(cfg, Deps{Logger: jsonLogger(buf)})
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedTracker{Tracker: tr, arrived: make(chan struct{}), release: make(chan struct{})}
	p := proxytest.StartProxy(t, rs.Addr, proxytest.WithObservers(g))
	deadline := time.Now().Add(10 * time.Second)
	for !p.Srv.CommandsLoaded() {
		if time.Now().After(deadline) {
			t.Fatal("the proxy never read Redis's command table")
		}
		time.Sleep(10 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	victim := newClient(t, p.Addr, 2, "victim")
	writer := newClient(t, p.Addr, 3, "writer")
	queuer := newClient(t, p.Addr, 2, "queuer")

	// watchAndSet runs one WATCH/MULTI/SET/EXEC of the victim; during, at
	// the moment described above, it runs the given interference.
	watchAndSet := func(key string, beforeWatch, whileHeld func() error) {
		t.Helper()
		if beforeWatch != nil {
			if err := beforeWatch(); err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan error, 1)
		go func() {
			done <- victim.Watch(ctx, func(tx *redis.Tx) error {
				_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error { p.Set(ctx, key, "v", 0); return nil })
				return err
			}, key)
		}()
		select {
		case <-g.arrived: // Redis ran the WATCH; the tracker has not heard
		case <-ctx.Done():
			t.Fatal("the victim's WATCH reply never reached the observer")
		}
		err := whileHeld()
		g.release <- struct{}{}
		if err != nil {
			t.Fatal(err)
		}
		if err := <-done; !errors.Is(err, redis.TxFailedErr) {
			t.Fatalf("victim's transaction on %s: %v, want an abort", key, err)
		}
	}

	// 1. A plain write while the WATCH's reply is held.
	watchAndSet("plain", nil, func() error { return writer.Incr(ctx, "plain").Err() })

	// 2. A write queued while the WATCH's reply is held, committed later.
	watchAndSet("queued-after", nil, func() error {
		_, err := queuer.TxPipelined(ctx, func(p redis.Pipeliner) error { p.Incr(ctx, "queued-after"); return nil })
		return err
	})

	// 3. A write queued before the WATCH, committed after it: raw, so
	// that MULTI and INCR are sent before the WATCH and EXEC after it.
	raw := proxytest.Dial(t, p.Addr)
	defer raw.Close()
	watchAndSet("queued-before", func() error {
		raw.Send("CLIENT", "SETNAME", "early")
		raw.Send("MULTI")
		raw.Send("INCR", "queued-before")
		if got := raw.ReadN(3); !reflect.DeepEqual(got, []string{"+OK\r\n", "+OK\r\n", "+QUEUED\r\n"}) {
			return errors.New("raw MULTI/INCR: " + got[0] + got[1] + got[2])
		}
		return nil
	}, func() error {
		if got := raw.Do("EXEC"); got != "*1\r\n:1\r\n" {
			return errors.New("raw EXEC: " + got)
		}
		return nil
	})

	_ = victim.Close()
	p.Shutdown(t)
	if err := tr.Close(); err != nil { // conflicts still waiting count as outside
		t.Fatal(err)
	}
	lines := parseLog(t, buf.String())
	for _, tc := range []struct {
		key                 string
		attributed, outside int64
		by                  []Link
	}{
		{"plain", 1, 0, []Link{{Invalidator: "writer", Command: "incr", Aborts: 1}}},
		{"queued-after", 1, 0, []Link{{Invalidator: "queuer", Command: "incr", Aborts: 1}}},
		{"queued-before", 0, 1, []Link{{Invalidator: OutsideLabel, Aborts: 1}}},
	} {
		r, ok := findRow(lines, MsgKey, tc.key)
		if !ok || r.Aborts != 1 || r.Attributed != tc.attributed || r.Outside != tc.outside || !reflect.DeepEqual(r.Invalidators, tc.by) {
			t.Errorf("%s: row %+v\nwant 1 abort, %d attributed, %d outside, invalidators %+v", tc.key, r, tc.attributed, tc.outside, tc.by)
		}
	}
}
