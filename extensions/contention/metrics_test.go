package contention

import (
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/exproxy/exproxy/proxy"
)

// gather scrapes the tracker's collector as /metrics would.
func gather(t *testing.T, tr *Tracker) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(tr.Collector()); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// byLabel sums a counter family by the value of label.
func byLabel(f *dto.MetricFamily, label string) map[string]float64 {
	out := map[string]float64{}
	if f == nil {
		return out
	}
	for _, m := range f.GetMetric() {
		v := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				v = l.GetValue()
			}
		}
		out[v] += m.GetCounter().GetValue()
	}
	return out
}

func sum(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

// TestMetricsBoundedLabels sends 100,000 distinct keys in 1,000 patterns,
// aborted by 500 distinct writers, through several windows: the pattern
// and invalidator labels stay within metrics-patterns (+ "(other)", and
// "(outside this proxy)"), no count is lost between the labels, and the
// busiest pattern and writer have labels of their own.
func TestMetricsBoundedLabels(t *testing.T) {
	const keys, patterns, writers, n = 100_000, 1_000, 500, 20
	tr, _, clk := newTestTracker(t, func(c *Config) { c.MetricsPatterns = n })
	victims := make([]proxy.SessionObserver, nShards)
	for i := range victims {
		victims[i] = tr.Open(&proxy.SessionInfo{ID: uint64(i + 1), Addr: "10.0.0.1:" + strconv.Itoa(i)})
	}
	ws := make([]proxy.SessionObserver, writers)
	for i := range ws {
		ws[i] = tr.Open(&proxy.SessionInfo{ID: uint64(1000 + i), Addr: "10.0.1.1:1", Name: "writer-" + strconv.Itoa(i)})
	}
	watch, multi, abort := ev("watch", okR, ""), ev("multi", okR), ev("exec", nil2)
	var wantAborts float64
	for i := 0; i < keys; i++ {
		// Pattern "p<j>:*": a fixed word and a number. Pattern p0 is the
		// busiest: every tenth key; its writer is writer-0.
		j := i % patterns
		if i%10 == 0 {
			j = 0
		}
		key := "p" + strconv.Itoa(j) + ":" + strconv.Itoa(i)
		s := victims[i%nShards]
		t0 := clk.now()
		watch.Args[0], watch.Sent, watch.Done = []byte(key), t0, t0
		s.Observe(watch)
		w := 0
		if j != 0 {
			w = i % writers
		}
		ws[w].Observe(writeEv("set", t0.Add(time.Microsecond), t0.Add(2*time.Microsecond), key))
		s.Observe(multi)
		abort.Sent, abort.Done = t0.Add(3*time.Microsecond), t0.Add(4*time.Microsecond)
		s.Observe(abort)
		wantAborts++
		if i%20_000 == 19_999 {
			// The attribution set (50,000 keys) empties as keys age out.
			clk.advance(time.Minute)
			tr.maintain()
			tr.Flush()
		}
	}
	tr.Flush()
	fams := gather(t, tr)
	aborts := byLabel(fams["exproxy_contention_aborts_total"], "pattern")
	if len(aborts) > n+1 || aborts[OtherLabel] == 0 || aborts["p0:*"] != keys/10 {
		t.Errorf("%d pattern labels (want at most %d), p0:* %v, other %v", len(aborts), n+1, aborts["p0:*"], aborts[OtherLabel])
	}
	if sum(aborts) != wantAborts {
		t.Errorf("aborts over the labels add up to %v, want %v", sum(aborts), wantAborts)
	}
	for _, name := range []string{"exproxy_contention_transactions_total", "exproxy_contention_stale_total", "exproxy_contention_cas_commits_total"} {
		if l := byLabel(fams[name], "pattern"); len(l) != len(aborts) {
			t.Errorf("%s has %d labels, aborts %d", name, len(l), len(aborts))
		}
	}
	inv := byLabel(fams["exproxy_contention_invalidations_total"], "invalidator")
	if len(inv) > n+2 || inv["writer-0"] < keys/10 || inv[OtherLabel] == 0 {
		t.Errorf("%d invalidator labels (want at most %d), writer-0 %v, other %v", len(inv), n+2, inv["writer-0"], inv[OtherLabel])
	}
	if sum(inv) != wantAborts {
		t.Errorf("invalidations add up to %v, want %v", sum(inv), wantAborts)
	}
	src := byLabel(fams["exproxy_contention_attributions_total"], "source")
	if src["client"] != wantAborts || src["outside"] != 0 {
		t.Errorf("attributions %v", src)
	}
	h := fams["exproxy_contention_watch_to_exec_seconds"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != uint64(wantAborts) {
		t.Errorf("histogram count %d, want %v", h.GetSampleCount(), wantAborts)
	}
	// Every series counts: the total label set is bounded whatever the
	// keys.
	series := 0
	for _, f := range fams {
		series += len(f.GetMetric())
	}
	if max := len(metricDefs)*(n+1) + 3*(n+2) + 3 + 3; series > max {
		t.Errorf("%d series, want at most %d", series, max)
	}
	t.Logf("%d series; %d pattern labels, %d invalidator labels", series, len(aborts), len(inv))
}

// TestMetricsLabelsMoveOn: a label idle for an hour is freed for a pattern
// that is active now.
func TestMetricsLabelsMoveOn(t *testing.T) {
	tr, _, clk := newTestTracker(t, func(c *Config) { c.MetricsPatterns = 1 })
	s := tr.Open(&proxy.SessionInfo{ID: 1, Addr: "10.0.0.1:1"})
	tx := func(key string) {
		s.Observe(ev("watch", okR, key))
		s.Observe(ev("multi", okR))
		s.Observe(ev("exec", commitR))
	}
	tx("old:1")
	clk.advance(10 * time.Second)
	tr.Flush()
	tx("new:1")
	clk.advance(10 * time.Second)
	tr.Flush()
	commits := byLabel(gather(t, tr)["exproxy_contention_commits_total"], "pattern")
	if commits["old:*"] != 1 || commits[OtherLabel] != 1 || len(commits) != 2 {
		t.Errorf("before: %v", commits)
	}
	clk.advance(time.Hour)
	tx("new:2")
	tr.Flush()
	commits = byLabel(gather(t, tr)["exproxy_contention_commits_total"], "pattern")
	if _, ok := commits["old:*"]; ok || commits["new:*"] != 1 || commits[OtherLabel] != 1 {
		t.Errorf("after an hour: %v", commits)
	}
}
