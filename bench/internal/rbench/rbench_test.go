package rbench

import (
	"math"
	"strings"
	"testing"
)

// Captured from redis-benchmark 7.0.15 (Debian 12) with --csv.
const sample = `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET","88731.15","0.325","0.088","0.319","0.447","0.607","4.087"
"GET","100300.91","0.289","0.072","0.279","0.407","0.575","3.575"
`

func TestParse(t *testing.T) {
	r, err := Parse([]byte(sample), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Tests) != 2 || r.Tests[0].Name != "SET" || r.Tests[1].Name != "GET" {
		t.Fatalf("tests = %+v", r.Tests)
	}
	if r.Tests[0].RPS != 88731.15 || r.Tests[1].P50ms != 0.279 || r.Tests[0].P99ms != 0.607 {
		t.Fatalf("values = %+v", r.Tests)
	}
	if r.Requests() != 2000 {
		t.Fatalf("requests = %d", r.Requests())
	}
	// 2000 requests over 1000/88731.15 + 1000/100300.91 seconds.
	want := 2000 / (1000/88731.15 + 1000/100300.91)
	if math.Abs(r.RPS()-want) > 1e-6 {
		t.Fatalf("rps = %v, want %v", r.RPS(), want)
	}
}

// With --cluster, redis-benchmark 7.0.15 lists the primaries on stdout
// before the CSV.
func TestParseCluster(t *testing.T) {
	out := "Cluster has 3 master nodes:\n\nMaster 0: 3dd7eb0289b05d453bcc5ce66b74eed8c63b7eed 127.0.0.1:23103\n" +
		"Master 1: 39db6d9c20e653efb2b7c7fab59a93f14fdba166 127.0.0.1:23102\n\n" + sample
	r, err := Parse([]byte(out), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Tests) != 2 || r.Tests[0].RPS != 88731.15 || r.Tests[1].Name != "GET" {
		t.Fatalf("tests = %+v", r.Tests)
	}
	c := Config{Addr: "127.0.0.1:7000", Tests: "get", Clients: 1, Pipeline: 1, DataSize: 3, Requests: 10, Cluster: true}
	if got := strings.Join(c.Args(), " "); !strings.HasPrefix(got, "-h 127.0.0.1 -p 7000 --cluster -t get") {
		t.Fatalf("Args() = %q", got)
	}
}

func TestParseRejectsGarbage(t *testing.T) {
	for _, in := range []string{"", "Error: Connection refused\n", `"test","rps"` + "\n", `"test","rps"` + "\n" + `"SET","0.00"` + "\n"} {
		if _, err := Parse([]byte(in), 1); err == nil {
			t.Errorf("Parse(%q) succeeded", in)
		}
	}
}

// The password reaches redis-benchmark but never the printed command line.
func TestArgsMaskPassword(t *testing.T) {
	c := Config{Addr: "127.0.0.1:7000", Tests: "get", Clients: 1, Pipeline: 1, DataSize: 3, Requests: 10, Password: "s3cret"}
	shown := strings.Join(c.Args(), " ")
	if strings.Contains(shown, "s3cret") || !strings.Contains(shown, "-a PASSWORD") {
		t.Fatalf("Args() = %q", shown)
	}
	if used := strings.Join(c.args(false), " "); !strings.Contains(used, "-a s3cret") {
		t.Fatalf("args(false) = %q", used)
	}
}

// Reconnect is -k 0, and only then: redis-benchmark's default is to keep
// connections alive.
func TestArgsReconnect(t *testing.T) {
	c := Config{Addr: "127.0.0.1:7000", Tests: "set,get", Clients: 50, Pipeline: 1, DataSize: 64, Requests: 10, Keyspace: 100}
	if got := strings.Join(c.Args(), " "); strings.Contains(got, "-k") {
		t.Fatalf("Args() without Reconnect = %q", got)
	}
	c.Reconnect = true
	if got := strings.Join(c.Args(), " "); !strings.HasSuffix(got, "-r 100 -k 0 --csv") {
		t.Fatalf("Args() with Reconnect = %q", got)
	}
}
