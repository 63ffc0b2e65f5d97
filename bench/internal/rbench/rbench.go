// Package rbench runs redis-benchmark (Debian's redis-tools) and parses its
// --csv output, so the passthrough figures come from a public tool anyone
// can rerun by hand.
package rbench

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
)

// Config is one redis-benchmark invocation.
type Config struct {
	Addr     string // host:port
	CPU      string // taskset CPU list; "" = unpinned
	Tests    string // -t, e.g. "set,get"
	Clients  int    // -c
	Pipeline int    // -P
	DataSize int    // -d
	Requests int    // -n, per test
	Keyspace int    // -r; 0 = one key
	Password string // -a; "" = none
	// Reconnect is -k 0: redis-benchmark closes each client's connection
	// after every reply and opens a new one for the next request, as an
	// application without a connection pool does.
	Reconnect bool
	// Cluster runs redis-benchmark --cluster: Addr is one node of a Redis
	// Cluster, each client connects to one primary and its keys carry a
	// hash tag of that primary's slots.
	Cluster bool
}

// Test is one line of the CSV output.
type Test struct {
	Name   string
	RPS    float64
	P50ms  float64
	P99ms  float64
	AvgMS  float64
	MaxMS  float64
	Totals int // requests this test sent (Config.Requests)
}

// Result is one invocation's tests.
type Result struct {
	Tests []Test
}

// Requests is the number of requests all tests sent together.
func (r Result) Requests() int {
	n := 0
	for _, t := range r.Tests {
		n += t.Totals
	}
	return n
}

// RPS is the combined rate: all requests over the summed time of the tests
// (a harmonic mean weighted by requests), so SET and GET count equally.
func (r Result) RPS() float64 {
	var secs float64
	for _, t := range r.Tests {
		if t.RPS > 0 {
			secs += float64(t.Totals) / t.RPS
		}
	}
	if secs == 0 {
		return 0
	}
	return float64(r.Requests()) / secs
}

// Args returns the redis-benchmark arguments (without taskset); the
// password, if any, is masked, so the result can go to logs and docs.
func (c Config) Args() []string { return c.args(true) }

func (c Config) args(mask bool) []string {
	host, port, _ := net.SplitHostPort(c.Addr)
	a := []string{"-h", host, "-p", port}
	if c.Cluster {
		a = append(a, "--cluster")
	}
	if c.Password != "" {
		pw := c.Password
		if mask {
			pw = "PASSWORD"
		}
		a = append(a, "-a", pw)
	}
	a = append(a,
		"-t", c.Tests,
		"-c", strconv.Itoa(c.Clients),
		"-P", strconv.Itoa(c.Pipeline),
		"-d", strconv.Itoa(c.DataSize),
		"-n", strconv.Itoa(c.Requests),
	)
	if c.Keyspace > 0 {
		a = append(a, "-r", strconv.Itoa(c.Keyspace))
	}
	if c.Reconnect {
		a = append(a, "-k", "0")
	}
	return append(a, "--csv")
}

// Run executes redis-benchmark and parses its CSV.
func Run(ctx context.Context, c Config) (Result, error) {
	args := c.args(false)
	name := "redis-benchmark"
	if c.CPU != "" {
		args = append([]string{"-c", c.CPU, name}, args...)
		name = "taskset"
	}
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return Result{}, fmt.Errorf("redis-benchmark %s: %w: %s", strings.Join(c.Args(), " "), err, tail(errb.String()+out.String()))
	}
	res, err := Parse(out.Bytes(), c.Requests)
	if err != nil {
		return Result{}, fmt.Errorf("redis-benchmark %s: %w (stderr: %s)", strings.Join(c.Args(), " "), err, tail(errb.String()))
	}
	return res, nil
}

// Parse reads redis-benchmark --csv output (Redis 7 format: header line
// "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",
// "p95_latency_ms","p99_latency_ms","max_latency_ms"). Lines before the
// header are skipped: with --cluster, redis-benchmark first prints the
// primaries it found to stdout.
func Parse(b []byte, requestsPerTest int) (Result, error) {
	if i := bytes.Index(b, []byte(`"test",`)); i > 0 && b[i-1] == '\n' {
		b = b[i:]
	}
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		return Result{}, fmt.Errorf("parse csv: %w", err)
	}
	if len(recs) < 2 {
		return Result{}, fmt.Errorf("no results in output %q", tail(string(b)))
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	for _, h := range []string{"test", "rps"} {
		if _, ok := col[h]; !ok {
			return Result{}, fmt.Errorf("csv header %q lacks %q", recs[0], h)
		}
	}
	num := func(rec []string, name string) float64 {
		i, ok := col[name]
		if !ok || i >= len(rec) {
			return 0
		}
		v, _ := strconv.ParseFloat(rec[i], 64)
		return v
	}
	var res Result
	for _, rec := range recs[1:] {
		if len(rec) <= col["rps"] {
			continue
		}
		t := Test{
			Name:   rec[col["test"]],
			RPS:    num(rec, "rps"),
			AvgMS:  num(rec, "avg_latency_ms"),
			P50ms:  num(rec, "p50_latency_ms"),
			P99ms:  num(rec, "p99_latency_ms"),
			MaxMS:  num(rec, "max_latency_ms"),
			Totals: requestsPerTest,
		}
		if t.RPS <= 0 {
			return Result{}, fmt.Errorf("test %s reported rps %q", t.Name, rec[col["rps"]])
		}
		res.Tests = append(res.Tests, t)
	}
	if len(res.Tests) == 0 {
		return Result{}, fmt.Errorf("no test lines in output %q", tail(string(b)))
	}
	return res, nil
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 800 {
		s = "..." + s[len(s)-800:]
	}
	return s
}
