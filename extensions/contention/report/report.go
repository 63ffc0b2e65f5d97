// Package report implements `exproxy contention`: it reads the JSON log
// lines the contention tracker writes (see docs/contention.md), aggregates
// them over a time range and prints a ranked report by pattern, key or
// client as a table, JSON, CSV or a self-contained HTML page.
package report

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/exproxy/exproxy/extensions/contention"
)

// now is the clock for relative --since/--until; tests replace it.
var now = time.Now

// Options select and shape the report.
type Options struct {
	Since, Until time.Time // zero: unbounded
	By           string    // "pattern" (default), "key" or "client"
	Format       string    // "table" (default), "json", "csv" or "html"
	Top          int       // rows shown; 0 = all
}

const usage = `usage: exproxy contention [flags] [FILE ...]

Reads exproxy's JSON log (stdin when no FILE is given; "-" is stdin too;
gzipped files are detected) and prints where optimistic locking contends.

Flags:
`

// Main runs `exproxy contention` with args (without the subcommand name) and
// returns the exit status: 0 success, 1 an input could not be read, 2 bad
// usage.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("exproxy contention", flag.ContinueOnError)
	fs.SetOutput(stderr)
	since := fs.String("since", "", "only windows ending after this time: RFC3339 (2026-11-22T01:00:00Z) or a duration back from now (1h, 30m)")
	until := fs.String("until", "", "only windows starting before this time: RFC3339 or a duration back from now")
	by := fs.String("by", "pattern", "group rows by pattern, key or client")
	format := fs.String("format", "table", "output format: table, json, csv or html")
	top := fs.Int("top", 20, "rows to show, hottest first; 0 shows all")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" || a == "--h" {
			// Asked-for help is output, not an error: it goes to stdout.
			fs.SetOutput(stdout)
			fs.Usage()
			return 0
		}
		if a == "--" {
			break
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	opts := Options{By: *by, Format: *format, Top: *top}
	var err error
	if opts.Since, err = parseWhen(*since); err != nil {
		fmt.Fprintf(stderr, "exproxy contention: --since: %v\n", err)
		return 2
	}
	if opts.Until, err = parseWhen(*until); err != nil {
		fmt.Fprintf(stderr, "exproxy contention: --until: %v\n", err)
		return 2
	}
	if err := opts.check(); err != nil {
		fmt.Fprintf(stderr, "exproxy contention: %v\n", err)
		return 2
	}
	agg := NewAggregator(opts)
	files := fs.Args()
	if len(files) == 0 {
		files = []string{"-"}
	}
	status := 0
	for _, name := range files {
		if err := readInput(name, stdin, agg); err != nil {
			fmt.Fprintf(stderr, "exproxy contention: %v\n", err)
			status = 1
		}
	}
	if err := agg.Write(stdout); err != nil {
		fmt.Fprintf(stderr, "exproxy contention: writing report: %v\n", err)
		return 1
	}
	return status
}

func (o *Options) check() error {
	switch o.By {
	case "pattern", "key", "client":
	default:
		return fmt.Errorf("--by: want pattern, key or client, got %q", o.By)
	}
	switch o.Format {
	case "table", "json", "csv", "html":
	default:
		return fmt.Errorf("--format: want table, json, csv or html, got %q", o.Format)
	}
	if o.Top < 0 {
		return fmt.Errorf("--top: must not be negative, got %d", o.Top)
	}
	if !o.Since.IsZero() && !o.Until.IsZero() && !o.Until.After(o.Since) {
		return errors.New("--until must be after --since")
	}
	return nil
}

// parseWhen accepts RFC3339 (with or without fractional seconds) or a Go
// duration meaning that long before now.
func parseWhen(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("want RFC3339 (2026-11-22T01:00:00Z) or a duration (1h, 30m), got %q", s)
	}
	return now().Add(-d), nil
}

// readInput feeds one file ("-" = stdin), plain or gzipped, to agg.
func readInput(name string, stdin io.Reader, agg *Aggregator) error {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("reading log: %w", err)
		}
		defer f.Close()
		r = f
	}
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(2)
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("reading %s: %w", name, err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 64<<10)
	}
	if err := agg.Read(br); err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	return nil
}

// event is one decoded contention log line.
type event struct {
	Msg         string    `json:"msg"`
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	contention.Row
}

// Aggregator merges contention events; feed it with Read, then Write.
type Aggregator struct {
	opts    Options
	msg     string // the event kind rows come from
	rows    map[string]*agg
	total   agg
	windows map[time.Time]bool
	skipped int // lines that looked like contention events but did not decode
}

// agg accumulates one row over windows.
type agg struct {
	name, pattern string
	counts        contention.Row // summed counters; ratios recomputed at the end
	hist          map[uint64]uint64
	first, last   time.Time
	windows       int
	clients       map[string]bool
	series        map[time.Time]int64         // window start → aborts, for the chart
	length        map[time.Time]time.Duration // window start → window length
}

// maxReportClients bounds the client names listed per row.
const maxReportClients = 20

// NewAggregator returns an empty aggregation for opts.
func NewAggregator(opts Options) *Aggregator {
	if opts.By == "" {
		opts.By = "pattern"
	}
	if opts.Format == "" {
		opts.Format = "table"
	}
	msg := map[string]string{"pattern": contention.MsgPattern, "key": contention.MsgKey, "client": contention.MsgClient}[opts.By]
	return &Aggregator{opts: opts, msg: msg, rows: map[string]*agg{}, windows: map[time.Time]bool{}}
}

var marker = []byte(`"msg":"contention.`)

// Read consumes log lines; lines that are not contention window, key,
// pattern or client events (other log output, abort events, garbage) are
// skipped. A line may carry a prefix before its JSON object, as container
// runtimes add.
func (a *Aggregator) Read(r *bufio.Reader) error {
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			a.line(line)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (a *Aggregator) line(line []byte) {
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
	if ev.WindowStart.IsZero() || ev.WindowEnd.IsZero() {
		return
	}
	if !a.opts.Since.IsZero() && !ev.WindowEnd.After(a.opts.Since) {
		return
	}
	if !a.opts.Until.IsZero() && !ev.WindowStart.Before(a.opts.Until) {
		return
	}
	switch ev.Msg {
	case contention.MsgWindow:
		a.windows[ev.WindowStart] = true
		a.total.add(&ev)
	case a.msg:
		name := map[string]string{"pattern": ev.Pattern, "key": ev.Key, "client": ev.Client}[a.opts.By]
		g := a.rows[name]
		if g == nil {
			g = &agg{name: name}
			a.rows[name] = g
		}
		if a.opts.By == "key" {
			g.pattern = ev.Pattern
		}
		g.add(&ev)
	}
}

func (g *agg) add(ev *event) {
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
		if g.clients == nil {
			g.clients = map[string]bool{}
		}
		if len(g.clients) < maxReportClients {
			g.clients[cl] = true
		}
	}
	if g.series == nil {
		g.series = map[time.Time]int64{}
		g.length = map[time.Time]time.Duration{}
	}
	g.series[ev.WindowStart] += ev.Aborts
	g.length[ev.WindowStart] = ev.WindowEnd.Sub(ev.WindowStart)
}

// Row is one line of the report; JSON output is an array of these, a
// stable interface for scripts (docs/contention.md).
type Row struct {
	Key              string    `json:"key,omitempty"`
	Pattern          string    `json:"pattern,omitempty"`
	Client           string    `json:"client,omitempty"`
	Transactions     int64     `json:"transactions"`
	Commits          int64     `json:"commits"`
	Aborts           int64     `json:"aborts"`
	ExecAborts       int64     `json:"execaborts"`
	ExecErrors       int64     `json:"exec_errors"`
	GivenUp          int64     `json:"given_up"`
	Stale            int64     `json:"stale"`
	CASFailed        int64     `json:"cas_failed"`
	Conflicts        int64     `json:"conflicts"`
	AbortRatio       float64   `json:"abort_ratio"`
	Retries          int64     `json:"retries"`
	RetriesPerCommit float64   `json:"retries_per_commit"`
	RetriesMax       int64     `json:"retries_max"`
	ChainsGivenUp    int64     `json:"chains_given_up"`
	WatchExecCount   uint64    `json:"watch_to_exec_count"`
	WatchExecP50Ms   float64   `json:"watch_to_exec_p50_ms"`
	WatchExecP99Ms   float64   `json:"watch_to_exec_p99_ms"`
	Windows          int       `json:"windows"`
	FirstSeen        time.Time `json:"first_seen"`
	LastSeen         time.Time `json:"last_seen"`
	Clients          []string  `json:"clients,omitempty"`
}

func (g *agg) row(by string) Row {
	c := &g.counts
	r := Row{
		Transactions: c.Transactions, Commits: c.Commits, Aborts: c.Aborts, ExecAborts: c.ExecAborts,
		ExecErrors: c.ExecErrors, GivenUp: c.GivenUp, Stale: c.Stale, CASFailed: c.CASFailed,
		Conflicts: c.Aborts + c.ExecAborts + c.Stale + c.CASFailed,
		Retries:   c.Retries, RetriesMax: c.RetriesMax, ChainsGivenUp: c.ChainsGivenUp,
		WatchExecCount: c.WatchExecCount, WatchExecP50Ms: c.WatchExecP50Ms, WatchExecP99Ms: c.WatchExecP99Ms,
		Windows: g.windows, FirstSeen: g.first, LastSeen: g.last,
	}
	switch by {
	case "pattern":
		r.Pattern = g.name
	case "key":
		r.Key, r.Pattern = g.name, g.pattern
	case "client":
		r.Client = g.name
	}
	if c.Transactions > 0 {
		r.AbortRatio = float64(c.Aborts) / float64(c.Transactions)
	}
	if c.Commits > 0 {
		r.RetriesPerCommit = float64(c.CommitRetries) / float64(c.Commits)
	}
	if len(g.hist) > 0 {
		bs := make([]contention.HistBucket, 0, len(g.hist))
		for u, n := range g.hist {
			bs = append(bs, contention.HistBucket{UpperUs: u, Count: n})
		}
		r.WatchExecP50Ms = contention.QuantileMs(bs, 0.50)
		r.WatchExecP99Ms = contention.QuantileMs(bs, 0.99)
	}
	for cl := range g.clients {
		r.Clients = append(r.Clients, cl)
	}
	sort.Strings(r.Clients)
	return r
}

// Rows returns the ranked rows: most conflicts first, then most aborts,
// then most transactions, then by name; cut to Options.Top.
func (a *Aggregator) Rows() []Row {
	out := make([]Row, 0, len(a.rows))
	for _, g := range a.rows {
		out = append(out, g.row(a.opts.By))
	}
	sort.Slice(out, func(i, j int) bool {
		x, y := out[i], out[j]
		if x.Conflicts != y.Conflicts {
			return x.Conflicts > y.Conflicts
		}
		if x.Aborts != y.Aborts {
			return x.Aborts > y.Aborts
		}
		if x.Transactions != y.Transactions {
			return x.Transactions > y.Transactions
		}
		return x.name() < y.name()
	})
	if a.opts.Top > 0 && len(out) > a.opts.Top {
		out = out[:a.opts.Top]
	}
	return out
}

// name is the row's grouping value (key rows also carry their pattern).
func (r *Row) name() string {
	switch {
	case r.Key != "":
		return r.Key
	case r.Client != "":
		return r.Client
	}
	return r.Pattern
}

// Totals are the window summaries added up: exact, including keys that
// were never hot enough to get a row of their own.
func (a *Aggregator) Totals() Row {
	t := a.total.row("")
	t.Windows = len(a.windows)
	return t
}

// Write renders the report in the chosen format.
func (a *Aggregator) Write(w io.Writer) error {
	rows := a.Rows()
	switch a.opts.Format {
	case "json":
		return writeJSON(w, rows)
	case "csv":
		return writeCSV(w, rows, a.opts.By)
	case "html":
		return a.writeHTML(w, rows)
	default:
		return a.writeTable(w, rows)
	}
}

// groupField is the grouping column's name.
func groupField(by string) string {
	return strings.ToLower(by)
}
