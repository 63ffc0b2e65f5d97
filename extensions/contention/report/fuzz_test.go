package report

import (
	"bytes"
	"testing"
)

// FuzzLine feeds arbitrary log lines to the aggregator and renders every
// format: malformed or hostile input must be skipped, never crash the
// report.
func FuzzLine(f *testing.F) {
	f.Add([]byte(`{"msg":"contention.pattern","window_start":"2026-11-22T00:00:00Z","window_end":"2026-11-22T00:00:10Z","pattern":"a:*","aborts":3,"watch_to_exec_hist":{"1024":2,"x":1}}`))
	f.Add([]byte(`{"msg":"contention.window","window_start":"2026-11-22T00:00:00Z","window_end":"2026-11-22T00:00:10Z","transactions":-5}`))
	f.Add([]byte(`prefix {"msg":"contention.key","key":"<b>"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		for _, by := range []string{"pattern", "key", "client"} {
			a := NewAggregator(Options{By: by})
			a.line(line)
			a.line(line)
			for _, format := range []string{"table", "json", "csv", "html"} {
				a.opts.Format = format
				var out bytes.Buffer
				if err := a.Write(&out); err != nil {
					t.Fatalf("%s: %v", format, err)
				}
			}
		}
	})
}
