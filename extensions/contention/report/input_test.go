package report

import (
	"bufio"
	"strings"
	"testing"
)

func TestSourceName(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"exproxy.log", "exproxy.log"},
		{"exproxy.log.1", "exproxy.log"},
		{"exproxy.log.2.gz", "exproxy.log"},
		{"exproxy.log.gz", "exproxy.log"},
		{"ns_app-7f9c_0d1e/exproxy/0.log.20261122-083000.gz", "ns_app-7f9c_0d1e/exproxy/0.log"},
		{"checkout-7f9c4/exproxy.log", "checkout-7f9c4/exproxy.log"},
		{"app-2.log", "app-2.log"},
		{"logs", "logs"},
	} {
		if got := sourceName(tt.in); got != tt.want {
			t.Errorf("sourceName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestReadLines: lines of any length up to maxLine are read whole however
// the reader's buffer splits them, longer ones are skipped and counted,
// and a last line without a newline counts.
func TestReadLines(t *testing.T) {
	w := window{instance: "a", start: fleetBase, length: 10e9, total: row(10, 9, 1, 0, 0)}
	w.total.Clients = []string{strings.Repeat("c", 5000)} // a window line longer than the buffer
	line := strings.TrimSuffix(w.encode(), "\n")
	w.start = w.start.Add(w.length)
	next := strings.TrimSuffix(w.encode(), "\n")
	huge := `{"msg":"contention.window","x":"` + strings.Repeat("x", maxLine) + `"}`
	in := "noise\r\n" + huge + "\n" + line + "\n" + huge + "\n" + next // the last line has no newline
	a := NewAggregator(Options{})
	if err := a.ReadSource(bufio.NewReaderSize(strings.NewReader(in), 16), "test"); err != nil {
		t.Fatal(err)
	}
	if tot := a.Totals(); tot.Windows != 2 || tot.Transactions != 20 || a.skipped != 2 {
		t.Errorf("windows %d, transactions %d, skipped %d; want 2, 20, 2", tot.Windows, tot.Transactions, a.skipped)
	}
}
