package report

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/exproxy/exproxy/extensions/contention"
)

// window is what one tracker logs for one window: the summary and its
// pattern, key and client rows.
type window struct {
	instance string // "" = a proxy from before the instance field
	start    time.Time
	length   time.Duration
	patterns []contention.Row
	keys     []contention.Row
	clients  []contention.Row
	total    contention.Row
}

// fleetBase is the start of the fleet's first window.
var fleetBase = time.Date(2026, 11, 22, 0, 16, 30, 0, time.UTC)

// encode writes the window as the tracker does: zap's production JSON
// encoder, contention.Row's own field encoding, the instance field added
// by the logger.
func (w *window) encode() string {
	var buf bytes.Buffer
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	log := zap.New(zapcore.NewCore(enc, zapcore.AddSync(&buf), zap.InfoLevel))
	if w.instance != "" {
		log = log.With(zap.String("instance", w.instance))
	}
	ws := zap.String("window_start", w.start.Format(time.RFC3339Nano))
	we := zap.String("window_end", w.start.Add(w.length).Format(time.RFC3339Nano))
	log.Info(contention.MsgWindow, ws, we, zap.Int64("window_ms", w.length.Milliseconds()), zap.Bool("final", false), zap.Inline(w.total))
	for _, set := range []struct {
		msg  string
		rows []contention.Row
	}{{contention.MsgKey, w.keys}, {contention.MsgPattern, w.patterns}, {contention.MsgClient, w.clients}} {
		for i, r := range set.rows {
			r.Rank = i + 1
			log.Info(set.msg, ws, we, zap.Inline(r))
		}
	}
	return buf.String()
}

func row(tx, commits, aborts, stale, cas int64) contention.Row {
	r := contention.Row{Transactions: tx, Commits: commits, Aborts: aborts, Stale: stale, CASFailed: cas}
	r.Conflicts = aborts + stale + cas
	if tx > 0 {
		r.AbortRatio = float64(aborts) / float64(tx)
	}
	return r
}

// fleet is three sidecars over five minutes of 10 s windows:
//
//	checkout-7f9c: order:1:lock, aborts rising to a spike at 00:18:00, by
//	               its application on 127.0.0.1
//	billing-5d2a:  order:N:lock, a few aborts, by a client named "billing"
//	(no instance): acct:*:balance stale EXCAS and failed CAS, on 127.0.0.1
func fleet() map[string][]window {
	out := map[string][]window{}
	for i := 0; i < 30; i++ {
		start := fleetBase.Add(time.Duration(i) * 10 * time.Second)
		aborts := int64(2 + i%3)
		if i == 9 {
			aborts = 50 // 00:18:00
		}
		c := row(100, 100-aborts, aborts, 0, 0)
		ck := c
		ck.Key, ck.Pattern, ck.Clients = "order:1:lock", "order:*:lock", []string{"127.0.0.1"}
		cp := c
		cp.Pattern, cp.Clients = "order:*:lock", []string{"127.0.0.1"}
		cc := c
		cc.Client = "127.0.0.1"
		out["checkout-7f9c"] = append(out["checkout-7f9c"], window{instance: "checkout-7f9c", start: start.Add(37 * time.Millisecond), length: 10 * time.Second,
			total: c, keys: []contention.Row{ck}, patterns: []contention.Row{cp}, clients: []contention.Row{cc}})

		if i%2 == 0 {
			b := row(40, 39, 1, 0, 0)
			bk := b
			bk.Key, bk.Pattern, bk.Clients = fmt.Sprintf("order:%d:lock", 100+i), "order:*:lock", []string{"billing"}
			bp := b
			bp.Pattern, bp.Clients = "order:*:lock", []string{"billing"}
			bc := b
			bc.Client = "billing"
			out["billing-5d2a"] = append(out["billing-5d2a"], window{instance: "billing-5d2a", start: start.Add(512 * time.Millisecond), length: 10 * time.Second,
				total: b, keys: []contention.Row{bk}, patterns: []contention.Row{bp}, clients: []contention.Row{bc}})
		}

		l := row(0, 0, 0, 7, 2)
		lk := l
		lk.Key, lk.Pattern, lk.Clients = "acct:550e8400-e29b-41d4-a716-446655440000:balance", "acct:*:balance", []string{"127.0.0.1"}
		lp := l
		lp.Pattern, lp.Clients = "acct:*:balance", []string{"127.0.0.1"}
		lc := l
		lc.Client = "127.0.0.1"
		out["legacy"] = append(out["legacy"], window{start: start.Add(903 * time.Millisecond), length: 10 * time.Second,
			total: l, keys: []contention.Row{lk}, patterns: []contention.Row{lp}, clients: []contention.Row{lc}})
	}
	return out
}

func encodeAll(ws []window) string {
	var b strings.Builder
	for i := range ws {
		b.WriteString(ws[i].encode())
	}
	return b.String()
}

func sumTotals(ws []window) (tx, aborts, stale, cas int64) {
	for _, w := range ws {
		tx += w.total.Transactions
		aborts += w.total.Aborts
		stale += w.total.Stale
		cas += w.total.CASFailed
	}
	return
}

func gz(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fleetDir lays the fleet's logs out as a log collector would: rotated
// and gzipped, nested, a symlink to a file already there (Kubernetes'
// /var/log/containers), a hidden directory holding a copy (which must not
// count), and a binary file with one endless line.
func fleetDir(t *testing.T) (string, map[string][]window) {
	f := fleet()
	dir := t.TempDir()
	ck := f["checkout-7f9c"]
	write(t, filepath.Join(dir, "checkout", "exproxy.log.1.gz"), gz(t, encodeAll(ck[:12])))
	write(t, filepath.Join(dir, "checkout", "exproxy.log"), []byte("{\"level\":\"info\",\"msg\":\"exproxy started\"}\n"+encodeAll(ck[12:])))
	write(t, filepath.Join(dir, "billing-5d2a.log.gz"), gz(t, encodeAll(f["billing-5d2a"])))
	write(t, filepath.Join(dir, "legacy", "exproxy.log.20261122"), []byte(encodeAll(f["legacy"])))
	write(t, filepath.Join(dir, ".cache", "copy.log"), []byte(encodeAll(f["legacy"])))
	write(t, filepath.Join(dir, "core.bin"), append(bytes.Repeat([]byte("contention.{"), 200_000), 0, 1, 2))
	if err := os.Symlink(filepath.Join(dir, "checkout", "exproxy.log"), filepath.Join(dir, "current.log")); err != nil {
		t.Fatal(err)
	}
	return dir, f
}

// TestMergeSidecars reads a directory holding three sidecars' logs and
// checks that each is named, counted once, and summed exactly.
func TestMergeSidecars(t *testing.T) {
	dir, f := fleetDir(t)
	out, stderr, code := run(t, "", "--format", "json", "--by", "instance", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rows := jsonRows(t, out)
	got := map[string]Row{}
	for _, r := range rows {
		got[r.Instance] = r
	}
	// The sidecar without an instance field is named by its file, the
	// rotation suffix dropped.
	for name, specs := range map[string][]window{"checkout-7f9c": f["checkout-7f9c"], "billing-5d2a": f["billing-5d2a"], "legacy/exproxy.log": f["legacy"]} {
		r, ok := got[name]
		if !ok {
			t.Errorf("no row for sidecar %q in %v", name, out)
			continue
		}
		tx, aborts, stale, cas := sumTotals(specs)
		if r.Windows != len(specs) || r.Transactions != tx || r.Aborts != aborts || r.Stale != stale || r.CASFailed != cas {
			t.Errorf("%s: windows %d tx %d aborts %d stale %d cas %d; want %d %d %d %d %d",
				name, r.Windows, r.Transactions, r.Aborts, r.Stale, r.CASFailed, len(specs), tx, aborts, stale, cas)
		}
	}
	if len(rows) != 3 {
		t.Errorf("%d sidecars, want 3: %s", len(rows), out)
	}

	// By pattern: order:*:lock adds both sidecars' rows and names both.
	out, _, _ = run(t, "", "--format", "json", dir)
	pats := jsonRows(t, out)
	want := map[string]struct {
		aborts, stale int64
		instances     []string
	}{
		// checkout: 2, 3, 4, ... with 50 in place of one 2; billing: 15 × 1.
		"order:*:lock":   {aborts: 9*10 - 2 + 50 + 15, instances: []string{"billing-5d2a", "checkout-7f9c"}},
		"acct:*:balance": {stale: 7 * 30, instances: []string{"legacy/exproxy.log"}},
	}
	for _, p := range pats {
		w, ok := want[p.Pattern]
		if !ok || p.Aborts != w.aborts || p.Stale != w.stale || !reflect.DeepEqual(p.Instances, w.instances) {
			t.Errorf("pattern row %s: aborts %d stale %d instances %v; want %+v", p.Pattern, p.Aborts, p.Stale, p.Instances, w)
		}
	}

	// By client: 127.0.0.1 is a different application on each sidecar;
	// "billing" names itself.
	out, _, _ = run(t, "", "--format", "json", "--by", "client", dir)
	var clients []string
	for _, r := range jsonRows(t, out) {
		clients = append(clients, r.label())
	}
	sort.Strings(clients)
	if want := []string{"127.0.0.1 (checkout-7f9c)", "127.0.0.1 (legacy/exproxy.log)", "billing"}; !reflect.DeepEqual(clients, want) {
		t.Errorf("clients %v, want %v", clients, want)
	}

	// The table names the sidecars in its head.
	out, _, _ = run(t, "", dir)
	if !strings.Contains(out, "75 windows, 2026-11-22 00:16:30 – 00:21:30 UTC (5m01s), 3 sidecars") {
		t.Errorf("table head:\n%s", out)
	}

	// The same files given one by one (the symlink and the copy left
	// out) and a directory give the same report.
	files := []string{
		filepath.Join(dir, "checkout", "exproxy.log.1.gz"), filepath.Join(dir, "checkout", "exproxy.log"),
		filepath.Join(dir, "billing-5d2a.log.gz"), filepath.Join(dir, "legacy", "exproxy.log.20261122"),
	}
	whole, _, _ := run(t, "", append([]string{"--format", "json", "--by", "key"}, dir)...)
	each, _, _ := run(t, "", append([]string{"--format", "json", "--by", "key"}, files...)...)
	// Given one by one, the legacy file is named by its base name.
	each = strings.ReplaceAll(each, `"exproxy.log"`, `"legacy/exproxy.log"`)
	each = strings.ReplaceAll(each, `(exproxy.log)`, `(legacy/exproxy.log)`)
	if whole != each {
		t.Errorf("a directory and its files differ:\n%s\nvs\n%s", whole, each)
	}
}

// TestMergeShipperStdin: a log shipper's stream on stdin, each line a
// Docker json-file or Fluent Bit envelope around the proxy's line, names
// its sidecar by the pod name the shipper added when the line has none,
// and merges with files.
func TestMergeShipperStdin(t *testing.T) {
	f := fleet()
	var stdin strings.Builder
	for _, w := range f["legacy"] {
		for _, l := range strings.SplitAfter(w.encode(), "\n") {
			if l == "" {
				continue
			}
			env, _ := json.Marshal(map[string]any{
				"log": l, "stream": "stderr", "time": "2026-11-22T00:16:31.000Z",
				"kubernetes": map[string]any{"pod_name": "wallet-6c8d", "namespace_name": "prod"},
			})
			stdin.WriteString(string(env) + "\n")
		}
	}
	// And a line shipped as Vector does, with the identity in "host".
	for _, l := range strings.SplitAfter(f["billing-5d2a"][0].encode(), "\n") {
		if l != "" {
			env, _ := json.Marshal(map[string]any{"message": strings.Replace(l, `"instance":"billing-5d2a",`, "", 1), "host": "node-3"})
			stdin.WriteString(string(env) + "\n")
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "checkout.log")
	write(t, file, []byte(encodeAll(f["checkout-7f9c"])))
	out, stderr, code := run(t, stdin.String(), "--format", "json", "--by", "instance", file, "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got := map[string]int{}
	for _, r := range jsonRows(t, out) {
		got[r.Instance] = r.Windows
	}
	if want := map[string]int{"checkout-7f9c": 30, "wallet-6c8d": 30, "node-3": 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("sidecars %v, want %v", got, want)
	}
}

// TestSingleWindowChart: with one window there is no time series, and the
// page must still show where the conflicts are, of every kind, instead of
// an empty frame.
func TestSingleWindowChart(t *testing.T) {
	a := row(20, 15, 5, 3, 2)
	a.Pattern = "order:*:lock"
	b := row(0, 0, 0, 4, 0)
	b.Pattern = "acct:*"
	tot := row(20, 15, 5, 7, 2)
	win := window{instance: "solo", start: fleetBase, length: 2 * time.Second, total: tot, patterns: []contention.Row{a, b}}
	out, _, code := run(t, win.encode(), "--format", "html")
	if code != 0 {
		t.Fatal(code)
	}
	for _, want := range []string{
		`aria-label="conflicts by row and kind"`,
		"<title>WATCH aborts: 5</title>", "<title>stale versioned writes: 3</title>", "<title>failed CAS/CAD: 2</title>",
		"<title>stale versioned writes: 4</title>",
		"10 · 25.0% of 20 tx aborted",
		"no time series to draw",
		"2026-11-22 00:16:30 – 00:16:32 UTC (2s) · 1 window",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("single-window page lacks %q", want)
		}
	}
	if strings.Contains(out, `aria-label="conflicts over time"`) {
		t.Error("single-window page draws an empty time chart")
	}
	// The bars are in rank order and as long as the counts say: a's
	// segments 5:3:2, b's bar (4 conflicts) 40% of a's (10).
	widths := regexp.MustCompile(`<rect x="[0-9.]+" y="[0-9.]+" width="([0-9.]+)" height="18" fill="(#[0-9a-f]+)">`).FindAllStringSubmatch(out, -1)
	if len(widths) != 4 {
		t.Fatalf("want 4 bar segments, got %d", len(widths))
	}
	w := make([]float64, 4)
	for i, m := range widths {
		fmt.Sscan(m[1], &w[i])
	}
	sum := w[0] + w[1] + w[2]
	near := func(got, want float64) bool { return got > want-1 && got < want+1 }
	if sum < 300 || !near(w[0], sum/2) || !near(w[1], sum*0.3) || !near(w[3], sum*0.4) ||
		widths[0][2] != "#d62728" || widths[1][2] != "#ff7f0e" || widths[2][2] != "#9467bd" || widths[3][2] != "#ff7f0e" {
		t.Errorf("bar segments %v", widths)
	}
}

// TestTimeChart: over five minutes of 10 s windows from three sidecars the
// chart bins by the window length, stacks all conflicts by kind, draws a
// sparkline per top row on its own scale, and labels its axis in clock
// time.
func TestTimeChart(t *testing.T) {
	dir, _ := fleetDir(t)
	out, _, code := run(t, "", "--format", "html", dir)
	if code != 0 {
		t.Fatal(code)
	}
	for _, want := range []string{
		`aria-label="conflicts over time"`, "conflicts per 10s", "peak 50 per 10s", "peak 9 per 10s",
		">00:17<", ">00:18<", ">00:21<",
		// The spike: checkout's 50 aborts (billing logs only every other
		// window, not this one), legacy's 7 stale and 2 failed CAS.
		"<title>2026-11-22 00:18:00: 59 conflicts (50 WATCH aborts, 7 stale versioned writes, 2 failed CAS/CAD)</title>",
		"<title>order:*:lock, 2026-11-22 00:18:00: 50</title>",
		"<title>acct:*:balance, 2026-11-22 00:18:00: 9</title>",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if n := strings.Count(out, "<polyline"); n != 2 {
		t.Errorf("%d sparklines, want one per row with conflicts (2)", n)
	}
	// The sidecars get a table of their own.
	for _, want := range []string{"<h2>Sidecars</h2>", ">checkout-7f9c<", ">legacy/exproxy.log<"} {
		if !strings.Contains(out, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// rfc3339 timestamps with fractions are for scripts, never for people.
var machineTime = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z`)

func TestHumanTimestamps(t *testing.T) {
	dir, _ := fleetDir(t)
	table, _, _ := run(t, "", dir)
	html, _, _ := run(t, "", "--format", "html", dir)
	for name, out := range map[string]string{"table": table, "html": html} {
		if m := machineTime.FindString(out); m != "" {
			t.Errorf("%s shows %s", name, m)
		}
		if !strings.Contains(out, "2026-11-22 00:16:30 – 00:21:30 UTC") {
			t.Errorf("%s lacks the human time range", name)
		}
	}
	if !strings.Contains(table, "00:16:30–00:21:30") {
		t.Errorf("table rows lack a human seen range:\n%s", table)
	}
	// JSON and CSV keep the exact instants and add the human ones.
	js, _, _ := run(t, "", "--format", "json", dir)
	rows := jsonRows(t, js)
	if len(rows) != 2 || rows[1].Pattern != "order:*:lock" {
		t.Fatalf("rows %+v", rows)
	}
	r := rows[1]
	if !r.FirstSeen.Equal(fleetBase.Add(37*time.Millisecond)) || r.FirstSeenUTC != "2026-11-22 00:16:30" || r.LastSeenUTC != "2026-11-22 00:21:30" {
		t.Errorf("json times: %v %q %q", r.FirstSeen, r.FirstSeenUTC, r.LastSeenUTC)
	}
	csvOut, _, _ := run(t, "", "--format", "csv", dir)
	if !strings.Contains(csvOut, ",2026-11-22T00:16:30.037Z,") || !strings.Contains(csvOut, ",2026-11-22 00:16:30,2026-11-22 00:21:30,") {
		t.Errorf("csv times:\n%s", csvOut)
	}
}
