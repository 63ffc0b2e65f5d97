package suite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
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

// perfEvents are what perfStat counts: all syscalls, the ones a Go
// network server makes (read/write on sockets, epoll, futex wake-ups for
// parked threads, sysmon's nanosleep), context switches and CPU time.
var perfEvents = []string{
	"raw_syscalls:sys_enter",
	"syscalls:sys_enter_read", "syscalls:sys_enter_write",
	"syscalls:sys_enter_epoll_pwait", "syscalls:sys_enter_futex",
	"syscalls:sys_enter_nanosleep", "syscalls:sys_enter_sched_yield",
	"context-switches", "task-clock",
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
		if !ok {
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
