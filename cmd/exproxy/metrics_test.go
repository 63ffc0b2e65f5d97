package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/exproxy/exproxy/config"
	"github.com/exproxy/exproxy/extensions/contention"
	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
)

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// perLabel is a counter family's values by one label's value.
func perLabel(f *dto.MetricFamily, label string) map[string]float64 {
	out := map[string]float64{}
	if f == nil {
		return out
	}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				out[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// TestContentionMetricsDuringWorkload scrapes /metrics, as serve wires
// it, while clients run WATCH transactions over 21 key patterns: the
// counters only grow, the pattern label never takes more than
// metrics-patterns values plus "(other)", and once the last window is
// written they add up to what the clients counted.
func TestContentionMetricsDuringWorkload(t *testing.T) {
	rs := redistest.Start(t)
	cfg := config.Default()
	cfg.Contention.Window = 100 * time.Millisecond
	cfg.Contention.MetricsPatterns = 5
	ctx, cancel := context.WithTimeout(context.Background(), proxytest.IOTimeout)
	defer cancel()
	ext, err := buildExtensions(ctx, cfg, proxy.Upstream{Network: "tcp", Addr: rs.Addr}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer ext.close()
	p := proxytest.StartProxy(t, rs.Addr, proxytest.WithObservers(ext.observers...))
	h := &health{stats: func() proxy.Stats { return proxy.Stats{} }, collectors: ext.collectors()}
	srv := httptest.NewServer(adminMux(h, nil, adminOptions{}))
	defer srv.Close()

	// The workers run for a while (a few windows), so that scrapes see the
	// counters move.
	const clients, patterns = 4, 21
	until := time.Now().Add(800 * time.Millisecond)
	var mu sync.Mutex
	var commits, aborts int64
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			cl := newClient(t, p.Addr, 2+c%2, "worker-"+strconv.Itoa(c))
			defer cl.Close()
			for i := 0; time.Now().Before(until); i++ {
				// Pattern t<j>:*, the low j far busier; few keys each, so
				// the workers collide.
				j := (i * i) % patterns
				key := "t" + strconv.Itoa(j) + ":" + strconv.Itoa(i%2)
				for {
					err := cl.Watch(ctx, func(tx *redis.Tx) error {
						n, err := tx.Get(ctx, key).Int64()
						if err != nil && !errors.Is(err, redis.Nil) {
							return err
						}
						_, err = tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
							pipe.Set(ctx, key, n+1, 0)
							return nil
						})
						return err
					}, key)
					mu.Lock()
					if errors.Is(err, redis.TxFailedErr) {
						aborts++
						mu.Unlock()
						continue
					}
					mu.Unlock()
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					commits++
					mu.Unlock()
					break
				}
			}
		}(c)
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()

	prev := map[string]float64{}
	scrapes, live := 0, 0
	check := func(final bool) map[string]*dto.MetricFamily {
		fams := scrape(t, srv.URL+"/metrics")
		scrapes++
		if !final && len(perLabel(fams["exproxy_contention_transactions_total"], "pattern")) > 1 {
			live++ // a window ended during the workload: counters are there
		}
		for _, name := range []string{"exproxy_contention_transactions_total", "exproxy_contention_commits_total", "exproxy_contention_aborts_total"} {
			vals := perLabel(fams[name], "pattern")
			if len(vals) > cfg.Contention.MetricsPatterns+1 {
				t.Errorf("%s has %d pattern labels: %v", name, len(vals), vals)
			}
			for l, v := range vals {
				if k := name + "{" + l + "}"; v < prev[k] {
					t.Errorf("%s went down from %v to %v", k, prev[k], v)
				} else {
					prev[k] = v
				}
			}
		}
		return fams
	}
	for running := true; running; {
		select {
		case <-finished:
			running = false
		case <-time.After(50 * time.Millisecond):
			check(false)
		}
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	p.Shutdown(t)
	ext.close() // writes the last window
	fams := check(true)
	sum := func(name string) float64 {
		var s float64
		for _, v := range perLabel(fams[name], "pattern") {
			s += v
		}
		return s
	}
	// One key per transaction, so one pattern: the labels add up exactly.
	if sum("exproxy_contention_commits_total") != float64(commits) || sum("exproxy_contention_aborts_total") != float64(aborts) ||
		sum("exproxy_contention_transactions_total") != float64(commits+aborts) {
		t.Errorf("metrics: %v commits, %v aborts, %v transactions; clients %d commits, %d aborts",
			sum("exproxy_contention_commits_total"), sum("exproxy_contention_aborts_total"), sum("exproxy_contention_transactions_total"), commits, aborts)
	}
	if h := fams["exproxy_contention_watch_to_exec_seconds"]; h == nil || h.GetMetric()[0].GetHistogram().GetSampleCount() != uint64(commits+aborts) {
		t.Errorf("WATCH→EXEC histogram: %v", h)
	}
	src := perLabel(fams["exproxy_contention_attributions_total"], "source")
	if src["client"]+src["outside"]+src["unattributed"] != float64(aborts) {
		t.Errorf("attributions %v, aborts %d", src, aborts)
	}
	if _, ok := perLabel(fams["exproxy_contention_aborts_total"], "pattern")[contention.OtherLabel]; !ok {
		t.Error("no (other) label with 21 patterns and metrics-patterns 5")
	}
	if live == 0 {
		t.Errorf("none of %d scrapes during the workload showed a counter", scrapes-1)
	}
	t.Logf("%d scrapes (%d with counters during the workload); clients %d commits, %d aborts; attributions %v", scrapes, live, commits, aborts, src)
}

// TestAttributionReadyMetric: /metrics says whether the proxy has read
// Redis's command table, which contention attribution needs: 0 for a
// proxy not yet serving, 1 once one serving with the tracker has read it.
func TestAttributionReadyMetric(t *testing.T) {
	rs := redistest.Start(t)
	value := func(loaded func() bool) float64 {
		h := &health{stats: func() proxy.Stats { return proxy.Stats{} }, collectors: []prometheus.Collector{attributionReady(loaded)}}
		srv := httptest.NewServer(adminMux(h, nil, adminOptions{}))
		defer srv.Close()
		f := scrape(t, srv.URL+"/metrics")["exproxy_contention_attribution_ready"]
		if f == nil || len(f.GetMetric()) != 1 {
			t.Fatalf("exproxy_contention_attribution_ready: %v", f)
		}
		return f.GetMetric()[0].GetGauge().GetValue()
	}
	ctx, cancel := context.WithTimeout(context.Background(), proxytest.IOTimeout)
	defer cancel()
	ext, err := buildExtensions(ctx, config.Default(), proxy.Upstream{Network: "tcp", Addr: rs.Addr}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer ext.close()
	idle, err := proxytest.NewServer(proxy.Options{Upstream: proxy.Upstream{Network: "tcp", Addr: rs.Addr}, Observers: ext.observers})
	if err != nil {
		t.Fatal(err)
	}
	if v := value(idle.CommandsLoaded); v != 0 {
		t.Errorf("before serving: %v, want 0", v)
	}
	p := proxytest.StartProxy(t, rs.Addr, proxytest.WithObservers(ext.observers...))
	deadline := time.Now().Add(10 * time.Second)
	for value(p.Srv.CommandsLoaded) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("exproxy_contention_attribution_ready never became 1")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
