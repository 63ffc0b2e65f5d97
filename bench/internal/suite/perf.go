package suite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/exproxy/exproxy/bench/internal/rbench"
)

var errNoPprof = errors.New("no pprof endpoint")

// pprofProfile fetches a CPU profile from the proxy's admin endpoint while
// fn runs, saves it to out and returns `go tool pprof -top` of it.
func pprofProfile(ctx context.Context, admin, bin, out string, fn func() error) ([]byte, error) {
	base := "http://" + admin + "/debug/pprof/"
	resp, err := http.Get(base)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoPprof, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errNoPprof
	}
	type result struct {
		body []byte
		err  error
	}
	done := make(chan result, 1)
	const secs = 5
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"profile?seconds="+strconv.Itoa(secs), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- result{err: fmt.Errorf("pprof: %w", err)}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("pprof: %s: %s", resp.Status, b)
		}
		done <- result{b, err}
	}()
	// Keep the proxy busy for the whole profile window.
	deadline := time.Now().Add(secs * time.Second)
	for time.Now().Before(deadline) {
		if err := fn(); err != nil {
			return nil, err
		}
	}
	r := <-done
	if r.err != nil {
		return nil, r.err
	}
	if err := os.WriteFile(out, r.body, 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", out, err)
	}
	top, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=45", bin, out).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof: %w: %s", err, top)
	}
	return top, nil
}

// perfRecord samples pid with `perf record -g` while fn runs and returns
// perf's text reports (flat by symbol, then by shared object). Go binaries
// keep frame pointers, so -g call graphs are usable without DWARF.
func perfRecord(ctx context.Context, pid int, data string, fn func() error) ([]byte, error) {
	if _, err := exec.LookPath("perf"); err != nil {
		return nil, fmt.Errorf("perf not found (install: apt-get update && apt-get install -y linux-perf): %w", err)
	}
	rec := exec.CommandContext(ctx, "perf", "record", "-F", "999", "-g", "-p", strconv.Itoa(pid), "-o", data)
	var recOut bytes.Buffer
	rec.Stdout, rec.Stderr = &recOut, &recOut
	if err := rec.Start(); err != nil {
		return nil, fmt.Errorf("perf record: %w", err)
	}
	time.Sleep(500 * time.Millisecond) // let perf attach before the load starts
	runErr := fn()
	// perf writes its data file on SIGINT.
	_ = rec.Process.Signal(syscall.SIGINT)
	if err := rec.Wait(); err != nil && rec.ProcessState.ExitCode() != 0 && rec.ProcessState.ExitCode() != -1 {
		return nil, fmt.Errorf("perf record: %w: %s", err, recOut.String())
	}
	if runErr != nil {
		return nil, runErr
	}
	var out bytes.Buffer
	for _, args := range [][]string{
		{"report", "-i", data, "--stdio", "--no-children", "--sort", "symbol", "--percent-limit", "0.7", "-g", "none"},
		{"report", "-i", data, "--stdio", "--no-children", "--sort", "dso", "-g", "none"},
	} {
		cmd := exec.CommandContext(ctx, "perf", args...)
		b, err := cmd.CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("perf %v: %w: %s", args, err, b)
		}
		fmt.Fprintf(&out, "### perf %s\n%s\n", joinArgs(args), b)
	}
	return out.Bytes(), nil
}

func joinArgs(a []string) string {
	var b bytes.Buffer
	for i, s := range a {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s)
	}
	return b.String()
}

// perfEvents are what perfStat counts: all syscalls, the ones a network
// server makes (socket reads and writes in each of their forms: Go uses
// read/write and epoll_pwait, the C proxies also readv/writev,
// recvfrom/sendto or epoll_wait; futex wake-ups for parked threads,
// sysmon's nanosleep), context switches, migrations and CPU time. All are
// software events and tracepoints: this VM has no hardware counters.
var perfEvents = []string{
	"raw_syscalls:sys_enter",
	"syscalls:sys_enter_read", "syscalls:sys_enter_readv",
	"syscalls:sys_enter_recvfrom", "syscalls:sys_enter_recvmsg",
	"syscalls:sys_enter_write", "syscalls:sys_enter_writev",
	"syscalls:sys_enter_sendto", "syscalls:sys_enter_sendmsg",
	"syscalls:sys_enter_epoll_wait", "syscalls:sys_enter_epoll_pwait", "syscalls:sys_enter_futex",
	"syscalls:sys_enter_nanosleep", "syscalls:sys_enter_sched_yield",
	"context-switches", "cpu-migrations", "task-clock",
}

// perfStat counts perfEvents of pid while fn runs. At pipeline depth 1 a
// proxy's cost is mostly syscalls and wake-ups, which a Go profile shows
// only as syscall.Syscall and gopark.
func perfStat(ctx context.Context, pid int, fn func() error) (map[string]float64, error) {
	args := []string{"stat", "-x", ","}
	for _, e := range perfEvents {
		args = append(args, "-e", e)
	}
	cmd := exec.CommandContext(ctx, "perf", append(args, "-p", strconv.Itoa(pid))...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf stat: %w", err)
	}
	time.Sleep(300 * time.Millisecond)
	runErr := fn()
	_ = cmd.Process.Signal(syscall.SIGINT)
	_ = cmd.Wait()
	if runErr != nil {
		return nil, runErr
	}
	// CSV lines: value,unit,event,...; unsupported events say "<not supported>".
	c := map[string]float64{}
	for _, line := range bytes.Split(out.Bytes(), []byte("\n")) {
		f := bytes.Split(line, []byte(","))
		if len(f) < 3 {
			continue
		}
		if v, err := strconv.ParseFloat(string(f[0]), 64); err == nil {
			c[string(f[2])] = v
		}
	}
	if c["raw_syscalls:sys_enter"] == 0 && c["task-clock"] == 0 {
		return nil, fmt.Errorf("perf stat gave no counts: %s", out.String())
	}
	return c, nil
}

// formatPerfStat renders counts per request.
func formatPerfStat(c map[string]float64, n int) string {
	var b strings.Builder
	for _, e := range perfEvents {
		v, ok := c[e]
		if !ok || (v == 0 && strings.HasPrefix(e, "syscalls:")) {
			continue
		}
		name := strings.TrimPrefix(strings.TrimPrefix(e, "syscalls:sys_enter_"), "raw_syscalls:sys_enter")
		switch {
		case name == "":
			name = "syscalls"
		case e == "task-clock":
			name, v = "µs CPU", v*1000 // perf reports msec
		case strings.HasPrefix(e, "syscalls:"):
			name += "()"
		}
		fmt.Fprintf(&b, "%s %.2f, ", name, v/float64(n))
	}
	return strings.TrimSuffix(b.String(), ", ")
}

// perfRow is perf stat's counts for one proxy under one workload.
type perfRow struct {
	side, workload string
	counts         map[string]float64
	requests       int
}

// per returns event e per request, NaN when perf did not count it.
func (r perfRow) per(e string) float64 {
	v, ok := r.counts[e]
	if !ok || r.requests == 0 {
		return math.NaN()
	}
	return v / float64(r.requests)
}

// profile runs extra p1-64B and p16-64B runs, not part of the figures
// since counting and sampling cost CPU: perf stat of every proxy
// (syscalls by kind, context switches, CPU per request), and for exproxy
// a Go CPU profile (when it serves /debug/pprof on its admin port) and a
// perf record, which also sees the kernel's share (syscalls, loopback
// TCP).
func (s *Suite) profile(ctx context.Context) error {
	if err := os.MkdirAll(s.cfg.PerfDir, 0o755); err != nil {
		return fmt.Errorf("profile dir: %w", err)
	}
	e := s.main
	base := []passWorkload{
		{name: "p1-64B", clients: 50, pipeline: 1, size: 64, requests: 100_000},
		{name: "p16-64B", clients: 50, pipeline: 16, size: 64, requests: 1_000_000},
	}
	if s.cfg.Quick {
		for i := range base {
			base[i].requests /= 5
		}
	}
	var errs []error
	var stat strings.Builder
	for _, sd := range e.sides()[1:] {
		if sd.pid == 0 {
			continue
		}
		for _, pw := range base {
			var n int
			c, err := perfStat(ctx, sd.pid, func() error {
				r, err := rbench.Run(ctx, s.rbConfig(pw, sd.addr, "", false))
				n = r.Requests()
				return err
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", sd.name, err))
				break
			}
			s.perf = append(s.perf, perfRow{side: sd.name, workload: pw.name, counts: c, requests: n})
			line := fmt.Sprintf("%s %s, per request (perf stat over %d requests): %s", sd.name, pw.name, n, formatPerfStat(c, n))
			s.logf("%s", line)
			stat.WriteString(line + "\n")
		}
	}
	if stat.Len() > 0 {
		path := filepath.Join(s.cfg.PerfDir, "perf-stat.txt")
		if err := os.WriteFile(path, []byte(stat.String()), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("write %s: %w", path, err))
		}
	}
	if e.exproc == nil {
		return errors.Join(errs...)
	}
	w := base[0]
	load := func() error {
		_, err := s.passOnce(ctx, w, e, e.ex)
		return err
	}
	if e.exproc.Admin != "" {
		out := filepath.Join(s.cfg.PerfDir, "proxy.pprof")
		top, err := pprofProfile(ctx, e.exproc.Admin, s.cfg.ProxyBin, out, load)
		switch {
		case errors.Is(err, errNoPprof):
			s.logf("exproxy serves no /debug/pprof on its admin port %s; perf only", e.exproc.Admin)
		case err != nil:
			errs = append(errs, err)
		default:
			path := filepath.Join(s.cfg.PerfDir, "pprof-top.txt")
			if err := os.WriteFile(path, top, 0o644); err != nil {
				errs = append(errs, fmt.Errorf("write %s: %w", path, err))
			}
			s.logf("pprof CPU profile of exproxy during %s: %s (top: %s)", w.name, out, path)
		}
	}
	data := filepath.Join(s.cfg.PerfDir, "perf.data")
	report, err := perfRecord(ctx, e.ex.pid, data, load)
	if err != nil {
		errs = append(errs, err)
	} else {
		path := filepath.Join(s.cfg.PerfDir, "perf-report.txt")
		if err := os.WriteFile(path, report, 0o644); err != nil {
			errs = append(errs, fmt.Errorf("write %s: %w", path, err))
		}
		s.logf("perf profile of exproxy during %s: %s (report: %s)", w.name, data, path)
	}
	return errors.Join(errs...)
}
