package report

import (
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"

	"github.com/exproxy/exproxy/extensions/contention"
)

// cell is one table cell of the page.
type cell struct {
	Text, Title, Class string
}

// htmlTable is a table of the page, built in Go because its columns depend
// on the data (all-zero counters are left out).
type htmlTable struct {
	Head  []cell
	Rows  [][]cell
	Empty string
}

// card is one figure in the page's head.
type card struct {
	Label, Value, Note string
	Hot                bool
}

type pageData struct {
	By, Title, Sub string
	Summary        []string
	Cards          []card
	Bars           template.HTML
	BarsNote       string
	Timeline       template.HTML
	TimelineNote   string
	Who            template.HTML
	WhoTable       *htmlTable
	WhoNote        string
	Sidecars       *htmlTable
	Table          htmlTable
	Hidden         string
}

var page = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-size:14px;color:#222;max-width:1280px;margin:20px auto;padding:0 16px}
h1{font-size:20px;margin:0 0 2px}
h2{font-size:15px;margin:22px 0 6px}
p.sub{color:#555;margin:0 0 12px}
p.note{color:#555;margin:4px 0}
.cards{display:flex;flex-wrap:wrap;gap:8px}
.card{border:1px solid #ddd;border-radius:6px;padding:6px 12px;min-width:110px}
.card .v{font-size:20px;font-weight:600}
.card .l{color:#555;font-size:12px}
.card .n{color:#777;font-size:12px}
.card.hot .v{color:#b00}
svg{max-width:100%;height:auto;display:block}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:13px}
th{background:#f5f5f5;font-weight:600;text-align:right;vertical-align:bottom;padding:4px 5px;max-width:92px;white-space:normal}
td{padding:3px 5px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
th.name,td.name,th.list{text-align:left}
td.name{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;white-space:normal;overflow-wrap:anywhere;min-width:12em;max-width:28em}
td.list{text-align:left;white-space:normal;min-width:9em;max-width:20em;color:#444}
td.more{text-align:left;text-decoration:underline dotted;cursor:help}
td.hot{color:#b00;font-weight:600}
tr:hover td{background:#fafafa}
footer{color:#777;font-size:12px;margin-top:16px}
</style></head><body>
<h1>exproxy contention report</h1>
<p class="sub">{{.Sub}}</p>
{{range .Summary}}<p class="note">{{.}}</p>
{{end}}{{if .Cards}}<div class="cards">
{{range .Cards}}<div class="card{{if .Hot}} hot{{end}}"><div class="v">{{.Value}}</div><div class="l">{{.Label}}</div>{{if .Note}}<div class="n">{{.Note}}</div>{{end}}</div>
{{end}}</div>
{{end}}{{if .Bars}}<h2>Where: conflicts by {{.By}}</h2>
{{.Bars}}{{else if .BarsNote}}<p class="note">{{.BarsNote}}</p>
{{end}}{{if .Timeline}}<h2>When: conflicts over time</h2>
{{.Timeline}}{{else if .TimelineNote}}<p class="note">{{.TimelineNote}}</p>
{{end}}{{if .Who}}<h2>Who: the writes that caused them</h2>
{{if .WhoNote}}<p class="note">{{.WhoNote}}</p>
{{end}}{{.Who}}{{with .WhoTable}}<div class="scroll"><table>
<thead><tr>{{range .Head}}<th{{if .Class}} class="{{.Class}}"{{end}}>{{.Text}}</th>{{end}}</tr></thead>
<tbody>{{range .Rows}}<tr>{{range .}}<td{{if .Class}} class="{{.Class}}"{{end}}{{if .Title}} title="{{.Title}}"{{end}}>{{.Text}}</td>{{end}}</tr>
{{end}}</tbody></table></div>
{{end}}{{end}}{{with .Sidecars}}<h2>Sidecars</h2>
<div class="scroll"><table>
<thead><tr>{{range .Head}}<th{{if .Class}} class="{{.Class}}"{{end}}>{{.Text}}</th>{{end}}</tr></thead>
<tbody>{{range .Rows}}<tr>{{range .}}<td{{if .Class}} class="{{.Class}}"{{end}}{{if .Title}} title="{{.Title}}"{{end}}>{{.Text}}</td>{{end}}</tr>
{{end}}</tbody></table></div>
{{end}}<h2>By {{.By}}</h2>
<div class="scroll"><table>
<thead><tr>{{range .Table.Head}}<th{{if .Class}} class="{{.Class}}"{{end}}>{{.Text}}</th>{{end}}</tr></thead>
<tbody>{{range .Table.Rows}}<tr>{{range .}}<td{{if .Class}} class="{{.Class}}"{{end}}{{if .Title}} title="{{.Title}}"{{end}}>{{.Text}}</td>{{end}}</tr>
{{else}}<tr><td class="name">{{.Table.Empty}}</td></tr>
{{end}}</tbody></table></div>
<footer>{{if .Hidden}}Not shown: {{.Hidden}}. {{end}}Times are UTC. Written by exproxy contention; the same rows as JSON: --format json.</footer>
</body></html>
`))

func (a *Aggregator) writeHTML(w io.Writer, rows []Row) error {
	t := a.Totals()
	d := pageData{By: a.opts.By, Title: "exproxy contention report"}
	if t.Windows == 0 {
		d.Summary = a.summary()
	} else {
		d.Title += ", " + span(t.FirstSeen, t.LastSeen)
		d.Sub = fmt.Sprintf("%s (%s) · %s", span(t.FirstSeen, t.LastSeen), duration(t.LastSeen.Sub(t.FirstSeen)), plural(t.Windows, "window"))
		if n := len(a.sidecars); n > 1 {
			d.Sub += fmt.Sprintf(" · %d sidecars", n)
		}
		d.Cards = a.cards(&t)
		d.Bars = barChart(rows)
		if d.Bars == "" {
			d.BarsNote = "No conflicts in these rows."
		}
		d.Timeline, d.TimelineNote = a.timeChart(rows)
		if a.opts.By != "invalidator" {
			if invs := a.Invalidators(); len(invs) > 0 {
				d.Who = barChart(invs)
				tab, _ := a.htmlTable(invs, "invalidator")
				d.WhoTable = &tab
				d.WhoNote = fmt.Sprintf("Of %d conflicts, the write behind %d came through this proxy and %d from outside it (another sidecar, a client of Redis itself, expiry, eviction); %d were on keys not tracked. Every writer: --by invalidator.",
					t.Attributed+t.Outside+t.Unattributed, t.Attributed, t.Outside, t.Unattributed)
			}
		}
		if a.skipped > 0 {
			d.Summary = []string{a.skippedNote() + "."}
		}
	}
	if a.multi() && a.opts.By != "instance" {
		sc := a.Sidecars()
		tab, _ := a.htmlTable(sc, "instance")
		d.Sidecars = &tab
	}
	var hidden []string
	d.Table, hidden = a.htmlTable(rows, a.opts.By)
	d.Hidden = strings.Join(hidden, ", ")
	if err := page.Execute(w, d); err != nil {
		return fmt.Errorf("html: %w", err)
	}
	return nil
}

// cards are the head's figures: only those the data has.
func (a *Aggregator) cards(t *Row) []card {
	var out []card
	if t.Transactions > 0 {
		out = append(out,
			card{Label: "transactions", Value: strconv.FormatInt(t.Transactions, 10), Note: fmt.Sprintf("%d commits", t.Commits)},
			card{Label: "WATCH aborts", Value: strconv.FormatInt(t.Aborts, 10), Note: pct(t.AbortRatio) + " of transactions", Hot: t.Aborts > 0},
			card{Label: "retries per commit", Value: strconv.FormatFloat(t.RetriesPerCommit, 'f', 2, 64), Note: fmt.Sprintf("at most %d in a row", t.RetriesMax)},
			card{Label: "WATCH→EXEC p99", Value: ms(t.WatchExecP99Ms) + " ms", Note: "p50 " + ms(t.WatchExecP50Ms) + " ms"},
		)
	}
	if t.Stale > 0 || t.VersionedCommits > 0 || t.Transactions == 0 {
		note := fmt.Sprintf("of %d conditional EXSET … VER, EXCAS, EXCAD, …", t.Stale+t.VersionedCommits)
		out = append(out, card{Label: "stale versioned writes", Value: strconv.FormatInt(t.Stale, 10), Note: note, Hot: t.Stale > 0})
	}
	if t.CASFailed > 0 || t.CASCommits > 0 {
		out = append(out, card{Label: "failed CAS/CAD", Value: strconv.FormatInt(t.CASFailed, 10), Note: fmt.Sprintf("of %d", t.CASFailed+t.CASCommits), Hot: t.CASFailed > 0})
	}
	if t.ConflictRatio > 0 {
		out = append(out, card{Label: "conflict ratio", Value: pct(t.ConflictRatio), Note: "conflicts of all attempts"})
	}
	if n := t.Attributed + t.Outside + t.Unattributed; n > 0 {
		note := fmt.Sprintf("%d outside this proxy", t.Outside)
		if invs := a.Invalidators(); len(invs) > 0 {
			for _, r := range invs {
				if r.Invalidator != contention.OutsideLabel {
					note = fmt.Sprintf("most by %s (%d); ", r.label(), r.Conflicts) + note
					break
				}
			}
		}
		out = append(out, card{Label: "caused through this proxy", Value: strconv.FormatInt(t.Attributed, 10), Note: note})
	}
	if t.ExecAborts > 0 {
		out = append(out, card{Label: "EXECABORT", Value: strconv.FormatInt(t.ExecAborts, 10), Note: "a queued command was refused", Hot: true})
	}
	return out
}

// htmlTable builds a table of rows grouped by by, and names the columns
// left out for being zero in every row.
func (a *Aggregator) htmlTable(rows []Row, by string) (htmlTable, []string) {
	cols, zero := visible(a.columnsFor(by, rows), rows)
	var hidden []string
	for _, z := range zero {
		hidden = append(hidden, z+" (0 in every row)")
	}
	if t := a.Totals(); !t.FirstSeen.IsZero() {
		// A seen column that says "from first to last window" in every
		// row is a column of noise: leave it out and say so once.
		oneDay := sameDay(t.FirstSeen, t.LastSeen)
		whole := seen(t.FirstSeen, t.LastSeen, oneDay)
		if !anyRow(rows, func(r *Row) bool { return seen(r.FirstSeen, r.LastSeen, oneDay) != whole }) {
			var keep []column
			for _, c := range cols {
				if c.head != "SEEN (UTC)" {
					keep = append(keep, c)
				}
			}
			cols = keep
			hidden = append(hidden, "seen (every row from the first window to the last)")
		}
	}
	if by == "instance" {
		// The sidecar table: its rows are the sidecars themselves.
		var keep []column
		for _, c := range cols {
			if c.head != "SIDECARS" {
				keep = append(keep, c)
			}
		}
		cols = keep
	}
	t := htmlTable{Head: []cell{{Text: by, Class: "name"}}, Empty: "no hot " + by + "s in this range"}
	// An invalidator's clients are its victims, a column of its own.
	withClients := by != "invalidator" && anyRow(rows, func(r *Row) bool { return len(r.Clients) > 0 })
	for _, c := range cols {
		h := cell{Text: c.html}
		switch c.head {
		case "SIDECARS", "TOP_KEY", "VICTIMS", "TOP_INVALIDATOR":
			h.Class = "list"
		}
		t.Head = append(t.Head, h)
	}
	if withClients {
		t.Head = append(t.Head, cell{Text: "clients", Class: "list"})
	}
	for i := range rows {
		r := &rows[i]
		line := []cell{{Text: r.label(), Class: "name"}}
		for _, c := range cols {
			x := cell{Text: c.cell(r)}
			switch c.head {
			case "ABORTS":
				if r.Aborts > 0 {
					x.Class = "hot"
				}
			case "TOP_KEY", "VICTIMS", "TOP_INVALIDATOR":
				x.Class = "list"
			case "SIDECARS":
				// Names when they fit; the count, names in its tooltip,
				// when they do not (the sidecar table names them all).
				x.Title = strings.Join(r.Instances, ", ")
				if len(r.Instances) <= 2 {
					x.Text, x.Class = x.Title, "list"
				} else {
					x.Text, x.Class = plural(len(r.Instances), "sidecar"), "more"
				}
			}
			line = append(line, x)
		}
		if withClients {
			line = append(line, cell{Text: strings.Join(r.Clients, ", "), Class: "list"})
		}
		t.Rows = append(t.Rows, line)
	}
	return t, hidden
}
