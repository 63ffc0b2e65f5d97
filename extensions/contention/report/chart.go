package report

import (
	"fmt"
	"html/template"
	"math"
	"sort"
	"strings"
	"time"
)

// The HTML page draws two charts as inline SVG (no scripts, no external
// assets): where the conflicts are (a bar per top row, split by kind), and
// when they happened (all conflicts per time bin, stacked by kind, and a
// sparkline per top row). The first needs one window only; the second is
// drawn when the windows span at least two bins.

// kind is one sort of conflict, with its colour in both charts' legends.
type kind struct {
	name, color string
	get         func(r *Row) int64
}

var kinds = []kind{
	{"WATCH aborts", "#d62728", func(r *Row) int64 { return r.Aborts }},
	{"stale versioned writes", "#ff7f0e", func(r *Row) int64 { return r.Stale }},
	{"failed CAS/CAD", "#9467bd", func(r *Row) int64 { return r.CASFailed }},
	{"EXECABORT", "#8c564b", func(r *Row) int64 { return r.ExecAborts }},
}

// lineColors are the top rows' sparklines: none of them is a kind's
// colour, so a line is never read as a kind.
var lineColors = []string{"#1f77b4", "#2ca02c", "#17becf", "#bcbd22", "#e377c2"}

const (
	barRows  = 10 // rows with a bar
	lineRows = 5  // rows with a sparkline over time
	maxBins  = 120
	chartW   = 960.0
)

// svgText escapes text for an SVG element or attribute.
func svgText(s string) string { return template.HTMLEscapeString(s) }

// barChart draws the conflicts of the top rows by kind. It returns "" when
// no row has a conflict.
func barChart(rows []Row) template.HTML {
	var shown []Row
	var peak int64
	for _, r := range rows {
		if r.Conflicts > 0 && len(shown) < barRows {
			shown = append(shown, r)
			peak = max(peak, r.Conflicts)
		}
	}
	if len(shown) == 0 {
		return ""
	}
	var used []kind
	for _, k := range kinds {
		for i := range shown {
			if k.get(&shown[i]) > 0 {
				used = append(used, k)
				break
			}
		}
	}
	const labelW, textW, rowH, legendH = 250.0, 290.0, 26.0, 30.0
	x0 := labelW + 10
	barW := chartW - x0 - textW
	h := legendH + rowH*float64(len(shown)) + 6
	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %g %g" width="%g" height="%g" role="img" aria-label="conflicts by row and kind" font-family="system-ui,sans-serif">`, chartW, h, chartW, h)
	lx := x0
	for _, k := range used {
		fmt.Fprintf(&s, `<rect x="%g" y="8" width="12" height="12" fill="%s"/><text x="%g" y="18" font-size="12" fill="#333">%s</text>`, lx, k.color, lx+16, svgText(k.name))
		lx += 16 + 7.2*float64(len(k.name)) + 18
	}
	for i, r := range shown {
		y := legendH + rowH*float64(i)
		label := r.label()
		fmt.Fprintf(&s, `<text x="%g" y="%g" font-size="12" text-anchor="end" fill="#222" font-family="ui-monospace,monospace"><title>%s</title>%s</text>`,
			labelW, y+rowH/2+4, svgText(label), svgText(shorten(label, 32)))
		x := x0
		for _, k := range used {
			v := k.get(&r)
			if v == 0 {
				continue
			}
			w := math.Max(barW*float64(v)/float64(peak), 1)
			fmt.Fprintf(&s, `<rect x="%.1f" y="%g" width="%.1f" height="%g" fill="%s"><title>%s: %d</title></rect>`, x, y+4, w, rowH-8, k.color, svgText(k.name), v)
			x += w
		}
		note := fmt.Sprintf("%d", r.Conflicts)
		if r.Transactions > 0 {
			note += fmt.Sprintf(" · %s of %d tx aborted", pct(r.AbortRatio), r.Transactions)
		}
		fmt.Fprintf(&s, `<text x="%.1f" y="%g" font-size="12" fill="#444">%s</text>`, x+6, y+rowH/2+4, svgText(note))
	}
	s.WriteString(`</svg>`)
	return template.HTML(s.String()) // every text above is escaped
}

// niceSteps are the bin lengths and axis steps the time chart uses.
var niceSteps = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
	24 * time.Hour, 2 * 24 * time.Hour, 7 * 24 * time.Hour, 14 * 24 * time.Hour, 28 * 24 * time.Hour,
}

// niceStep is the first nice step at least d (whole days beyond them).
func niceStep(d time.Duration) time.Duration {
	for _, s := range niceSteps {
		if s >= d {
			return s
		}
	}
	day := 24 * time.Hour
	return (d + day - 1) / day * day
}

// typicalWindow is the median length of the windows read.
func (a *Aggregator) typicalWindow() time.Duration {
	type lc struct {
		d time.Duration
		n int
	}
	var ls []lc
	total := 0
	for d, n := range a.lengths {
		ls = append(ls, lc{d, n})
		total += n
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].d < ls[j].d })
	seen := 0
	for _, l := range ls {
		seen += l.n
		if 2*seen >= total {
			return l.d
		}
	}
	return 0
}

// timeChart draws conflicts over time, or explains why there is nothing
// to draw: the totals as columns stacked by kind (every key counted, from
// the window summaries), then one sparkline per top row, each on its own
// scale so that a quiet row's shape shows beside a loud one.
func (a *Aggregator) timeChart(rows []Row) (template.HTML, string) {
	t := a.Totals()
	if t.Windows == 0 {
		return "", ""
	}
	from, to := t.FirstSeen.UTC(), t.LastSeen.UTC()
	length := to.Sub(from)
	// Windows run a little long (2.0003s): a 2% margin keeps them in a
	// 2s bin rather than a 5s one.
	bin := niceStep(max(a.typicalWindow()*49/50, length/maxBins, a.res))
	start := from.Truncate(bin)
	nb := int((to.Sub(start) + bin - 1) / bin)
	if nb < 2 {
		return "", fmt.Sprintf("Everything in this report happened within %s (%s), in one %s bin: there is no time series to draw, the bars above show it all.",
			duration(length), span(from, to), duration(bin))
	}
	binOf := func(k int64) int {
		b := int((time.Unix(0, k).Sub(start)) / bin)
		return min(max(b, 0), nb-1)
	}
	bins := func(series map[int64]*byKind) []byKind {
		out := make([]byKind, nb)
		for k, v := range series {
			out[binOf(k)].add(v)
		}
		return out
	}
	total := bins(a.total.series)
	type spark struct {
		name   string
		values []int64
		peak   int64
	}
	var sparks []spark
	for _, r := range rows {
		if len(sparks) == lineRows {
			break
		}
		if r.Conflicts == 0 || r.src == nil {
			continue
		}
		sp := spark{name: r.label()}
		for _, v := range bins(r.src.series) {
			sp.values = append(sp.values, v.sum())
			sp.peak = max(sp.peak, v.sum())
		}
		sparks = append(sparks, sp)
	}
	var peak int64 = 1
	used := make([]bool, len(kinds))
	for _, v := range total {
		peak = max(peak, v.sum())
		for i, n := range v {
			used[i] = used[i] || n > 0
		}
	}
	peak = niceCeil(peak)

	const L, R, T, plotH, sparkH, sparkGap = 200.0, 16.0, 34.0, 190.0, 30.0, 12.0
	plotW := chartW - L - R
	axisY := T + plotH
	sparkTop := axisY + 30
	h := sparkTop + (sparkH+sparkGap)*float64(len(sparks)) + 4
	colW := plotW / float64(nb)
	x := func(at time.Time) float64 { return L + plotW*float64(at.Sub(start))/float64(bin*time.Duration(nb)) }
	xb := func(b int) float64 { return L + colW*(float64(b)+0.5) }
	y := func(v int64) float64 { return T + plotH*(1-float64(v)/float64(peak)) }
	binClock := func(b int) string { return clock(start.Add(bin * time.Duration(b))) }

	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %g %g" width="%g" height="%g" role="img" aria-label="conflicts over time" font-family="system-ui,sans-serif">`, chartW, h, chartW, h)
	// Legend of the kinds present.
	lx := L
	for i, k := range kinds {
		if !used[i] {
			continue
		}
		fmt.Fprintf(&s, `<rect x="%g" y="6" width="12" height="12" fill="%s"/><text x="%g" y="16" font-size="12" fill="#333">%s</text>`, lx, k.color, lx+16, svgText(k.name))
		lx += 16 + 7.2*float64(len(k.name)) + 18
	}
	// The time axis: a tick and a faint guide at each nice step through
	// the columns and the sparklines, labelled as briefly as the range
	// allows.
	end := start.Add(bin * time.Duration(nb))
	step := niceStep(max(end.Sub(start)/7, bin))
	layout := "15:04"
	switch {
	case !sameDay(start, end.Add(-time.Nanosecond)) && step >= 24*time.Hour:
		layout = "Jan 2"
	case !sameDay(start, end.Add(-time.Nanosecond)):
		layout = "Jan 2 15:04"
	case step < time.Minute:
		layout = "15:04:05"
	}
	for tk := start.Truncate(step); !tk.After(end); tk = tk.Add(step) {
		if tk.Before(start) {
			continue
		}
		fmt.Fprintf(&s, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#eee"/>`, x(tk), T, x(tk), h-4)
		fmt.Fprintf(&s, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#333"/>`, x(tk), axisY, x(tk), axisY+4)
		fmt.Fprintf(&s, `<text x="%.1f" y="%g" font-size="11" text-anchor="middle" fill="#555">%s</text>`, x(tk), axisY+16, svgText(tk.Format(layout)))
	}
	fmt.Fprintf(&s, `<text x="%g" y="%g" font-size="11" text-anchor="end" fill="#777">UTC</text>`, L+plotW, axisY+16)
	for i := 0; i <= 4; i++ {
		v := peak * int64(i) / 4
		fmt.Fprintf(&s, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#e5e5e5"/>`, L, y(v), L+plotW, y(v))
		fmt.Fprintf(&s, `<text x="%g" y="%.1f" font-size="11" text-anchor="end" fill="#555">%d</text>`, L-6, y(v)+4, v)
	}
	fmt.Fprintf(&s, `<text x="%g" y="%g" font-size="11" text-anchor="end" fill="#555">all %ss,</text><text x="%g" y="%g" font-size="11" text-anchor="end" fill="#555">conflicts per %s</text>`,
		L-44, T+plotH/2-6, svgText(a.opts.By), L-44, T+plotH/2+8, svgText(duration(bin)))
	// The columns: every conflict of the bin, stacked by kind.
	for b, v := range total {
		if v.sum() == 0 {
			continue
		}
		var parts []string
		for i, n := range v {
			if n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", n, kinds[i].name))
			}
		}
		fmt.Fprintf(&s, `<g><title>%s: %d conflicts (%s)</title>`, svgText(binClock(b)), v.sum(), svgText(strings.Join(parts, ", ")))
		var acc int64
		for i, n := range v {
			if n == 0 {
				continue
			}
			fmt.Fprintf(&s, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`, L+colW*float64(b)+colW*0.1, y(acc+n), colW*0.8, y(acc)-y(acc+n), kinds[i].color)
			acc += n
		}
		s.WriteString(`</g>`)
	}
	fmt.Fprintf(&s, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#333"/>`, L, axisY, L+plotW, axisY)
	// One sparkline per top row, each scaled to its own peak.
	for i, sp := range sparks {
		top := sparkTop + (sparkH+sparkGap)*float64(i)
		base := top + sparkH
		c := lineColors[i%len(lineColors)]
		sy := func(v int64) float64 { return base - sparkH*float64(v)/float64(max(sp.peak, 1)) }
		fmt.Fprintf(&s, `<text x="%g" y="%g" font-size="12" text-anchor="end" fill="#222" font-family="ui-monospace,monospace"><title>%s</title>%s</text>`,
			L-8, top+12, svgText(sp.name), svgText(shorten(sp.name, 24)))
		fmt.Fprintf(&s, `<text x="%g" y="%g" font-size="10" text-anchor="end" fill="#777">peak %d per %s</text>`, L-8, top+25, sp.peak, svgText(duration(bin)))
		fmt.Fprintf(&s, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#ccc"/>`, L, base, L+plotW, base)
		pts := make([]string, 0, nb+2)
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", xb(0), base))
		for b, v := range sp.values {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xb(b), sy(v)))
		}
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", xb(nb-1), base))
		fmt.Fprintf(&s, `<polygon fill="%s" fill-opacity="0.15" points="%s"/>`, c, strings.Join(pts, " "))
		fmt.Fprintf(&s, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, c, strings.Join(pts[1:len(pts)-1], " "))
		if nb <= 60 {
			// With few bins the points matter more than the line.
			for b, v := range sp.values {
				fmt.Fprintf(&s, `<circle cx="%.1f" cy="%.1f" r="2" fill="%s"><title>%s, %s: %d</title></circle>`, xb(b), sy(v), c, svgText(sp.name), svgText(binClock(b)), v)
			}
		}
	}
	s.WriteString(`</svg>`)
	return template.HTML(s.String()), "" // every text above is escaped
}

// niceCeil rounds n up to 4 × (1, 2, 2.5 or 5 × 10^k), so the four grid
// lines of a chart fall on round numbers.
func niceCeil(n int64) int64 {
	if n < 4 {
		return 4
	}
	step := float64(n) / 4
	mag := math.Pow(10, math.Floor(math.Log10(step)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= step {
			return int64(math.Ceil(m*mag)) * 4
		}
	}
	return n
}
