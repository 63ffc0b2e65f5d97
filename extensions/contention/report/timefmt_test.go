package report

import (
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"}, {4 * time.Millisecond, "4ms"}, {850 * time.Millisecond, "850ms"},
		{2*time.Second + 300*time.Millisecond, "2.3s"}, {2 * time.Second, "2s"}, {2*time.Second + 30*time.Microsecond, "2s"},
		{41*time.Second + 400*time.Millisecond, "41s"}, {5*time.Minute + 866*time.Millisecond, "5m01s"},
		{2*time.Minute + 30*time.Second, "2m30s"}, {10 * time.Minute, "10m"},
		{time.Hour + 5*time.Minute, "1h05m"}, {3 * time.Hour, "3h"},
		{51 * time.Hour, "2d03h"}, {48 * time.Hour, "2d"},
	} {
		if got := duration(tt.d); got != tt.want {
			t.Errorf("duration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestSpanAndSeen(t *testing.T) {
	a := time.Date(2026, 11, 22, 0, 16, 30, 37e6, time.UTC)
	b := time.Date(2026, 11, 22, 0, 21, 30, 903e6, time.UTC)
	c := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	// Times given in another zone are shown in UTC.
	cet := a.In(time.FixedZone("CET", 3600))
	for _, tt := range []struct{ got, want string }{
		{span(cet, b), "2026-11-22 00:16:30 – 00:21:30 UTC"},
		{span(a, c), "2026-11-22 00:16:30 – 2026-11-24 12:00:00 UTC"},
		{span(time.Time{}, b), ""},
		{seen(a, b, true), "00:16:30–00:21:30"},
		{seen(a, a.Add(time.Millisecond), true), "00:16:30"},
		{seen(a, c, false), "11-22 00:16–11-24 12:00"},
		{clock(cet), "2026-11-22 00:16:30"},
		{clock(time.Time{}), ""},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestParseWhen(t *testing.T) {
	defer func(f func() time.Time) { now = f }(now)
	now = func() time.Time { return time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC) }
	for _, tt := range []struct {
		in   string
		want time.Time
	}{
		{"2026-11-22T01:00:00Z", time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)},
		{"2026-11-22T01:00:00.5+01:00", time.Date(2026, 11, 22, 0, 0, 0, 5e8, time.UTC)},
		// What the report prints can be pasted back.
		{"2026-11-22 00:16:30", time.Date(2026, 11, 22, 0, 16, 30, 0, time.UTC)},
		{"2026-11-22 00:16:30 UTC", time.Date(2026, 11, 22, 0, 16, 30, 0, time.UTC)},
		{"2026-11-22 00:16", time.Date(2026, 11, 22, 0, 16, 0, 0, time.UTC)},
		{"2026-11-22", time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)},
		{"90m", time.Date(2026, 11, 22, 10, 30, 0, 0, time.UTC)},
	} {
		got, err := parseWhen(tt.in)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"yesterday", "-1h", "2026-13-01", "22/11/2026"} {
		if _, err := parseWhen(bad); err == nil {
			t.Errorf("parseWhen(%q): no error", bad)
		}
	}
}
