package suite

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"

	"github.com/exproxy/exproxy/bench/internal/stats"
)

// passRow is one side's summary in a passthrough row.
type passRow struct {
	sd                     side
	rps, ratio, cpu, ctx   stats.Summary
	redis, p50             stats.Summary
	bestRatio, bestCPU     bool
	targetCPU, targetRatio float64 // best C proxy's medians; NaN without one
}

func summarizePass(r *passResult) []passRow {
	rows := make([]passRow, len(r.sides))
	for i, sd := range r.sides {
		runs := r.runs[sd.name]
		rows[i] = passRow{
			sd:          sd,
			rps:         stats.Summarize(collect(runs, func(p passRun) float64 { return p.rps })),
			ratio:       stats.Summarize(r.ratios[sd.name]),
			cpu:         stats.Summarize(collect(runs, func(p passRun) float64 { return p.cpuUSReq })),
			ctx:         stats.Summarize(collect(runs, func(p passRun) float64 { return p.ctxPerReq })),
			redis:       stats.Summarize(collect(runs, func(p passRun) float64 { return p.redisUSReq })),
			p50:         stats.Summarize(collect(runs, func(p passRun) float64 { return p.p50ms })),
			targetCPU:   math.NaN(),
			targetRatio: math.NaN(),
		}
	}
	bestR, bestC := -1, -1
	minCPU, maxRatio := math.NaN(), math.NaN()
	for i, row := range rows {
		if row.sd.name == "direct" || !row.ratio.Valid() {
			continue
		}
		if bestR < 0 || row.ratio.Median > rows[bestR].ratio.Median {
			bestR = i
		}
		if row.cpu.Valid() && (bestC < 0 || row.cpu.Median < rows[bestC].cpu.Median) {
			bestC = i
		}
		if row.sd.c {
			if row.cpu.Valid() && (math.IsNaN(minCPU) || row.cpu.Median < minCPU) {
				minCPU = row.cpu.Median
			}
			if math.IsNaN(maxRatio) || row.ratio.Median > maxRatio {
				maxRatio = row.ratio.Median
			}
		}
	}
	if bestR >= 0 {
		rows[bestR].bestRatio = true
	}
	if bestC >= 0 {
		rows[bestC].bestCPU = true
	}
	for i := range rows {
		rows[i].targetCPU, rows[i].targetRatio = minCPU, maxRatio
	}
	return rows
}

// target is issue 12's check for exproxy's row: CPU per request at or
// below the best C proxy's, and ratio at or above it.
func (row passRow) target() (cpuOK, ratioOK, ok bool) {
	if math.IsNaN(row.targetRatio) || !row.ratio.Valid() {
		return false, false, false
	}
	cpuOK = row.cpu.Valid() && !math.IsNaN(row.targetCPU) && row.cpu.Median <= row.targetCPU
	ratioOK = row.ratio.Median >= row.targetRatio
	return cpuOK, ratioOK, true
}

func (s *Suite) reportPassthrough(out io.Writer, busy bool) {
	host := "quiet host"
	if busy {
		host = fmt.Sprintf("BUSY host (a CPU-bound process on cpu %q during every run)", s.cfg.CPULoad)
	}
	fmt.Fprintf(out, "\nPASSTHROUGH, %s (redis-benchmark -t set,get -r 100000; rps = SET+GET requests / their summed time; * = best proxy of the row)\n", host)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "workload\tside\trps\tratio to direct\tproxy CPU µs/req\tctx sw/req\tredis CPU µs/req\tGET p50 ms\tissue 12 target (exproxy vs best C proxy)\n")
	for _, r := range s.pass {
		if r.w.busy != busy {
			continue
		}
		if len(r.runs["direct"]) == 0 {
			fmt.Fprintf(tw, "%s\tERROR (below)\t\t\t\t\t\t\t\n", r.w.name)
			continue
		}
		for i, row := range summarizePass(r) {
			name := ""
			if i == 0 {
				name = r.w.name
			}
			ratio, cpuS, ctxS := "-", "-", "-"
			if row.sd.name != "direct" {
				ratio = row.ratio.Format("%.2f") + star(row.bestRatio)
				cpuS = row.cpu.Format("%.2f") + star(row.bestCPU)
				ctxS = fmt.Sprintf("%.2f", row.ctx.Median)
				if !row.ctx.Valid() {
					ctxS = "n/a"
				}
			}
			target := ""
			switch {
			case row.sd.ex && r.w.cluster:
				target = "n/a: no C cluster proxy measured"
			case row.sd.ex:
				target = s.targetText(row)
			}
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\t%s\t%.2f\t%.3f\t%s\n", name, row.sd.name, row.rps.Median,
				ratio, cpuS, ctxS, row.redis.Median, row.p50.Median, target)
		}
		if r.err != "" {
			fmt.Fprintf(tw, "%s\tERROR in a round (below)\t\t\t\t\t\t\t\n", r.w.name)
		}
	}
	tw.Flush()
	for _, r := range s.pass {
		if r.w.busy == busy && r.w.reconnect {
			// Otherwise a reader compares these µs with the other rows'.
			fmt.Fprintf(out, "%s: every request is a connection of its own, so its per-request figures are per connect + one command + close\n", r.w.name)
		}
	}
}

func star(b bool) string {
	if b {
		return " *"
	}
	return ""
}

func (s *Suite) targetText(row passRow) string {
	if s.cfg.Stub {
		return "(stub: not comparable)"
	}
	cpuOK, ratioOK, ok := row.target()
	if !ok {
		return "n/a: no C proxy measured"
	}
	return fmt.Sprintf("CPU <= %.2f %s, ratio >= %.2f %s", row.targetCPU, verdict(cpuOK), row.targetRatio, verdict(ratioOK))
}

// reportTargets sums up issue 12's passthrough targets over the rows,
// for each exproxy candidate.
func (s *Suite) reportTargets(out io.Writer) {
	if s.cfg.Stub {
		return
	}
	for _, ex := range s.main.exs {
		for _, busy := range []bool{false, true} {
			var met, missed []string
			for _, r := range s.pass {
				if r.w.busy != busy || len(r.runs["direct"]) == 0 {
					continue
				}
				for _, row := range summarizePass(r) {
					if row.sd.name != ex.name {
						continue
					}
					cpuOK, ratioOK, ok := row.target()
					switch {
					case !ok:
					case cpuOK && ratioOK:
						met = append(met, r.w.name)
					default:
						var what []string
						if !cpuOK {
							what = append(what, "CPU")
						}
						if !ratioOK {
							what = append(what, "ratio")
						}
						missed = append(missed, r.w.name+" ("+strings.Join(what, ", ")+")")
					}
				}
			}
			if len(met)+len(missed) == 0 {
				continue
			}
			host := "quiet host"
			if busy {
				host = "busy host"
			}
			fmt.Fprintf(out, "issue 12 passthrough targets for %s, %s (CPU/request <= and ratio >= the best C proxy's in the same run): met on %d of %d rows",
				ex.name, host, len(met), len(met)+len(missed))
			if len(missed) > 0 {
				fmt.Fprintf(out, "; MISSED: %s", strings.Join(missed, ", "))
			}
			fmt.Fprintln(out)
		}
	}
}

func (s *Suite) reportPerf(out io.Writer) {
	if len(s.perf) == 0 {
		return
	}
	fmt.Fprintf(out, "\nPERF STAT of each proxy (extra runs, not in the figures above; perf's counting adds to the CPU figure), per request\n")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "proxy\tworkload\tsyscalls\treads\twrites\tepoll waits\tfutex\tctx switches\tcpu migrations\tµs CPU\n")
	sum := func(r perfRow, events ...string) float64 {
		t, any := 0.0, false
		for _, e := range events {
			if v := r.per(e); !math.IsNaN(v) {
				t += v
				any = true
			}
		}
		if !any {
			return math.NaN()
		}
		return t
	}
	for _, r := range s.perf {
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.3f\t%.2f\n", r.side, r.workload,
			r.per("raw_syscalls:sys_enter"),
			sum(r, "syscalls:sys_enter_read", "syscalls:sys_enter_readv", "syscalls:sys_enter_recvfrom", "syscalls:sys_enter_recvmsg"),
			sum(r, "syscalls:sys_enter_write", "syscalls:sys_enter_writev", "syscalls:sys_enter_sendto", "syscalls:sys_enter_sendmsg"),
			sum(r, "syscalls:sys_enter_epoll_wait", "syscalls:sys_enter_epoll_pwait"),
			r.per("syscalls:sys_enter_futex"), r.per("context-switches"), r.per("cpu-migrations"), r.per("task-clock")*1000)
	}
	tw.Flush()
}
