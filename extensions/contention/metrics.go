package contention

import (
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Prometheus metrics. They are fed from each window as it ends (the hot
// path pays nothing for them), so they lag by at most one window.
//
// Cardinality is bounded: the pattern label takes at most n values of
// their own (metrics-patterns) plus OtherLabel. A pattern gets its label
// when a window ends in which it was among the most active and a label
// is free, and keeps it (counters stay monotonic) until it has been idle
// for labelIdle; what patterns without a label do counts under
// OtherLabel. The invalidator label works the same way, with
// OutsideLabel always among its values.

// OtherLabel is the pattern (or invalidator) label of everything that has
// no label of its own.
const OtherLabel = "(other)"

// labelIdle is how long a label stays without activity before it is freed
// (its series then disappears from /metrics).
const labelIdle = time.Hour

// metricCounters are the per-pattern counters, in the order of metricDefs.
var metricDefs = []struct {
	name, help string
	get        func(c *counts) int64
}{
	{"exproxy_contention_transactions_total", "EXECs that ended a MULTI, by key pattern (a transaction counts once for each distinct pattern among its watched keys).", func(c *counts) int64 { return c.Transactions }},
	{"exproxy_contention_commits_total", "Transactions that ran (EXEC replied with an array), by key pattern.", func(c *counts) int64 { return c.Commits }},
	{"exproxy_contention_aborts_total", "Transactions Redis aborted because a watched key changed (EXEC replied nil), by key pattern.", func(c *counts) int64 { return c.Aborts }},
	{"exproxy_contention_execaborts_total", "Transactions discarded for a rejected queued command (EXECABORT), by key pattern.", func(c *counts) int64 { return c.ExecAborts }},
	{"exproxy_contention_retries_total", "Transactions that retried the key set of the abort just before, by key pattern.", func(c *counts) int64 { return c.Retries }},
	{"exproxy_contention_stale_total", "Versioned writes refused as stale (EXSET ... VER, EXCAS, EXCAD, ...), by key pattern.", func(c *counts) int64 { return c.Stale }},
	{"exproxy_contention_versioned_commits_total", "Conditional versioned writes applied (EXSET ... VER, EXCAS, EXCAD, ...), by key pattern.", func(c *counts) int64 { return c.VersionedCommits }},
	{"exproxy_contention_cas_failed_total", "CAS/CAD on plain strings whose compare failed, by key pattern.", func(c *counts) int64 { return c.CASFailed }},
	{"exproxy_contention_cas_commits_total", "CAS/CAD on plain strings applied, by key pattern.", func(c *counts) int64 { return c.CASCommits }},
}

// histBounds are the WATCH→EXEC histogram's bucket bounds in µs: powers
// of two, which are bounds of the tracker's own histogram, so the
// exported buckets are exact.
var histBounds = func() []uint64 {
	var b []uint64
	for us := uint64(64); us <= 1<<24; us <<= 1 { // 64 µs .. 16.8 s
		b = append(b, us)
	}
	return b
}()

type labelled struct {
	c          counts
	lastActive time.Time
}

type metrics struct {
	n    int
	keys *keySet // nil when attribution is off

	mu    sync.Mutex
	pats  map[string]*labelled
	other counts
	invs  map[string]*labelled
	// invOther counts the conflicts caused by invalidators without a label.
	invOther counts
	// blamed counts conflicts by where their write came from.
	blamed counts
	hist   hist

	descs     []*prometheus.Desc
	invDesc   *prometheus.Desc
	srcDesc   *prometheus.Desc
	histDesc  *prometheus.Desc
	keysDesc  *prometheus.Desc
	labelDesc *prometheus.Desc
}

func newMetrics(n int, keys *keySet) *metrics {
	m := &metrics{n: max(n, 1), keys: keys, pats: map[string]*labelled{}, invs: map[string]*labelled{}}
	for _, d := range metricDefs {
		m.descs = append(m.descs, prometheus.NewDesc(d.name, d.help, []string{"pattern"}, nil))
	}
	m.invDesc = prometheus.NewDesc("exproxy_contention_invalidations_total",
		"Conflicts (WATCH aborts, stale versioned writes, failed CAS/CAD) by the client whose write caused them; \""+OutsideLabel+"\" when no write through this proxy did.",
		[]string{"invalidator", "kind"}, nil)
	m.srcDesc = prometheus.NewDesc("exproxy_contention_attributions_total",
		"Conflicts by where the write behind them came from: client (a client of this proxy), outside (not through this proxy), unattributed (the key was not tracked).",
		[]string{"source"}, nil)
	m.histDesc = prometheus.NewDesc("exproxy_contention_watch_to_exec_seconds",
		"Time from a transaction's first WATCH being sent to Redis to its EXEC reply, as the proxy sees it.", nil, nil)
	m.keysDesc = prometheus.NewDesc("exproxy_contention_keys_watched",
		"Keys in the attribution set now: watched, or watched or used by a versioned command within attribution-ttl.", nil, nil)
	m.labelDesc = prometheus.NewDesc("exproxy_contention_labelled_patterns",
		"Patterns with a label of their own on the contention counters (at most metrics-patterns).", nil, nil)
	return m
}

// add folds the windows of the shards, as they end at end, into the
// counters.
func (m *metrics) add(ws []*window, end time.Time) {
	pats := map[string]*entry{}
	invs := map[string]*entry{}
	var evicted, total counts
	var h hist
	for _, w := range ws {
		w.patterns.mergeInto(pats)
		w.invalidators.mergeInto(invs)
		evicted.add(&w.patterns.other)
		total.add(&w.totals)
		h.merge(&w.hist)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	admit(m.pats, pats, m.n, end, "", func(c *counts) { m.other.add(c) })
	m.other.add(&evicted)
	admit(m.invs, invs, m.n, end, OutsideLabel, func(c *counts) { m.invOther.add(c) })
	m.blamed.Attributed += total.Attributed
	m.blamed.Outside += total.Outside
	m.blamed.Unattributed += total.Unattributed
	m.hist.merge(&h)
}

// admit adds a window's entries to the labelled series, giving free labels
// to the most active first; the rest go to other. A label idle for
// labelIdle is freed first. always is a name that gets a label whatever
// the count ("" for none).
func admit(series map[string]*labelled, win map[string]*entry, n int, now time.Time, always string, other func(*counts)) {
	for name, l := range series {
		if name != always && now.Sub(l.lastActive) >= labelIdle {
			delete(series, name)
		}
	}
	es := make([]*entry, 0, len(win))
	for _, e := range win {
		es = append(es, e)
	}
	sort.Slice(es, func(i, j int) bool {
		if a, b := es[i].activity()+es[i].conflicts(), es[j].activity()+es[j].conflicts(); a != b {
			return a > b
		}
		return es[i].name < es[j].name
	})
	for _, e := range es {
		l := series[e.name]
		if l == nil && (len(series) < n || e.name == always) {
			l = &labelled{}
			series[e.name] = l
		}
		if l == nil {
			other(&e.counts)
			continue
		}
		l.c.add(&e.counts)
		l.lastActive = now
	}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range m.descs {
		ch <- d
	}
	ch <- m.invDesc
	ch <- m.srcDesc
	ch <- m.histDesc
	ch <- m.keysDesc
	ch <- m.labelDesc
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	emit := func(label string, c *counts) {
		for i, d := range metricDefs {
			ch <- prometheus.MustNewConstMetric(m.descs[i], prometheus.CounterValue, float64(d.get(c)), label)
		}
	}
	for name, l := range m.pats {
		emit(name, &l.c)
	}
	emit(OtherLabel, &m.other)
	inv := func(label string, c *counts) {
		ch <- prometheus.MustNewConstMetric(m.invDesc, prometheus.CounterValue, float64(c.Aborts), label, "abort")
		ch <- prometheus.MustNewConstMetric(m.invDesc, prometheus.CounterValue, float64(c.Stale), label, "stale")
		ch <- prometheus.MustNewConstMetric(m.invDesc, prometheus.CounterValue, float64(c.CASFailed), label, "cas_failed")
	}
	if _, ok := m.invs[OutsideLabel]; !ok {
		inv(OutsideLabel, &counts{})
	}
	for name, l := range m.invs {
		inv(name, &l.c)
	}
	inv(OtherLabel, &m.invOther)
	ch <- prometheus.MustNewConstMetric(m.srcDesc, prometheus.CounterValue, float64(m.blamed.Attributed), "client")
	ch <- prometheus.MustNewConstMetric(m.srcDesc, prometheus.CounterValue, float64(m.blamed.Outside), "outside")
	ch <- prometheus.MustNewConstMetric(m.srcDesc, prometheus.CounterValue, float64(m.blamed.Unattributed), "unattributed")

	buckets := make(map[float64]uint64, len(histBounds))
	var cum uint64
	b := 0
	for i, c := range m.hist.n {
		for b < len(histBounds) && histUpper(i) > histBounds[b] {
			buckets[float64(histBounds[b])/1e6] = cum
			b++
		}
		cum += uint64(c)
	}
	for ; b < len(histBounds); b++ {
		buckets[float64(histBounds[b])/1e6] = cum
	}
	ch <- prometheus.MustNewConstHistogram(m.histDesc, cum, float64(m.hist.sumUs)/1e6, buckets)
	var watched float64
	if m.keys != nil {
		watched = float64(m.keys.n.Load())
	}
	ch <- prometheus.MustNewConstMetric(m.keysDesc, prometheus.GaugeValue, watched)
	ch <- prometheus.MustNewConstMetric(m.labelDesc, prometheus.GaugeValue, float64(len(m.pats)))
}

// Collector returns the tracker's Prometheus metrics, for cmd/exproxy to
// register on /metrics (docs/contention.md lists them).
func (t *Tracker) Collector() prometheus.Collector { return t.met }

var _ prometheus.Collector = (*metrics)(nil)
