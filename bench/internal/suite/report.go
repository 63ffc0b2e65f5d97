package suite

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/exproxy/exproxy/bench/internal/occ"
	"github.com/exproxy/exproxy/bench/internal/rcost"
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
	fmt.Fprintf(out, "\n")
	if s.cfg.Stub {
		fmt.Fprintf(out, "*** STUB RUN: no exproxy; the \"stub\" side is a second DIRECT measurement, not exproxy. ***\n\n")
	}
	fmt.Fprintf(out, "exbench: %d rounds per workload; the sides of a passthrough round run in an order that rotates each round; figures are median [min..max] over rounds.\n", s.cfg.Rounds)
	fmt.Fprintf(out, "Pinning: redis-server cpu %q; the proxies and all load generators cpu %q.\n", s.cfg.CPURedis, s.cfg.CPULoad)
	s.reportSides(out)

	if len(s.pass) > 0 {
		s.reportPassthrough(out, false)
		if s.cfg.Busy {
			s.reportPassthrough(out, true)
		}
		s.reportTargets(out)
		fmt.Fprintf(out, "workloads:\n")
		for _, r := range s.pass {
			if !r.w.busy {
				fmt.Fprintf(out, "  %-11s %s: %s\n", r.w.name, r.w.desc, r.cmdline)
			}
		}
		if s.cfg.Busy {
			fmt.Fprintf(out, "  busy: the same, each run with a CPU-bound process pinned to cpu %q at normal priority\n", s.cfg.CPULoad)
		}
	}
	s.reportPerf(out)
	s.reportOCC(out)
	s.reportCost(out)
	s.reportMemory(out)
	s.reportSlow(out)

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

func (s *Suite) reportSides(out io.Writer) {
	if len(s.pass) == 0 {
		return
	}
	names := []string{"direct (Redis itself)"}
	for _, sd := range s.main.exs {
		names = append(names, sd.name)
	}
	for _, sd := range s.main.cprox {
		names = append(names, sd.name)
	}
	if s.cfg.TwemproxyBin == "" {
		names = append(names, "twemproxy not measured (nutcracker not found: apt-get install nutcracker)")
	}
	if s.cfg.PredixyBin == "" {
		names = append(names, "predixy not measured (give --predixy-bin)")
	}
	fmt.Fprintf(out, "Sides: %s.\n", strings.Join(names, "; "))
	for _, r := range s.pass {
		if r.w.cluster {
			fmt.Fprintf(out, "Cluster rows (-cluster): 3 primaries, no replicas; direct = redis-benchmark --cluster against them; exproxy with a redis+cluster:// upstream; no twemproxy (not a Redis Cluster proxy); redis CPU summed over the primaries.\n")
			break
		}
	}
}

func (s *Suite) reportOCC(out io.Writer) {
	for _, g := range s.occs {
		host := ""
		if g.busy {
			host = fmt.Sprintf(", BUSY host (a CPU-bound process on cpu %q during every run)", s.cfg.CPULoad)
		}
		fmt.Fprintf(out, "\nOPTIMISTIC LOCKING: 32 go-redis clients, read-modify-write +1 on %d key(s), %v per run%s\n", g.keys, s.cfg.OCCDuration, host)
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "method\tpath\tcommits/s\tretries/commit\tRT/commit\tRT/attempt\tproxy CPU µs/RT\tRedis CPU µs/commit\tp50\tp99\tno lost update\n")
		for _, v := range g.variants {
			path := occPath(v)
			if why := g.skipped[v]; why != "" {
				fmt.Fprintf(tw, "%s\t%s\tskipped: %s\t\t\t\t\t\t\t\t\n", v.method, path, oneLine(why))
				continue
			}
			runs := g.runs[v]
			if len(runs) == 0 {
				fmt.Fprintf(tw, "%s\t%s\tERROR (below)\t\t\t\t\t\t\t\t\n", v.method, path)
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
			redisCommit := "-"
			if !s.cfg.Stub {
				redisCommit = stats.Summarize(collectO(runs, func(r occ.Result) float64 {
					return float64(r.RedisCPU.Nanoseconds()) / 1000 / float64(r.Commits)
				})).Format("%.1f")
			}
			check := fmt.Sprintf("ok (%d runs)", len(runs))
			if g.errs[v] != "" {
				check = "FAILED (below)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%.2f\t%.2f\t%s\t%s\t%v\t%v\t%s\n", v.method, path, cps.Format("%.0f"),
				rpc.Median, rtc.Median, rta.Median, cpuRT, redisCommit, dur(p50.Median), dur(p99.Median), check)
		}
		tw.Flush()
		casLib, watchDirect := occVariant{occ.ExCAS, "direct"}, occVariant{occ.Watch, "direct"}
		want := 1.5
		if g.keys > 1 {
			want = 1.0
		}
		type ratioLine struct {
			a, b   occVariant
			note   string
			target bool
		}
		lines := []ratioLine{{casLib, watchDirect, "the library without a proxy", false}}
		for _, ex := range s.main.exs {
			casVia, watchVia := occVariant{occ.ExCAS, ex.name}, occVariant{occ.Watch, ex.name}
			lines = append(lines,
				ratioLine{casVia, watchDirect, "", true},
				ratioLine{casVia, casLib, "what the proxy costs", false},
				ratioLine{casVia, watchVia, "", false},
				ratioLine{occVariant{occ.Lua, ex.name}, occVariant{occ.Lua, "direct"}, "one round trip, through the proxy", false})
		}

		for _, l := range lines {
			cv := stats.Summarize(g.ratios(l.a, l.b))
			if !cv.Valid() {
				continue
			}
			line := fmt.Sprintf("  %-40s %s", occLabel(l.a)+" / "+occLabel(l.b)+":", cv.Format("%.2fx"))
			if l.target && !s.cfg.Stub {
				line += fmt.Sprintf("   issue 12 target >= %.1fx: %s", want, verdict(cv.Median >= want))
			}
			if l.note != "" {
				line += "   (" + l.note + ")"
			}
			fmt.Fprintln(out, line)
		}
	}
}

// occPath names where a variant's commands went.
func occPath(v occVariant) string {
	if v.side == "direct" && v.method.NeedsProxy() {
		return "direct/FCALL"
	}
	return v.side
}

func occLabel(v occVariant) string { return fmt.Sprintf("%s(%s)", v.method, occPath(v)) }

func (s *Suite) reportCost(out io.Writer) {
	c := s.cost
	if c == nil || len(c.runs) == 0 {
		return
	}
	fmt.Fprintf(out, "\nREDIS CPU PER CALL, direct (no proxy): 50 clients each on its own key, pipeline 1, load from cpu %q; %d round(s) of %v\n",
		s.cfg.CPULoad, s.cfg.CostRounds, s.cfg.CostDuration)
	if len(c.libs) > 0 {
		fmt.Fprintf(out, "library: %s\n", strings.Join(c.libs, "; "))
	}
	if c.skipped != "" {
		fmt.Fprintf(out, "versioned-string rows skipped: %s\n", oneLine(c.skipped))
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "command\tcalls/s\tredis CPU µs/call\texec µs/call\tcommands inside, per call\n")
	for _, op := range c.ops {
		runs := c.runs[op.Name]
		if len(runs) == 0 {
			fmt.Fprintf(tw, "%s\tERROR (below)\t\t\t\n", op.Name)
			continue
		}
		cps := stats.Summarize(collectC(runs, rcost.Result.CallsPerSec))
		cpuS := stats.Summarize(collectC(runs, rcost.Result.CPUPerCall))
		exec := stats.Summarize(collectC(runs, rcost.Result.ExecPerCall))
		n, inner := runs[len(runs)-1].Inner()
		innerS := "-"
		if n > 0 {
			innerS = fmt.Sprintf("%.2f: %s", n, inner)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\n", op.Name, cps.Median, cpuS.Format("%.2f"), exec.Format("%.2f"), innerS)
	}
	tw.Flush()
	fmt.Fprintf(out, "  redis CPU = redis-server's CPU time over the run / calls (reading, parsing, replying included);\n")
	fmt.Fprintf(out, "  exec = INFO commandstats usec_per_call of the command itself (for FCALL: the Lua and every redis.call in it);\n")
	fmt.Fprintf(out, "  exec is wall-clock time: when Redis's core is shared it counts the time Redis was descheduled, so read the CPU column\n")
	if len(c.loops) > 0 {
		fmt.Fprintf(out, "\nLUA HANDLER CPU: each handler looped %d times inside one FCALL; Redis's CPU over the call / %d, least of the repetitions\n", c.loopN, c.loopN)
		fmt.Fprintf(out, "(the handler's Lua and the commands it runs, without FCALL's dispatch, the network or a reply; steadier than per call, but compare libraries within one run)\n")
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "handler")
		for _, l := range c.loopLabels {
			fmt.Fprintf(tw, "\t%s µs", l)
		}
		if len(c.loopLabels) == 2 {
			fmt.Fprintf(tw, "\t%s/%s", c.loopLabels[0], c.loopLabels[1])
		}
		fmt.Fprintln(tw)
		for _, run := range rcost.LoopHandlers {
			fmt.Fprintf(tw, "%s", run)
			var v []float64
			for _, l := range c.loopLabels {
				d, ok := c.loops[l][run]
				if !ok {
					fmt.Fprintf(tw, "\t-")
					continue
				}
				v = append(v, float64(d.Nanoseconds())/1000)
				fmt.Fprintf(tw, "\t%.2f", v[len(v)-1])
			}
			if len(v) == 2 && v[1] > 0 {
				fmt.Fprintf(tw, "\t%.2f", v[0]/v[1])
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}
}

func (s *Suite) reportMemory(out io.Writer) {
	m := s.mem
	if m == nil {
		return
	}
	fmt.Fprintf(out, "\nMEMORY: %d idle connections (each sent one PING), VmRSS before/after\n", m.conns)
	if m.err != "" {
		fmt.Fprintf(out, "  ERROR: %s\n", oneLine(m.err))
	}
	if m.redisAfter > 0 {
		fmt.Fprintf(out, "  redis-server (direct, for scale): %.1f KiB/conn (%d -> %d KiB)\n",
			perConnKiB(m.redisBefore, m.redisAfter, m.conns), m.redisBefore>>10, m.redisAfter>>10)
	}
	for _, mp := range m.proxies {
		k := perConnKiB(mp.proxyBefore, mp.proxyAfter, m.conns)
		fmt.Fprintf(out, "  %-33s %.1f KiB/conn (%d -> %d KiB)   target <= 16 KiB: %s\n",
			mp.name+" (fresh process):", k, mp.proxyBefore>>10, mp.proxyAfter>>10, verdict(k <= 16))
		if mp.stackAfter > 0 {
			fmt.Fprintf(out, "    of which Go stacks %.1f KiB/conn, Go heap in use %.1f KiB/conn (/metrics)\n",
				perConnKiB(mp.stackBefore, mp.stackAfter, m.conns), perConnKiB(mp.heapBefore, mp.heapAfter, m.conns))
		}
	}
	if len(m.proxies) == 0 && s.cfg.Stub {
		fmt.Fprintf(out, "  exproxy: skipped (stub run)\n")
	}
}

func (s *Suite) reportSlow(out io.Writer) {
	r := s.slow
	if r == nil {
		return
	}
	if s.cfg.Stub {
		fmt.Fprintf(out, "\nSLOW READERS: skipped (stub run)\n")
		return
	}
	perClient := 1.25*float64(r.limit) + perClientSlack
	fmt.Fprintf(out, "\nSLOW READERS: clients pipelining GETs of a %d MiB value; each proxy fresh, with --client-output-limit=%d MiB; %d round(s)\n",
		r.value>>20, r.limit>>20, s.cfg.SlowRounds)
	fmt.Fprintf(out, "  fast: reads at once; slow: %s; stalled: reads nothing until the proxy has cut it for passing the limit (its exproxy_output_limit_closed_total), then drains\n",
		"256 KiB per read, 10 ms between reads")
	fmt.Fprintf(out, "  peak = VmHWM - VmRSS before the clients; bound (issue 11) = clients x (1.25 x limit + %d MiB) = %.0f MiB per client\n",
		perClientSlack>>20, perClient/(1<<20))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "reader\tclients\tGETs each\tproxy\tpeak MiB\tpeak/client MiB\tpeak/limit per client\tafter MiB\tcomplete/cut\tbound MiB\n")
	for _, c := range r.cases {
		for _, cand := range s.cfg.candidates() {
			runs := r.runs[c][cand.Name]
			if len(runs) == 0 {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\tERROR (below)\t\t\t\t\t\n", c.mode, c.clients, c.gets, cand.Name)
				continue
			}
			mib := func(f func(slowRun) int64) stats.Summary {
				v := make([]float64, len(runs))
				for i, run := range runs {
					v[i] = float64(f(run)) / (1 << 20)
				}
				return stats.Summarize(v)
			}
			peak := mib(func(x slowRun) int64 { return x.peak - x.base })
			after := mib(func(x slowRun) int64 { return x.after - x.base })
			last := runs[len(runs)-1].res
			cut := fmt.Sprintf("%d/%d", last.Complete, last.Cut)
			for _, run := range runs {
				if run.stallTimeout {
					cut += " (not all cut within 30 s)"
					break
				}
			}
			bound := float64(c.clients) * perClient / (1 << 20)
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%.1f\t%.2f\t%.0f\t%s\t%.0f %s\n",
				c.mode, c.clients, c.gets, cand.Name, peak.Format("%.0f"), peak.Max/float64(c.clients),
				peak.Max*(1<<20)/float64(c.clients)/float64(r.limit), after.Median, cut, bound, verdict(peak.Max <= bound))
		}
	}
	tw.Flush()
	for _, e := range r.errs {
		fmt.Fprintf(out, "  ERROR: %s\n", oneLine(e))
	}
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

func collectC(runs []rcost.Result, f func(rcost.Result) float64) []float64 {
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
