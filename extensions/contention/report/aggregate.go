package report

import (
	"bytes"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/exproxy/exproxy/extensions/contention"
)

// event is one decoded contention log line.
type event struct {
	Msg         string    `json:"msg"`
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	identity
	contention.Row

	// A log shipper's envelope holds the proxy's line as text: Docker's
	// json-file and the CRI via Fluent Bit in "log", Vector and Logstash
	// in "message", journalctl -o json in "MESSAGE".
	Log      json.RawMessage `json:"log"`
	Message  json.RawMessage `json:"message"`
	JMessage json.RawMessage `json:"MESSAGE"`
}

// identity holds the fields that can name the sidecar a line came from:
// the proxy's own instance field, or what a log shipper adds. They are
// raw so that a field of an unexpected type is ignored, not fatal.
type identity struct {
	Instance   string          `json:"instance"`
	Kubernetes json.RawMessage `json:"kubernetes"` // {"pod_name": ...} (Fluent Bit, Vector)
	Hostname   json.RawMessage `json:"hostname"`
	JHostname  json.RawMessage `json:"_HOSTNAME"` // journald
	Host       json.RawMessage `json:"host"`      // a string, or {"name": ...} (Elastic)
}

// name is the sidecar the line names, or "".
func (id *identity) name() string {
	if id.Instance != "" {
		return id.Instance
	}
	var k struct {
		PodName string `json:"pod_name"`
	}
	if len(id.Kubernetes) > 0 && json.Unmarshal(id.Kubernetes, &k) == nil && k.PodName != "" {
		return k.PodName
	}
	for _, raw := range []json.RawMessage{id.Hostname, id.JHostname, id.Host} {
		if s := jsonString(raw); s != "" {
			return s
		}
	}
	var h struct {
		Name     string `json:"name"`
		Hostname string `json:"hostname"`
	}
	if len(id.Host) > 0 && json.Unmarshal(id.Host, &h) == nil {
		if h.Name != "" {
			return h.Name
		}
		return h.Hostname
	}
	return ""
}

func jsonString(raw json.RawMessage) string {
	var s string
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// wrapped returns the proxy's line inside a log shipper's envelope, or "".
func (ev *event) wrapped() string {
	for _, raw := range []json.RawMessage{ev.Log, ev.Message, ev.JMessage} {
		if s := jsonString(raw); strings.Contains(s, "contention.") {
			return s
		}
	}
	return ""
}

// Aggregator merges contention events; feed it with ReadSource, then Write.
type Aggregator struct {
	opts     Options
	msg      string // the event kind rows come from
	rows     map[rowKey]*agg
	invs     map[rowKey]*agg // the invalidators, whatever rows are grouped by
	total    agg
	sidecars map[string]*agg // per sidecar, from its window events
	windows  map[windowID]bool
	lengths  map[time.Duration]int // how many windows had each length
	skipped  int                   // lines that looked like contention events but did not decode

	// Conflicts over time are counted in buckets of res, which doubles
	// when the buckets of all rows together pass maxBuckets, so that a
	// fleet's logs of days need bounded memory.
	res      time.Duration
	nBuckets int
}

type rowKey struct {
	name string
	// instance qualifies a client known only by a loopback address: in a
	// sidecar every application is 127.0.0.1, so the same label on two
	// sidecars is two applications.
	instance string
}

type windowID struct {
	instance string
	start    int64
}

// agg accumulates one row over windows.
type agg struct {
	name, pattern, instance string
	counts                  contention.Row // summed counters; ratios recomputed at the end
	hist                    map[uint64]uint64
	first, last             time.Time
	windows                 int
	clients                 map[string]bool // qualified as in rowKey: "name" or "name\x00instance"
	instances               map[string]bool
	series                  map[int64]*byKind // bucket start (Unix ns, a multiple of res) → conflicts
	// links are the invalidators of a key, pattern or client row, or the
	// keys of an invalidator row, merged by name and command.
	links map[linkKey]*contention.Link
}

type linkKey struct{ name, command string }

// maxReportLinks bounds the invalidators (or keys) kept per row.
const maxReportLinks = 50

// Caps on the names kept per row: enough to read, bounded for a fleet.
const (
	maxReportClients   = 20
	maxReportInstances = 50
	maxBuckets         = 1 << 19
)

// NewAggregator returns an empty aggregation for opts.
func NewAggregator(opts Options) *Aggregator {
	if opts.By == "" {
		opts.By = "pattern"
	}
	if opts.Format == "" {
		opts.Format = "table"
	}
	msg := map[string]string{"pattern": contention.MsgPattern, "key": contention.MsgKey, "client": contention.MsgClient,
		"instance": contention.MsgWindow, "invalidator": contention.MsgInvalidator}[opts.By]
	return &Aggregator{
		opts: opts, msg: msg, rows: map[rowKey]*agg{}, invs: map[rowKey]*agg{}, sidecars: map[string]*agg{},
		windows: map[windowID]bool{}, lengths: map[time.Duration]int{}, res: time.Second,
	}
}

// marker is in every line the report reads, wrapped by a shipper or not.
var marker = []byte("contention.")

// line feeds one log line; source names the sidecar when the line does not.
// A line may carry a prefix before its JSON object, as container runtimes
// add, or be wrapped in a log shipper's JSON envelope.
func (a *Aggregator) line(line []byte, source string) {
	if !bytes.Contains(line, marker) {
		return
	}
	i := bytes.IndexByte(line, '{')
	if i < 0 {
		return
	}
	var ev event
	if err := json.Unmarshal(line[i:], &ev); err != nil {
		a.skipped++
		return
	}
	if !strings.HasPrefix(ev.Msg, "contention.") {
		text := ev.wrapped()
		j := strings.IndexByte(text, '{')
		if j < 0 {
			return
		}
		var inner event
		if err := json.Unmarshal([]byte(text[j:]), &inner); err != nil {
			a.skipped++
			return
		}
		if inner.name() == "" {
			inner.identity = ev.identity // the shipper's host or pod name
		}
		ev = inner
	}
	a.add(&ev, source)
}

func (a *Aggregator) add(ev *event, source string) {
	if ev.WindowStart.IsZero() || ev.WindowEnd.IsZero() {
		return
	}
	if !a.opts.Since.IsZero() && !ev.WindowEnd.After(a.opts.Since) {
		return
	}
	if !a.opts.Until.IsZero() && !ev.WindowStart.Before(a.opts.Until) {
		return
	}
	inst := ev.name()
	if inst == "" {
		inst = source
	}
	switch ev.Msg {
	case contention.MsgWindow:
		a.windows[windowID{inst, ev.WindowStart.UnixNano()}] = true
		a.lengths[ev.WindowEnd.Sub(ev.WindowStart)]++
		a.addTo(&a.total, ev, inst)
		s := a.sidecars[inst]
		if s == nil {
			s = &agg{name: inst, instance: inst}
			a.sidecars[inst] = s
		}
		a.addTo(s, ev, inst)
	case a.msg:
		k := rowKey{name: map[string]string{"pattern": ev.Pattern, "key": ev.Key, "client": ev.Client, "invalidator": ev.Invalidator}[a.opts.By]}
		if (a.opts.By == "client" || a.opts.By == "invalidator") && isLocalClient(k.name) {
			k.instance = inst
		}
		g := a.rows[k]
		if g == nil {
			g = &agg{name: k.name, instance: k.instance}
			a.rows[k] = g
		}
		if a.opts.By == "key" {
			g.pattern = ev.Pattern
		}
		a.addTo(g, ev, inst)
	}
	if ev.Msg == contention.MsgInvalidator && a.opts.By != "invalidator" {
		k := rowKey{name: ev.Invalidator}
		if isLocalClient(k.name) {
			k.instance = inst
		}
		g := a.invs[k]
		if g == nil {
			g = &agg{name: k.name, instance: k.instance}
			a.invs[k] = g
		}
		a.addTo(g, ev, inst)
	}
}

// qualify names an invalidator or client known only by a loopback address
// with its sidecar, as rows do.
func qualify(name, inst string) string {
	if isLocalClient(name) {
		return name + "\x00" + inst
	}
	return name
}

// addLinks merges a line's invalidators (or invalidated keys) into g.
func (g *agg) addLinks(ls []contention.Link, inst string) {
	for _, l := range ls {
		name := l.Key
		if l.Invalidator != "" {
			name = qualify(l.Invalidator, inst)
		}
		k := linkKey{name, l.Command}
		x := g.links[k]
		if x == nil {
			if len(g.links) >= maxReportLinks {
				continue
			}
			if g.links == nil {
				g.links = map[linkKey]*contention.Link{}
			}
			x = &contention.Link{Command: l.Command}
			g.links[k] = x
		}
		x.Aborts += l.Aborts
		x.Stale += l.Stale
		x.CASFailed += l.CASFailed
	}
}

// isLocalClient reports whether a client label is a loopback address (or
// a unix socket's empty one), which names no application across sidecars.
func isLocalClient(c string) bool {
	if c == "" || c == "@" || strings.HasPrefix(c, "/") {
		return true
	}
	ip := net.ParseIP(c)
	return ip != nil && ip.IsLoopback()
}

func (a *Aggregator) addTo(g *agg, ev *event, inst string) {
	c := &g.counts
	c.Transactions += ev.Transactions
	c.Commits += ev.Commits
	c.Aborts += ev.Aborts
	c.ExecAborts += ev.ExecAborts
	c.ExecErrors += ev.ExecErrors
	c.GivenUp += ev.GivenUp
	c.Stale += ev.Stale
	c.CASFailed += ev.CASFailed
	c.Retries += ev.Retries
	c.CommitRetries += ev.CommitRetries
	c.ChainsGivenUp += ev.ChainsGivenUp
	c.RetriesMax = max(c.RetriesMax, ev.RetriesMax)
	c.WatchExecCount += ev.WatchExecCount
	c.VersionedCommits += ev.VersionedCommits
	c.CASCommits += ev.CASCommits
	c.Attributed += ev.Attributed
	c.Outside += ev.Outside
	c.Unattributed += ev.Unattributed
	g.addLinks(ev.Invalidators, inst)
	g.addLinks(ev.InvalidatedKeys, inst)
	// Windows written before histograms existed would only have the p99:
	// keep the largest so the merged figure never under-reports.
	c.WatchExecP99Ms = max(c.WatchExecP99Ms, ev.WatchExecP99Ms)
	c.WatchExecP50Ms = max(c.WatchExecP50Ms, ev.WatchExecP50Ms)
	for k, v := range ev.WatchExecHist {
		u, err := strconv.ParseUint(k, 10, 64)
		if err != nil {
			continue
		}
		if g.hist == nil {
			g.hist = map[uint64]uint64{}
		}
		g.hist[u] += v
	}
	if g.first.IsZero() || ev.WindowStart.Before(g.first) {
		g.first = ev.WindowStart
	}
	if ev.WindowEnd.After(g.last) {
		g.last = ev.WindowEnd
	}
	g.windows++
	for _, cl := range ev.Clients {
		if isLocalClient(cl) {
			cl += "\x00" + inst
		}
		if g.clients == nil {
			g.clients = map[string]bool{}
		}
		if len(g.clients) < maxReportClients {
			g.clients[cl] = true
		}
	}
	if g.instances == nil {
		g.instances = map[string]bool{}
	}
	if len(g.instances) < maxReportInstances {
		g.instances[inst] = true
	}
	if conflicts(&ev.Row) > 0 {
		// A window counts at its middle, so windows of equal length fall
		// one per bin when bins are as long as windows.
		a.addPoint(g, ev.WindowStart.Add(ev.WindowEnd.Sub(ev.WindowStart)/2), &ev.Row)
	}
}

// byKind counts conflicts by kind, in the order of kinds (chart.go).
type byKind [4]int64

func (k *byKind) add(o *byKind) {
	for i := range k {
		k[i] += o[i]
	}
}

func (k *byKind) sum() int64 { return k[0] + k[1] + k[2] + k[3] }

// conflicts is recomputed rather than read, so lines of any age agree.
func conflicts(r *contention.Row) int64 {
	return r.Aborts + r.ExecAborts + r.Stale + r.CASFailed
}

func (a *Aggregator) addPoint(g *agg, mid time.Time, r *contention.Row) {
	if g.series == nil {
		g.series = map[int64]*byKind{}
	}
	k := floorDiv(mid.UnixNano(), int64(a.res)) * int64(a.res)
	b := g.series[k]
	if b == nil {
		b = &byKind{}
		g.series[k] = b
		a.nBuckets++
	}
	b.add(&byKind{r.Aborts, r.Stale, r.CASFailed, r.ExecAborts})
	for a.nBuckets > maxBuckets {
		a.coarsen()
	}
}

// coarsen doubles the bucket length of every series.
func (a *Aggregator) coarsen() {
	a.res *= 2
	a.nBuckets = 0
	all := []*agg{&a.total}
	for _, g := range a.rows {
		all = append(all, g)
	}
	for _, g := range a.sidecars {
		all = append(all, g)
	}
	for _, g := range all {
		if g.series == nil {
			continue
		}
		old := g.series
		g.series = make(map[int64]*byKind, len(old)/2+1)
		for k, v := range old {
			k = floorDiv(k, int64(a.res)) * int64(a.res)
			if b := g.series[k]; b != nil {
				b.add(v)
			} else {
				g.series[k] = v
			}
		}
		a.nBuckets += len(g.series)
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
