package suite

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

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
