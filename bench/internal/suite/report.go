package suite

import (
	"fmt"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/exproxy/exproxy/bench/internal/occ"
	"github.com/exproxy/exproxy/bench/internal/stats"
)

// verdict renders a target check. Targets are reported, never asserted:
// the machine decides the numbers as much as the code does.
func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func (s *Suite) report() {
	out := s.cfg.Out
	viaName := s.via.name
	fmt.Fprintf(out, "\n")
	if s.cfg.Stub {
		fmt.Fprintf(out, "*** STUB RUN: no proxy; the \"stub\" column is a second DIRECT measurement, not exproxy. ***\n\n")
	}
	fmt.Fprintf(out, "exbench: %d rounds per workload, interleaved direct/%s (passthrough alternates which goes first); figures are median [min..max] over rounds.\n", s.cfg.Rounds, viaName)
	fmt.Fprintf(out, "Pinning: redis-server cpu %q; exproxy and all load generators cpu %q.\n", s.cfg.CPURedis, s.cfg.CPULoad)

	if len(s.pass) > 0 {
		fmt.Fprintf(out, "\nPASSTHROUGH (redis-benchmark -t set,get -r 100000; rps = SET+GET requests / their summed time)\n")
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "workload\tdirect rps\t%s rps\t%s/direct\tproxy CPU µs/req\tredis CPU µs/req direct|%s\tGET p50 ms direct|%s\ttarget\n", viaName, viaName, viaName, viaName)
		for _, r := range s.pass {
			if len(r.ratios) == 0 {
				fmt.Fprintf(tw, "%s\tERROR (below)\t\t\t\t\t\t\n", r.w.name)
				continue
			}
			d := collect(r.direct, func(p passRun) float64 { return p.rps })
			p := collect(r.proxy, func(p passRun) float64 { return p.rps })
			ratio := stats.Summarize(r.ratios)
			cpuS := stats.Summarize(collect(r.proxy, func(p passRun) float64 { return p.proxyUSReq }))
			rd := stats.Summarize(collect(r.direct, func(p passRun) float64 { return p.redisUSReq }))
			rp := stats.Summarize(collect(r.proxy, func(p passRun) float64 { return p.redisUSReq }))
			ld := stats.Summarize(collect(r.direct, func(p passRun) float64 { return p.p50ms }))
			lp := stats.Summarize(collect(r.proxy, func(p passRun) float64 { return p.p50ms }))
			fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%s\t%s\t%.2f | %.2f\t%.3f | %.3f\t%s\n",
				r.w.name, stats.Summarize(d).Median, stats.Summarize(p).Median,
				ratio.Format("%.2f"), cpuS.Format("%.2f"), rd.Median, rp.Median, ld.Median, lp.Median,
				s.passTarget(r, ratio, cpuS))
			if r.err != "" {
				fmt.Fprintf(tw, "%s\tERROR in a later round (below)\t\t\t\t\t\t\n", r.w.name)
			}
		}
		tw.Flush()
		fmt.Fprintf(out, "workloads:\n")
		for _, r := range s.pass {
			fmt.Fprintf(out, "  %-9s %s: %s\n", r.w.name, r.w.desc, r.cmdline)
		}
	}

	for _, g := range s.occs {
		fmt.Fprintf(out, "\nOPTIMISTIC LOCKING: 32 go-redis clients, read-modify-write +1 on %d key(s), %v per run\n", g.keys, s.cfg.OCCDuration)
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "method\tpath\tcommits/s\tretries/commit\tRT/commit\tRT/attempt\tproxy CPU µs/RT\tp50\tp99\tno lost update\n")
		for _, v := range g.variants {
			if why := g.skipped[v]; why != "" {
				fmt.Fprintf(tw, "%s\t%s\tskipped: %s\t\t\t\t\t\t\t\n", v.method, v.side, why)
				continue
			}
			runs := g.runs[v]
			if len(runs) == 0 {
				fmt.Fprintf(tw, "%s\t%s\tERROR (below)\t\t\t\t\t\t\t\n", v.method, v.side)
				continue
			}
			cps := stats.Summarize(collectO(runs, occ.Result.CommitsPerSec))
			rpc := stats.Summarize(collectO(runs, occ.Result.RetriesPerCommit))
			rtc := stats.Summarize(collectO(runs, occ.Result.RTPerCommit))
			rta := stats.Summarize(collectO(runs, func(r occ.Result) float64 { return float64(r.RoundTrips) / float64(r.Attempts) }))
			p50 := stats.Summarize(collectO(runs, func(r occ.Result) float64 { return float64(r.P50) }))
			p99 := stats.Summarize(collectO(runs, func(r occ.Result) float64 { return float64(r.P99) }))
			cpuRT := "-"
			if v.side != "direct" && !s.cfg.Stub {
				cpuRT = fmt.Sprintf("%.1f", stats.Summarize(collectO(runs, func(r occ.Result) float64 {
					return float64(r.CPU.Nanoseconds()) / 1000 / float64(r.RoundTrips)
				})).Median)
			}
			check := fmt.Sprintf("ok (%d runs)", len(runs))
			if g.errs[v] != "" {
				check = "FAILED (below)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%.2f\t%.2f\t%s\t%v\t%v\t%s\n", v.method, v.side, cps.Format("%.0f"),
				rpc.Median, rtc.Median, rta.Median, cpuRT, dur(p50.Median), dur(p99.Median), check)
		}
		tw.Flush()
		if cv := stats.Summarize(g.casVsWatchDirect); cv.Valid() {
			line := fmt.Sprintf("  excas(%s) / watch(direct): %s", viaName, cv.Format("%.2fx"))
			if g.keys == 1 {
				line += fmt.Sprintf("   target >= 3x on one key: %s", verdict(cv.Median >= 3))
			}
			fmt.Fprintln(out, line)
		}
		if cv := stats.Summarize(g.casVsWatchProxy); cv.Valid() {
			fmt.Fprintf(out, "  excas(%s) / watch(%s):  %s\n", viaName, viaName, cv.Format("%.2fx"))
		}
	}

	if m := s.mem; m != nil {
		fmt.Fprintf(out, "\nMEMORY: %d idle connections (each sent one PING), VmRSS before/after\n", m.conns)
		if m.err != "" {
			fmt.Fprintf(out, "  ERROR: %s\n", oneLine(m.err))
		}
		if m.redisAfter > 0 {
			fmt.Fprintf(out, "  redis-server (direct, for scale): %.1f KiB/conn (%d -> %d KiB)\n",
				perConnKiB(m.redisBefore, m.redisAfter, m.conns), m.redisBefore>>10, m.redisAfter>>10)
		}
		if m.proxyAfter > 0 {
			k := perConnKiB(m.proxyBefore, m.proxyAfter, m.conns)
			fmt.Fprintf(out, "  exproxy (fresh process):          %.1f KiB/conn (%d -> %d KiB)   target <= 16 KiB: %s\n",
				k, m.proxyBefore>>10, m.proxyAfter>>10, verdict(k <= 16))
			if m.stackAfter > 0 {
				fmt.Fprintf(out, "    of which Go stacks %.1f KiB/conn, Go heap in use %.1f KiB/conn (exproxy /metrics)\n",
					perConnKiB(m.stackBefore, m.stackAfter, m.conns), perConnKiB(m.heapBefore, m.heapAfter, m.conns))
			}
		} else if s.cfg.Stub {
			fmt.Fprintf(out, "  exproxy: skipped (stub run)\n")
		}
	}

	if len(s.failed) > 0 {
		fmt.Fprintf(out, "\nFAILURES (%d):\n", len(s.failed))
		for _, f := range s.failed {
			fmt.Fprintf(out, "  - %s\n", oneLine(f))
		}
	}
	if s.lost {
		fmt.Fprintf(out, "\n!!! LOST UPDATE: a final value did not equal the number of committed increments. The run FAILS. !!!\n")
	}
}

func (s *Suite) passTarget(r *passResult, ratio, cpuS stats.Summary) string {
	var parts []string
	if r.w.target > 0 {
		parts = append(parts, fmt.Sprintf(">= %.2fx %s", r.w.target, verdict(ratio.Median >= r.w.target)))
	}
	if r.w.cpuMax > 0 {
		if cpuS.Valid() {
			parts = append(parts, fmt.Sprintf("<= %.0f µs %s", r.w.cpuMax, verdict(cpuS.Median <= r.w.cpuMax)))
		} else {
			parts = append(parts, fmt.Sprintf("<= %.0f µs n/a", r.w.cpuMax))
		}
	}
	if s.cfg.Stub && len(parts) > 0 {
		return "(stub: not comparable)"
	}
	return strings.Join(parts, ", ")
}

func collect(runs []passRun, f func(passRun) float64) []float64 {
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = f(r)
	}
	return v
}

func collectO(runs []occ.Result, f func(occ.Result) float64) []float64 {
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = f(r)
	}
	return v
}

func dur(ns float64) time.Duration {
	if math.IsNaN(ns) {
		return 0
	}
	d := time.Duration(ns)
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 600 {
		s = s[:600] + "..."
	}
	return s
}
