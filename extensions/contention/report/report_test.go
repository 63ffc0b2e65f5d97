package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/exproxy/exproxy/extensions/contention"
	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/proxy"
)

func ev(name, reply string, args ...string) *proxy.Event {
	e := &proxy.Event{Name: name, Reply: []byte(reply)}
	if reply != "" {
		e.Kind = reply[0]
	}
	for _, a := range args {
		e.Args = append(e.Args, []byte(a))
	}
	return e
}

// trackerLog runs a real Tracker through three windows and returns what
// it logged, with the windows' ends as logged.
//
//	window 1: api aborts order:1:lock twice then commits (2 retries);
//	          worker commits order:2:lock once after 10ms
//	window 2: worker aborts order:3:lock once and gives the chain up;
//	          api gets one stale EXSET on acct:9
//	window 3: api commits order:1:lock
//
// instance, when given, names the proxy in every event.
func trackerLog(t *testing.T, instance ...string) (log string, bounds []time.Time) {
	t.Helper()
	buf := &proxytest.SyncBuffer{}
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	cfg := contention.DefaultConfig()
	cfg.Window = time.Hour // windows end by Flush and Close only
	// Attribution has tests of its own (invalidator_test.go); here it
	// would make the windows' numbers depend on timing.
	cfg.Attribution = false
	tr, err := contention.New(cfg, contention.Deps{Logger: zap.New(zapcore.NewCore(enc, buf, zap.InfoLevel)), Instance: first(instance)})
	if err != nil {
		t.Fatal(err)
	}
	api := tr.Open(&proxy.SessionInfo{ID: 1, Addr: "10.0.0.1:4000", Name: "api", User: "default", Proto: 3})
	worker := tr.Open(&proxy.SessionInfo{ID: 2, Addr: "10.0.0.2:4000", User: "default", Proto: 2})
	base := time.Now()
	tx := func(s proxy.SessionObserver, key, reply string, d time.Duration) {
		w := ev("watch", "+OK\r\n", key)
		w.Sent = base
		x := ev("exec", reply)
		x.Done = base.Add(d)
		s.Observe(w)
		s.Observe(ev("multi", "+OK\r\n"))
		s.Observe(x)
	}
	flush := func() {
		time.Sleep(2 * time.Millisecond) // distinct window timestamps, not a timing assertion
		tr.Flush()
	}
	tx(api, "order:1:lock", "*-1\r\n", time.Millisecond)
	tx(api, "order:1:lock", "_\r\n", time.Millisecond)
	tx(api, "order:1:lock", "*1\r\n+OK\r\n", 2*time.Millisecond)
	tx(worker, "order:2:lock", "*1\r\n:1\r\n", 10*time.Millisecond)
	flush()
	tx(worker, "order:3:lock", "*-1\r\n", 100*time.Millisecond)
	worker.Observe(ev("unwatch", "+OK\r\n"))
	worker.Close()
	stale := ev("exset", "-ERR update version is stale\r\n", "acct:9", "v", "VER", "1")
	stale.Outcome = proxy.Stale // what exstring reports for that reply
	api.Observe(stale)
	flush()
	tx(api, "order:1:lock", "*1\r\n+OK\r\n", time.Millisecond)
	api.Close()
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	log = buf.String()
	for _, l := range strings.Split(log, "\n") {
		var w struct {
			Msg string    `json:"msg"`
			End time.Time `json:"window_end"`
		}
		if json.Unmarshal([]byte(l), &w) == nil && w.Msg == contention.MsgWindow {
			bounds = append(bounds, w.End)
		}
	}
	if len(bounds) != 3 {
		t.Fatalf("want 3 windows, got %d:\n%s", len(bounds), log)
	}
	return log, bounds
}

func run(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

func jsonRows(t *testing.T, out string) []Row {
	t.Helper()
	var rows []Row
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("report JSON does not parse: %v\n%s", err, out)
	}
	return rows
}

func TestReportNumbers(t *testing.T) {
	log, _ := trackerLog(t)
	// Lines the report must skip: other log output, garbage, abort events.
	noise := "{\"level\":\"info\",\"msg\":\"proxy listening\",\"addr\":\"127.0.0.1:6380\"}\nnot json at all\n{\"msg\":\"contention.window\",broken\n"
	out, stderr, code := run(t, noise+log, "--format", "json", "--by", "pattern")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rows := jsonRows(t, out)
	if len(rows) != 2 || rows[0].Pattern != "order:*:lock" || rows[1].Pattern != "acct:*" {
		t.Fatalf("rows: %+v", rows)
	}
	p := rows[0]
	// Window 1 logs order:*:lock (2 aborts, 2 commits with 2 retries on one),
	// window 2 logs it (1 abort), window 3 has no conflict and is not
	// logged at the default threshold.
	// 100ms lands in the bucket [98304µs, 114688µs).
	want := Row{Pattern: "order:*:lock", Transactions: 5, Commits: 2, Aborts: 3, Conflicts: 3,
		AbortRatio: 0.6, ConflictRatio: 0.6, Retries: 2, RetriesPerCommit: 1, RetriesMax: 2, ChainsGivenUp: 1, Windows: 2,
		WatchExecCount: 5, WatchExecP50Ms: 2.048, WatchExecP99Ms: 114.688, Clients: []string{"10.0.0.2", "api"}}
	got := p
	got.FirstSeen, got.LastSeen, got.FirstSeenUTC, got.LastSeenUTC = time.Time{}, time.Time{}, "", ""
	if !reflect.DeepEqual(got, want) {
		t.Errorf("pattern row\n got %+v\nwant %+v", got, want)
	}
	if !p.FirstSeen.Before(p.LastSeen) || p.FirstSeenUTC != p.FirstSeen.UTC().Format(time.DateTime) || p.LastSeenUTC != p.LastSeen.UTC().Format(time.DateTime) {
		t.Errorf("first/last seen: %v %v %q %q", p.FirstSeen, p.LastSeen, p.FirstSeenUTC, p.LastSeenUTC)
	}
	if rows[1].Stale != 1 || rows[1].Transactions != 0 || rows[1].Clients[0] != "api" {
		t.Errorf("acct row: %+v", rows[1])
	}

	out, _, _ = run(t, log, "--format", "json", "--by", "key")
	keys := jsonRows(t, out)
	var names []string
	for _, r := range keys {
		names = append(names, r.Key)
	}
	if !reflect.DeepEqual(names, []string{"order:1:lock", "order:3:lock", "acct:9"}) || keys[0].Pattern != "order:*:lock" ||
		keys[0].Aborts != 2 || keys[0].RetriesMax != 2 {
		t.Errorf("key rows: %v %+v", names, keys[0])
	}

	out, _, _ = run(t, log, "--format", "json", "--by", "client", "--top", "1")
	clients := jsonRows(t, out)
	if len(clients) != 1 || clients[0].Client != "api" || clients[0].Aborts != 2 || clients[0].Stale != 1 {
		t.Errorf("client rows: %+v", clients)
	}

	// The totals (from window summaries) include the quiet third window.
	agg := NewAggregator(Options{})
	for _, l := range strings.SplitAfter(log, "\n") {
		agg.line([]byte(l), "test")
	}
	tot := agg.Totals()
	if tot.Windows != 3 || tot.Transactions != 6 || tot.Commits != 3 || tot.Aborts != 3 || tot.Stale != 1 {
		t.Errorf("totals: %+v", tot)
	}
}

func TestReportFilesGzipAndRange(t *testing.T) {
	log, bounds := trackerLog(t)
	lines := strings.SplitAfter(log, "\n")
	dir := t.TempDir()
	// Rotated logs: the older half gzipped, the newer half plain.
	half := len(lines) / 2
	old := filepath.Join(dir, "exproxy.log.1.gz")
	cur := filepath.Join(dir, "exproxy.log")
	write(t, old, gz(t, strings.Join(lines[:half], "")))
	write(t, cur, []byte(strings.Join(lines[half:], "")))

	whole, _, _ := run(t, log, "--format", "json", "--by", "key")
	split, stderr, code := run(t, "", "--format", "json", "--by", "key", old, cur)
	if code != 0 || whole != split {
		t.Errorf("gz + plain files differ from one stream (exit %d %s):\n%s\nvs\n%s", code, stderr, split, whole)
	}
	// stdin as "-" among files: lines that name their proxy merge with
	// the file's, whatever the sources are called.
	ilog, _ := trackerLog(t, "proxy-1")
	ilines := strings.SplitAfter(ilog, "\n")
	ihalf := len(ilines) / 2
	iold := filepath.Join(dir, "proxy-1.log.1.gz")
	write(t, iold, gz(t, strings.Join(ilines[:ihalf], "")))
	iwhole, _, _ := run(t, ilog, "--format", "json", "--by", "key")
	mixed, _, _ := run(t, strings.Join(ilines[ihalf:], ""), "--format", "json", "--by", "key", iold, "-")
	if mixed != iwhole || strings.Contains(mixed, "instances") {
		t.Errorf("file + stdin differ from one stream:\n%s\nvs\n%s", mixed, iwhole)
	}

	// --since the end of window 1 keeps windows 2 and 3.
	out, _, _ := run(t, log, "--format", "json", "--since", bounds[0].Format(time.RFC3339Nano))
	rows := jsonRows(t, out)
	if len(rows) != 2 || rows[0].Aborts != 1 || rows[0].Transactions != 1 {
		t.Errorf("since: %+v", rows)
	}
	// --until the end of window 1 keeps window 1 only.
	out, _, _ = run(t, log, "--format", "json", "--until", bounds[0].Format(time.RFC3339Nano))
	rows = jsonRows(t, out)
	if len(rows) != 1 || rows[0].Aborts != 2 || rows[0].Transactions != 4 {
		t.Errorf("until: %+v", rows)
	}
	// A duration means "that long ago": everything here is recent.
	out, _, _ = run(t, log, "--format", "json", "--since", "1h")
	if len(jsonRows(t, out)) != 2 {
		t.Errorf("since 1h: %s", out)
	}
	defer func(f func() time.Time) { now = f }(now)
	now = func() time.Time { return bounds[2].Add(48 * time.Hour) }
	out, _, _ = run(t, log, "--format", "json", "--since", "1h")
	if strings.TrimSpace(out) != "[]" {
		t.Errorf("since 1h, two days later: %s", out)
	}
}

func TestReportCSVAndTable(t *testing.T) {
	log, _ := trackerLog(t)
	out, _, code := run(t, log, "--format", "csv", "--by", "key")
	if code != 0 {
		t.Fatal(code)
	}
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("csv does not parse back: %v", err)
	}
	if len(recs) != 4 || recs[0][0] != "key" || recs[0][1] != "pattern" || recs[1][0] != "order:1:lock" {
		t.Fatalf("csv: %v", recs)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	if recs[1][col["aborts"]] != "2" || recs[1][col["retries_per_commit"]] != "2" || recs[3][col["stale"]] != "1" {
		t.Errorf("csv values: %v", recs[1:])
	}

	out, _, _ = run(t, log)
	if !strings.Contains(out, "3 windows") || !strings.Contains(out, "order:*:lock") || !strings.Contains(out, "60.0%") {
		t.Errorf("table:\n%s", out)
	}
	out, _, _ = run(t, "")
	if !strings.Contains(out, "no contention windows") {
		t.Errorf("empty input: %s", out)
	}
}

func TestReportHTML(t *testing.T) {
	log, _ := trackerLog(t)
	// A key name that must be escaped in both the SVG and the table.
	log = strings.ReplaceAll(log, "acct:9", "acct:<b>&9")
	out, _, code := run(t, log, "--format", "html", "--by", "key")
	if code != 0 {
		t.Fatal(code)
	}
	for _, want := range []string{"<svg", `aria-label="conflicts by row and kind"`, "order:1:lock", "order:3:lock", "acct:&lt;b&gt;&amp;9", "</html>"} {
		if !strings.Contains(out, want) {
			t.Errorf("html lacks %q", want)
		}
	}
	for _, bad := range []string{"acct:<b>", "<script", "src=", "<link", "@import"} {
		if strings.Contains(out, bad) {
			t.Errorf("html contains %q (unescaped or external)", bad)
		}
	}
	if os.Getenv("CONTENTION_HTML_OUT") != "" {
		os.WriteFile(os.Getenv("CONTENTION_HTML_OUT"), []byte(out), 0o644)
	}
}

func TestMainErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--by", "db"}, 2, "--by"},
		{[]string{"--format", "xml"}, 2, "--format"},
		{[]string{"--since", "yesterday"}, 2, "--since"},
		{[]string{"--top", "-1"}, 2, "--top"},
		{[]string{"--since", "2026-11-22T02:00:00Z", "--until", "2026-11-22T01:00:00Z"}, 2, "--until"},
		{[]string{"/nonexistent/exproxy.log"}, 1, "no such file"},
		{[]string{"--nope"}, 2, "flag provided but not defined"},
	}
	for _, tc := range tests {
		_, stderr, code := run(t, "", tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d containing %q", tc.args, code, stderr, tc.code, tc.msg)
		}
	}
}

// first is the first of ss, or "".
func first(ss []string) string {
	if len(ss) == 0 {
		return ""
	}
	return ss[0]
}
