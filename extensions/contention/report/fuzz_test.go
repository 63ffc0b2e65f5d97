package report

import (
	"bufio"
	"bytes"
	"compress/gzip"
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
			a.line(line, "fuzz")
			a.line(line, "fuzz")
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

// FuzzReadSource feeds arbitrary input, plain or claiming to be gzip, to
// the line reader of one source, through a small buffer so lines split
// across reads: nothing may crash or hang, and every format renders.
func FuzzReadSource(f *testing.F) {
	win := `{"level":"info","msg":"contention.window","instance":"a","window_start":"2026-11-22T00:00:00Z","window_end":"2026-11-22T00:00:10Z","aborts":1,"stale":2}`
	f.Add([]byte(win + "\n" + `{"log":"{\"msg\":\"contention.pattern\",\"window_start\":\"2026-11-22T00:00:00Z\",\"window_end\":\"2026-11-22T00:00:10Z\",\"pattern\":\"p\"}\n","kubernetes":{"pod_name":"x"}}`))
	f.Add([]byte("\x1f\x8bnot gzip"))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(win + "\n"))
	zw.Close()
	f.Add(gz.Bytes())
	f.Fuzz(func(t *testing.T, in []byte) {
		a := NewAggregator(Options{Format: "html"})
		_ = a.ReadSource(bufio.NewReaderSize(bytes.NewReader(in), 16), "fuzz")
		for _, format := range []string{"table", "json", "csv", "html"} {
			a.opts.Format = format
			if err := a.Write(&bytes.Buffer{}); err != nil {
				t.Fatalf("%s: %v", format, err)
			}
		}
	})
}
