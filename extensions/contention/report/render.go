package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

func writeJSON(w io.Writer, rows []Row) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rows); err != nil {
		return fmt.Errorf("json: %w", err)
	}
	return nil
}

// csvHeader lists the CSV columns after the grouping column.
var csvHeader = []string{
	"transactions", "commits", "aborts", "execaborts", "exec_errors", "given_up", "stale", "cas_failed",
	"conflicts", "abort_ratio", "retries", "retries_per_commit", "retries_max", "chains_given_up",
	"watch_to_exec_count", "watch_to_exec_p50_ms", "watch_to_exec_p99_ms", "windows", "first_seen", "last_seen", "clients",
}

func csvRecord(r *Row) []string {
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	return []string{
		i(r.Transactions), i(r.Commits), i(r.Aborts), i(r.ExecAborts), i(r.ExecErrors), i(r.GivenUp), i(r.Stale), i(r.CASFailed),
		i(r.Conflicts), f(r.AbortRatio), i(r.Retries), f(r.RetriesPerCommit), i(r.RetriesMax), i(r.ChainsGivenUp),
		strconv.FormatUint(r.WatchExecCount, 10), f(r.WatchExecP50Ms), f(r.WatchExecP99Ms), strconv.Itoa(r.Windows),
		timeStr(r.FirstSeen), timeStr(r.LastSeen), strings.Join(r.Clients, " "),
	}
}

func timeStr(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func writeCSV(w io.Writer, rows []Row, by string) error {
	cw := csv.NewWriter(w)
	head := []string{groupField(by)}
	if by == "key" {
		head = append(head, "pattern")
	}
	if err := cw.Write(append(head, csvHeader...)); err != nil {
		return fmt.Errorf("csv: %w", err)
	}
	for i := range rows {
		r := &rows[i]
		rec := []string{r.name()}
		if by == "key" {
			rec = []string{r.Key, r.Pattern}
		}
		if err := cw.Write(append(rec, csvRecord(r)...)); err != nil {
			return fmt.Errorf("csv: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("csv: %w", err)
	}
	return nil
}

func pct(v float64) string { return strconv.FormatFloat(v*100, 'f', 1, 64) + "%" }

func ms(v float64) string {
	if v == 0 {
		return "-"
	}
	if v < 10 {
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

func (a *Aggregator) summary() string {
	t := a.Totals()
	if t.Windows == 0 {
		return "no contention windows in the input (is the log JSON, and is contention tracking enabled?)"
	}
	return fmt.Sprintf("%d windows, %s to %s: %d transactions, %d commits, %d aborts (%s), %d execaborts, %d stale, %d cas_failed, %.2f retries/commit, WATCH→EXEC p99 %s ms",
		t.Windows, timeStr(t.FirstSeen), timeStr(t.LastSeen), t.Transactions, t.Commits, t.Aborts, pct(t.AbortRatio),
		t.ExecAborts, t.Stale, t.CASFailed, t.RetriesPerCommit, ms(t.WatchExecP99Ms))
}

func (a *Aggregator) writeTable(w io.Writer, rows []Row) error {
	fmt.Fprintln(w, a.summary())
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "no hot "+a.opts.By+"s")
		return err
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\tTX\tCOMMITS\tABORTS\tABORT%%\tEXECABORT\tSTALE\tCAS_FAIL\tRETRY/COMMIT\tRETRY_MAX\tCHAINS_GIVEN_UP\tP50_MS\tP99_MS\tFIRST_SEEN\tLAST_SEEN\t\n", strings.ToUpper(a.opts.By))
	for i := range rows {
		r := &rows[i]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%d\t%d\t%d\t%.2f\t%d\t%d\t%s\t%s\t%s\t%s\t\n",
			r.name(), r.Transactions, r.Commits, r.Aborts, pct(r.AbortRatio), r.ExecAborts, r.Stale, r.CASFailed,
			r.RetriesPerCommit, r.RetriesMax, r.ChainsGivenUp, ms(r.WatchExecP50Ms), ms(r.WatchExecP99Ms),
			r.FirstSeen.UTC().Format(time.DateTime), r.LastSeen.UTC().Format(time.DateTime))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("table: %w", err)
	}
	return nil
}

// chartSeries is how many of the top rows get a line in the HTML chart.
const chartSeries = 6

var palette = []string{"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}

// chartSVG draws aborts over time for the top rows as an inline SVG: one
// polyline per row over at most 120 time bins spanning all windows read.
func (a *Aggregator) chartSVG(rows []Row) template.HTML {
	t := a.Totals()
	if t.Windows == 0 || len(rows) == 0 {
		return ""
	}
	start, end := t.FirstSeen, t.LastSeen
	span := end.Sub(start)
	if span <= 0 {
		span = time.Second
	}
	bins := max(min(len(a.windows), 120), 1)
	// A window goes to the bin holding its middle, so windows of equal
	// length fall one per bin when there are few.
	binOf := func(ws time.Time, g *agg) int {
		mid := ws.Add(g.length[ws] / 2)
		b := int(float64(mid.Sub(start)) / float64(span) * float64(bins))
		return min(max(b, 0), bins-1)
	}
	n := min(len(rows), chartSeries)
	series := make([][]int64, n)
	var peak int64 = 1
	for i := 0; i < n; i++ {
		series[i] = make([]int64, bins)
		if g := a.rows[rows[i].name()]; g != nil {
			for ts, v := range g.series {
				series[i][binOf(ts, g)] += v
			}
		}
		for _, v := range series[i] {
			peak = max(peak, v)
		}
	}
	peak = niceCeil(peak)
	const W, H, L, R, T, B = 900.0, 320.0, 60.0, 20.0, 20.0, 50.0
	x := func(b int) float64 { return L + (W-L-R)*(float64(b)+0.5)/float64(bins) }
	y := func(v int64) float64 { return T + (H-T-B)*(1-float64(v)/float64(peak)) }
	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %g %g" width="%g" height="%g" role="img" aria-label="aborts over time">`, W, H+20*float64(n), W, H+20*float64(n))
	fmt.Fprintf(&s, `<rect x="0" y="0" width="%g" height="%g" fill="#fff"/>`, W, H+20*float64(n))
	// Axes, four horizontal grid lines with counts, and start/middle/end times.
	for i := 0; i <= 4; i++ {
		v := peak * int64(i) / 4
		yy := y(v)
		fmt.Fprintf(&s, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#ddd"/>`, L, yy, W-R, yy)
		fmt.Fprintf(&s, `<text x="%g" y="%.1f" font-size="11" text-anchor="end" fill="#555">%d</text>`, L-6, yy+4, v)
	}
	fmt.Fprintf(&s, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#333"/>`, L, H-B, W-R, H-B)
	fmt.Fprintf(&s, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#333"/>`, L, T, L, H-B)
	for _, f := range []float64{0, 0.5, 1} {
		ts := start.Add(time.Duration(float64(span) * f)).UTC().Format("2006-01-02 15:04:05")
		anchor := map[float64]string{0: "start", 0.5: "middle", 1: "end"}[f]
		fmt.Fprintf(&s, `<text x="%.1f" y="%g" font-size="11" text-anchor="%s" fill="#555">%s</text>`, L+(W-L-R)*f, H-B+16, anchor, template.HTMLEscapeString(ts))
	}
	fmt.Fprintf(&s, `<text x="14" y="%g" font-size="11" fill="#555" transform="rotate(-90 14 %g)" text-anchor="middle">aborts per bin</text>`, (H-B+T)/2, (H-B+T)/2)
	for i := 0; i < n; i++ {
		var pts []string
		for b, v := range series[i] {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(b), y(v)))
		}
		c := palette[i%len(palette)]
		fmt.Fprintf(&s, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, c, strings.Join(pts, " "))
		ly := H - B + 34 + 20*float64(i)
		fmt.Fprintf(&s, `<rect x="%g" y="%.1f" width="12" height="12" fill="%s"/>`, L, ly-10, c)
		fmt.Fprintf(&s, `<text x="%g" y="%.1f" font-size="12" fill="#222">%s (%d aborts)</text>`, L+18, ly, template.HTMLEscapeString(rows[i].name()), rows[i].Aborts)
	}
	s.WriteString(`</svg>`)
	return template.HTML(s.String()) // built here with every label escaped
}

// niceCeil rounds n up to 4 × (1, 2, 2.5 or 5 × 10^k), so the four grid
// lines of the chart fall on round numbers.
func niceCeil(n int64) int64 {
	step := float64(n) / 4
	mag := math.Pow(10, math.Floor(math.Log10(step)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= step {
			return int64(math.Ceil(m*mag)) * 4
		}
	}
	return n
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"pct": pct, "ms": ms, "ts": func(t time.Time) string { return t.UTC().Format(time.DateTime) },
	"join": func(s []string) string { return strings.Join(s, ", ") },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>exproxy contention report</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:20px;margin:0 0 4px}
p.summary{color:#444;margin:0 0 16px}
table{border-collapse:collapse;font-size:13px;margin-top:16px}
th,td{padding:4px 8px;border-bottom:1px solid #e5e5e5;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left;font-family:ui-monospace,monospace}
th{background:#f5f5f5}
tr:hover td{background:#fafafa}
.hot{color:#b00;font-weight:600}
</style></head><body>
<h1>exproxy contention report — by {{.By}}</h1>
<p class="summary">{{.Summary}}</p>
{{if .Chart}}<h2 style="font-size:16px">Aborts over time (top {{.ChartN}})</h2>
{{.Chart}}{{end}}
<table>
<thead><tr><th>{{.By}}</th><th>transactions</th><th>commits</th><th>aborts</th><th>abort ratio</th><th>execaborts</th><th>stale</th><th>cas_failed</th><th>retries/commit</th><th>retries max</th><th>chains given up</th><th>WATCH→EXEC p50 ms</th><th>p99 ms</th><th>first seen</th><th>last seen</th><th>clients</th></tr></thead>
<tbody>
{{range .Rows}}<tr><td>{{.Key}}{{.Pattern}}{{.Client}}</td><td>{{.Transactions}}</td><td>{{.Commits}}</td><td{{if gt .Aborts 0}} class="hot"{{end}}>{{.Aborts}}</td><td>{{pct .AbortRatio}}</td><td>{{.ExecAborts}}</td><td>{{.Stale}}</td><td>{{.CASFailed}}</td><td>{{printf "%.2f" .RetriesPerCommit}}</td><td>{{.RetriesMax}}</td><td>{{.ChainsGivenUp}}</td><td>{{ms .WatchExecP50Ms}}</td><td>{{ms .WatchExecP99Ms}}</td><td>{{ts .FirstSeen}}</td><td>{{ts .LastSeen}}</td><td style="text-align:left">{{join .Clients}}</td></tr>
{{else}}<tr><td colspan="16">no hot {{.By}}s in this range</td></tr>
{{end}}</tbody></table>
</body></html>
`))

func (a *Aggregator) writeHTML(w io.Writer, rows []Row) error {
	// Key rows carry their pattern too; show just the key in the first
	// column.
	shown := rows
	if a.opts.By == "key" {
		shown = make([]Row, len(rows))
		copy(shown, rows)
		for i := range shown {
			shown[i].Pattern = ""
		}
	}
	data := struct {
		By, Summary string
		Chart       template.HTML
		ChartN      int
		Rows        []Row
	}{a.opts.By, a.summary(), a.chartSVG(rows), min(len(rows), chartSeries), shown}
	if err := page.Execute(w, data); err != nil {
		return fmt.Errorf("html: %w", err)
	}
	return nil
}
