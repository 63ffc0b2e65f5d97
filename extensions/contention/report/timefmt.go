package report

import (
	"fmt"
	"time"
)

// Times in the report are UTC, to the second, in the form people and
// spreadsheets read ("2026-11-22 00:16:36"); the JSON and CSV keep the
// exact RFC 3339 instants beside them for scripts.

// clock formats an instant, "" for none.
func clock(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.DateTime)
}

// span formats a time range, leaving out the second date when it is the
// first's: "2026-11-22 00:16:36 – 00:16:44 UTC".
func span(from, to time.Time) string {
	if from.IsZero() {
		return ""
	}
	from, to = from.UTC(), to.UTC()
	if sameDay(from, to) {
		return from.Format(time.DateTime) + " – " + to.Format(time.TimeOnly) + " UTC"
	}
	return from.Format(time.DateTime) + " – " + to.Format(time.DateTime) + " UTC"
}

// seen formats a row's first and last window compactly for a table cell:
// times only when the whole report is within one day (its date is in the
// summary), month-day and minutes otherwise.
func seen(from, to time.Time, oneDay bool) string {
	if from.IsZero() {
		return ""
	}
	from, to = from.UTC(), to.UTC()
	layout := "01-02 15:04"
	if oneDay {
		layout = time.TimeOnly
	}
	a, b := from.Format(layout), to.Format(layout)
	if a == b {
		return a
	}
	return a + "–" + b
}

func sameDay(a, b time.Time) bool {
	a, b = a.UTC(), b.UTC()
	return a.Year() == b.Year() && a.YearDay() == b.YearDay()
}

// duration formats a length of time the way people say it: 850ms, 8s,
// 2m30s, 1h05m, 2d03h.
func duration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		s := d.Round(100 * time.Millisecond).Seconds()
		if s == float64(int64(s)) || s >= 10 {
			return fmt.Sprintf("%ds", int64(d.Round(time.Second).Seconds()))
		}
		return fmt.Sprintf("%.1fs", s)
	case d < time.Hour:
		d = d.Round(time.Second)
		m, s := d/time.Minute, (d%time.Minute)/time.Second
		if s == 0 {
			return fmt.Sprintf("%dm", m)
		}
		return fmt.Sprintf("%dm%02ds", m, s)
	case d < 24*time.Hour:
		d = d.Round(time.Minute)
		h, m := d/time.Hour, (d%time.Hour)/time.Minute
		if m == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh%02dm", h, m)
	}
	d = d.Round(time.Hour)
	days, h := d/(24*time.Hour), (d%(24*time.Hour))/time.Hour
	if h == 0 {
		return fmt.Sprintf("%dd", days)
	}
	return fmt.Sprintf("%dd%02dh", days, h)
}
