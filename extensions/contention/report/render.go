package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/exproxy/exproxy/extensions/contention"
)

// Write renders the report in the chosen format.
func (a *Aggregator) Write(w io.Writer) error {
	rows := a.Rows()
	switch a.opts.Format {
	case "json":
		return writeJSON(w, rows)
	case "csv":
		return a.writeCSV(w, rows)
	case "html":
		return a.writeHTML(w, rows)
	default:
		return a.writeTable(w, rows)
	}
}

func writeJSON(w io.Writer, rows []Row) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rows); err != nil {
		return fmt.Errorf("json: %w", err)
	}
	return nil
}

// csvHeader lists the CSV columns after the grouping column(s). Columns
// added later go at the end, so readers that count columns keep working.
var csvHeader = []string{
	"transactions", "commits", "aborts", "execaborts", "exec_errors", "given_up", "stale", "cas_failed",
	"conflicts", "abort_ratio", "retries", "retries_per_commit", "retries_max", "chains_given_up",
	"watch_to_exec_count", "watch_to_exec_p50_ms", "watch_to_exec_p99_ms", "windows", "first_seen", "last_seen", "clients",
	"first_seen_utc", "last_seen_utc", "instances",
	"versioned_commits", "cas_commits", "conflict_ratio", "attributed", "outside", "unattributed", "top_invalidator",
}

func csvRecord(r *Row) []string {
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	return []string{
		i(r.Transactions), i(r.Commits), i(r.Aborts), i(r.ExecAborts), i(r.ExecErrors), i(r.GivenUp), i(r.Stale), i(r.CASFailed),
		i(r.Conflicts), f(r.AbortRatio), i(r.Retries), f(r.RetriesPerCommit), i(r.RetriesMax), i(r.ChainsGivenUp),
		strconv.FormatUint(r.WatchExecCount, 10), f(r.WatchExecP50Ms), f(r.WatchExecP99Ms), strconv.Itoa(r.Windows),
		rfc3339(r.FirstSeen), rfc3339(r.LastSeen), strings.Join(r.Clients, " "),
		r.FirstSeenUTC, r.LastSeenUTC, strings.Join(r.Instances, " "),
		i(r.VersionedCommits), i(r.CASCommits), f(r.ConflictRatio), i(r.Attributed), i(r.Outside), i(r.Unattributed), topLink(r),
	}
}

// topLink names a row's top invalidator, or an invalidator row's top key,
// with its command and count: "billing incr 12".
func topLink(r *Row) string {
	ls := r.Invalidators
	if len(ls) == 0 {
		ls = r.InvalidatedKeys
	}
	if len(ls) == 0 {
		return ""
	}
	l := ls[0]
	name := l.Invalidator
	if name == "" {
		name = l.Key
	}
	s := name
	if l.Command != "" {
		s += " " + l.Command
	}
	return s + " " + strconv.FormatInt(l.Total(), 10)
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func (a *Aggregator) writeCSV(w io.Writer, rows []Row) error {
	by := a.opts.By
	cw := csv.NewWriter(w)
	head := []string{by}
	if by == "key" {
		head = append(head, "pattern")
	}
	head = append(head, csvHeader...)
	if by == "client" || by == "invalidator" {
		head = append(head, "instance")
	}
	if err := cw.Write(head); err != nil {
		return fmt.Errorf("csv: %w", err)
	}
	for i := range rows {
		r := &rows[i]
		rec := []string{r.name()}
		if by == "key" {
			rec = []string{r.Key, r.Pattern}
		}
		rec = append(rec, csvRecord(r)...)
		if by == "client" || by == "invalidator" {
			rec = append(rec, r.Instance)
		}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("csv: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("csv: %w", err)
	}
	return nil
}

// skippedNote says how many lines looked like contention events and could
// not be read.
func (a *Aggregator) skippedNote() string {
	return fmt.Sprintf("%s that mention contention could not be read (not JSON, or longer than 1 MiB) and were skipped", plural(a.skipped, "line"))
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
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

// summary is the report's head, a few short lines: when and from where,
// the transactions, the versioned writes.
func (a *Aggregator) summary() []string {
	t := a.Totals()
	if t.Windows == 0 {
		return []string{"no contention windows in the input (is the log JSON, and is contention tracking enabled?)"}
	}
	where := fmt.Sprintf("%s, %s (%s)", plural(t.Windows, "window"), span(t.FirstSeen, t.LastSeen), duration(t.LastSeen.Sub(t.FirstSeen)))
	if n := len(a.sidecars); n > 1 {
		where += fmt.Sprintf(", %d sidecars", n)
	}
	out := []string{where}
	if t.Transactions > 0 || t.ExecErrors > 0 {
		out = append(out, fmt.Sprintf("transactions: %d, %d commits, %d aborts (%s), %d execaborts, %.2f retries/commit, WATCH→EXEC p99 %s ms",
			t.Transactions, t.Commits, t.Aborts, pct(t.AbortRatio), t.ExecAborts, t.RetriesPerCommit, ms(t.WatchExecP99Ms)))
	}
	if t.Stale > 0 || t.CASFailed > 0 || t.VersionedCommits > 0 || t.CASCommits > 0 || t.Transactions == 0 {
		out = append(out, fmt.Sprintf("versioned writes and CAS/CAD: %d stale, %d applied; CAS/CAD %d failed, %d applied",
			t.Stale, t.VersionedCommits, t.CASFailed, t.CASCommits))
	}
	if n := t.Attributed + t.Outside + t.Unattributed; n > 0 {
		line := fmt.Sprintf("invalidated by: %d writes through this proxy", t.Attributed)
		if invs := a.Invalidators(); len(invs) > 0 && invs[0].Invalidator != contention.OutsideLabel {
			line += fmt.Sprintf(" (most: %s, %d)", invs[0].label(), invs[0].Conflicts)
		} else if len(invs) > 1 {
			line += fmt.Sprintf(" (most: %s, %d)", invs[1].label(), invs[1].Conflicts)
		}
		line += fmt.Sprintf(", %d outside this proxy", t.Outside)
		if t.Unattributed > 0 {
			line += fmt.Sprintf(", %d not tracked", t.Unattributed)
		}
		out = append(out, line)
	}
	if a.skipped > 0 {
		out = append(out, a.skippedNote())
	}
	return out
}

// column is one column of the table and the HTML page.
type column struct {
	head, html string // the table's header, the page's
	cell       func(r *Row) string
	// shown decides from all rows whether the column earns its space:
	// counters that are zero in every row are left out (and named in a
	// footnote) so the table fits a laptop's screen.
	shown func(rows []Row) bool
	// hiddenName names the column in the footnote.
	hiddenName string
	// pageOnly columns are left out of the terminal table, to keep it
	// within a laptop's width (the JSON has every field).
	pageOnly bool
}

func anyRow(rows []Row, f func(r *Row) bool) bool {
	for i := range rows {
		if f(&rows[i]) {
			return true
		}
	}
	return false
}

// columns are the table's and the page's columns after the name.
func (a *Aggregator) columns(rows []Row) []column { return a.columnsFor(a.opts.By, rows) }

// columnsFor are the columns of rows grouped by by.
func (a *Aggregator) columnsFor(by string, rows []Row) []column {
	tx := func(rows []Row) bool {
		return anyRow(rows, func(r *Row) bool { return r.Transactions > 0 || r.ExecErrors > 0 })
	}
	nonzero := func(f func(r *Row) int64) func([]Row) bool {
		return func(rows []Row) bool { return anyRow(rows, func(r *Row) bool { return f(r) != 0 }) }
	}
	i := func(f func(r *Row) int64) func(r *Row) string {
		return func(r *Row) string { return strconv.FormatInt(f(r), 10) }
	}
	always := func([]Row) bool { return true }
	oneDay := true
	if t := a.Totals(); !t.FirstSeen.IsZero() {
		oneDay = sameDay(t.FirstSeen, t.LastSeen)
	}
	if by == "invalidator" {
		return a.invalidatorColumns(oneDay)
	}
	attempts := func(r *Row) int64 { return r.Transactions + r.VersionedCommits + r.Stale + r.CASCommits + r.CASFailed }
	cols := []column{
		{head: "TX", html: "transactions", cell: i(func(r *Row) int64 { return r.Transactions }), shown: tx, hiddenName: "transactions"},
		{head: "COMMITS", html: "commits", cell: i(func(r *Row) int64 { return r.Commits }), shown: tx},
		{head: "ABORTS", html: "aborts", cell: i(func(r *Row) int64 { return r.Aborts }), shown: tx},
		{head: "ABORT%", html: "abort ratio", cell: func(r *Row) string {
			if r.Transactions == 0 {
				return "-"
			}
			return pct(r.AbortRatio)
		}, shown: tx},
		{head: "EXECABORT", html: "execaborts", cell: i(func(r *Row) int64 { return r.ExecAborts }), shown: nonzero(func(r *Row) int64 { return r.ExecAborts }), hiddenName: "execaborts"},
		{head: "STALE", html: "stale", cell: i(func(r *Row) int64 { return r.Stale }), shown: nonzero(func(r *Row) int64 { return r.Stale }), hiddenName: "stale"},
		{head: "VER_OK", html: "versioned writes applied", cell: i(func(r *Row) int64 { return r.VersionedCommits }), shown: nonzero(func(r *Row) int64 { return r.VersionedCommits + r.Stale })},
		{head: "CAS_FAIL", html: "CAS failed", cell: i(func(r *Row) int64 { return r.CASFailed }), shown: nonzero(func(r *Row) int64 { return r.CASFailed }), hiddenName: "cas_failed"},
		{head: "CAS_OK", html: "CAS applied", cell: i(func(r *Row) int64 { return r.CASCommits }), shown: nonzero(func(r *Row) int64 { return r.CASCommits + r.CASFailed })},
		{head: "CONFLICT%", html: "conflict ratio", cell: func(r *Row) string {
			if attempts(r) == 0 {
				return "-"
			}
			return pct(r.ConflictRatio)
		}, shown: nonzero(attempts)},
		{head: "RETRY/COMMIT", html: "retries per commit", cell: func(r *Row) string {
			if r.Commits == 0 {
				return "-"
			}
			return strconv.FormatFloat(r.RetriesPerCommit, 'f', 2, 64)
		}, shown: tx},
		{head: "MAX_RETRY", html: "most retries", cell: i(func(r *Row) int64 { return r.RetriesMax }), shown: tx},
		{head: "GAVE_UP", html: "chains given up", cell: i(func(r *Row) int64 { return r.ChainsGivenUp }), shown: nonzero(func(r *Row) int64 { return r.ChainsGivenUp }), hiddenName: "chains_given_up", pageOnly: true},
		{head: "P50_MS", html: "WATCH→EXEC p50 ms", cell: func(r *Row) string { return ms(r.WatchExecP50Ms) }, shown: tx, pageOnly: true},
		{head: "P99_MS", html: "p99 ms", cell: func(r *Row) string { return ms(r.WatchExecP99Ms) }, shown: tx},
	}
	cols = append(cols, column{head: "TOP_INVALIDATOR", html: "top invalidator", cell: func(r *Row) string {
		if len(r.Invalidators) == 0 {
			return "-"
		}
		return shorten(topLink(r), 32)
	}, shown: func(rows []Row) bool { return anyRow(rows, func(r *Row) bool { return len(r.Invalidators) > 0 }) }})
	if a.multi() && a.opts.By != "instance" {
		cols = append(cols, column{head: "SIDECARS", html: "sidecars", cell: func(r *Row) string { return strconv.Itoa(len(r.Instances)) }, shown: always})
	}
	cols = append(cols, column{head: "SEEN (UTC)", html: "seen (UTC)", cell: func(r *Row) string { return seen(r.FirstSeen, r.LastSeen, oneDay) }, shown: always})
	return cols
}

// invalidatorColumns are the columns of --by invalidator: the conflicts
// a writer caused, by kind, whom and where.
func (a *Aggregator) invalidatorColumns(oneDay bool) []column {
	i := func(f func(r *Row) int64) func(r *Row) string {
		return func(r *Row) string { return strconv.FormatInt(f(r), 10) }
	}
	nonzero := func(f func(r *Row) int64) func([]Row) bool {
		return func(rows []Row) bool { return anyRow(rows, func(r *Row) bool { return f(r) != 0 }) }
	}
	always := func([]Row) bool { return true }
	list := func(names []string, n int) string {
		if len(names) > n {
			return strings.Join(names[:n], ", ") + fmt.Sprintf(" +%d", len(names)-n)
		}
		return strings.Join(names, ", ")
	}
	cols := []column{
		{head: "CAUSED", html: "conflicts caused", cell: i(func(r *Row) int64 { return r.Conflicts }), shown: always},
		{head: "ABORTS", html: "WATCH aborts", cell: i(func(r *Row) int64 { return r.Aborts }), shown: nonzero(func(r *Row) int64 { return r.Aborts }), hiddenName: "aborts"},
		{head: "STALE", html: "stale versioned writes", cell: i(func(r *Row) int64 { return r.Stale }), shown: nonzero(func(r *Row) int64 { return r.Stale }), hiddenName: "stale"},
		{head: "CAS_FAIL", html: "failed CAS/CAD", cell: i(func(r *Row) int64 { return r.CASFailed }), shown: nonzero(func(r *Row) int64 { return r.CASFailed }), hiddenName: "cas_failed"},
		{head: "TOP_KEY", html: "keys (command, conflicts)", cell: func(r *Row) string {
			if len(r.InvalidatedKeys) == 0 {
				return "-"
			}
			return shorten(topLink(r), 40)
		}, shown: always},
		{head: "VICTIMS", html: "victims", cell: func(r *Row) string { return shorten(list(r.Clients, 3), 40) }, shown: always},
	}
	if a.multi() {
		cols = append(cols, column{head: "SIDECARS", html: "sidecars", cell: func(r *Row) string { return strconv.Itoa(len(r.Instances)) }, shown: always})
	}
	return append(cols, column{head: "SEEN (UTC)", html: "seen (UTC)", cell: func(r *Row) string { return seen(r.FirstSeen, r.LastSeen, oneDay) }, shown: always})
}

// visible splits the columns into those shown and the names of those left
// out for being zero in every row.
func visible(cols []column, rows []Row) (shown []column, hidden []string) {
	for _, c := range cols {
		if c.shown(rows) {
			shown = append(shown, c)
		} else if c.hiddenName != "" {
			hidden = append(hidden, c.hiddenName)
		}
	}
	return shown, hidden
}

// shorten keeps a long name readable in a table cell: its start and end,
// "…" between (the JSON and CSV have it whole).
func shorten(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	head := (n - 1) * 2 / 3
	return string(r[:head]) + "…" + string(r[len(r)-(n-1-head):])
}

// maxNameWidth bounds the name column of the table (runes).
const maxNameWidth = 40

func (a *Aggregator) writeTable(w io.Writer, rows []Row) error {
	for _, l := range a.summary() {
		fmt.Fprintln(w, l)
	}
	if len(rows) == 0 {
		if a.Totals().Windows == 0 {
			return nil
		}
		_, err := fmt.Fprintln(w, "no hot "+a.opts.By+"s")
		return err
	}
	fmt.Fprintln(w)
	var cols []column
	for _, c := range a.columns(rows) {
		if !c.pageOnly {
			cols = append(cols, c)
		}
	}
	cols, hidden := visible(cols, rows)
	// The name column is left-aligned, the numbers right-aligned, the
	// times left-aligned at the end (tabwriter aligns all cells one way).
	cells := make([][]string, len(rows)+1)
	cells[0] = append(cells[0], strings.ToUpper(a.opts.By))
	for _, c := range cols {
		cells[0] = append(cells[0], c.head)
	}
	for i := range rows {
		cells[i+1] = append(cells[i+1], shorten(rows[i].label(), maxNameWidth))
		for _, c := range cols {
			cells[i+1] = append(cells[i+1], c.cell(&rows[i]))
		}
	}
	widths := make([]int, len(cells[0]))
	for _, line := range cells {
		for j, c := range line {
			widths[j] = max(widths[j], utf8.RuneCountInString(c))
		}
	}
	for _, line := range cells {
		var b strings.Builder
		for j, c := range line {
			pad := strings.Repeat(" ", widths[j]-utf8.RuneCountInString(c))
			switch {
			case j == 0:
				b.WriteString(c + pad)
			case j == len(line)-1:
				b.WriteString("  " + c) // SEEN: left-aligned, no trailing blanks
			default:
				b.WriteString("  " + pad + c)
			}
		}
		if _, err := fmt.Fprintln(w, b.String()); err != nil {
			return fmt.Errorf("table: %w", err)
		}
	}
	if len(hidden) > 0 {
		fmt.Fprintf(w, "\n(0 in every row, not shown: %s)\n", strings.Join(hidden, ", "))
	}
	if anyRow(rows, func(r *Row) bool { return r.Transactions > 0 }) {
		fmt.Fprintln(w, "(WATCH→EXEC p50, chains given up, clients, sidecar names: --format html or json)")
	}
	if a.opts.By != "invalidator" && anyRow(rows, func(r *Row) bool { return len(r.Invalidators) > 0 }) {
		fmt.Fprintln(w, "(who invalidated what, and whom: --by invalidator)")
	}
	return nil
}
