// Package report implements `exproxy contention`: it reads the JSON log
// lines the contention tracker writes (see docs/contention.md) from files,
// directories or stdin — one sidecar's or a whole fleet's — aggregates them
// over a time range and prints a ranked report by pattern, key, client or
// sidecar as a table, JSON, CSV or a self-contained HTML page.
package report

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// now is the clock for relative --since/--until; tests replace it.
var now = time.Now

// Options select and shape the report.
type Options struct {
	Since, Until time.Time // zero: unbounded
	By           string    // "pattern" (default), "key", "client", "instance" or "invalidator"
	Format       string    // "table" (default), "json", "csv" or "html"
	Top          int       // rows shown; 0 = all
}

const usage = `usage: exproxy contention [flags] [FILE|DIR ...]

Reads exproxy's JSON logs and prints where optimistic locking contends.
Give files, directories (read recursively: every file, plain or gzipped) or
nothing for stdin ("-" is stdin too), so one report can cover many sidecars:
each is named by the instance field of its log lines (or the host/pod name a
log shipper added, or else the file name).

Flags:
`

// Main runs `exproxy contention` with args (without the subcommand name) and
// returns the exit status: 0 success, 1 an input could not be read, 2 bad
// usage.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("exproxy contention", flag.ContinueOnError)
	fs.SetOutput(stderr)
	since := fs.String("since", "", "only windows ending after this time: RFC3339 (2026-11-22T01:00:00Z), a UTC time (\"2026-11-22 01:00\") or a duration back from now (1h, 30m)")
	until := fs.String("until", "", "only windows starting before this time: same forms as --since")
	by := fs.String("by", "pattern", "group rows by pattern, key, client, instance (the sidecar) or invalidator (the writers whose writes caused the conflicts)")
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
	names := fs.Args()
	if len(names) == 0 {
		names = []string{"-"}
	}
	in := &inputs{agg: agg, stdin: stdin}
	status := 0
	for _, name := range names {
		for _, err := range in.add(name) {
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
	case "pattern", "key", "client", "instance", "invalidator":
	default:
		return fmt.Errorf("--by: want pattern, key, client, instance or invalidator, got %q", o.By)
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

// parseWhen accepts RFC3339 (with or without fractional seconds), the UTC
// times the report prints ("2026-11-22 01:00:00", "2026-11-22 01:00",
// "2026-11-22"), or a Go duration meaning that long before now.
func parseWhen(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{time.DateTime, "2006-01-02 15:04", time.DateOnly} {
		if t, err := time.ParseInLocation(layout, strings.TrimSuffix(s, " UTC"), time.UTC); err == nil {
			return t, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("want RFC3339 (2026-11-22T01:00:00Z), a UTC time (\"2026-11-22 01:00\") or a duration (1h, 30m), got %q", s)
	}
	return now().Add(-d), nil
}
