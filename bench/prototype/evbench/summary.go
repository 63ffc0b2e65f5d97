package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// summarize prints, per mode and workload, each candidate's median
// [min..max] of CPU per request and of its throughput ratio to the direct
// run of the same round, with context switches, threads and syscalls.
func summarize(path string, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var runs []Run
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r Run
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return err
		}
		if r.Session < *flagSince {
			continue
		}
		runs = append(runs, r)
	}
	type roundKey struct {
		session, mode, work string
		round               int
	}
	direct := map[roundKey]float64{}
	twem := map[roundKey]float64{} // twemproxy's CPU per request in the same round
	for _, r := range runs {
		k := roundKey{r.Session, r.Mode, r.Workload, r.Round}
		if r.Cand == "direct" {
			direct[k] = r.RPS
		}
		if r.Cand == "twem" && r.Perf == nil {
			twem[k] = r.CPUus
		}
	}
	type groupKey struct{ mode, work, cand string }
	type group struct {
		cpu, ratio, cs, nvcs, thr, sys, rps, bench, vsTwem []float64
		perf                                               map[string][]float64
	}
	groups := map[groupKey]*group{}
	var order []groupKey
	for _, r := range runs {
		k := groupKey{r.Mode, r.Workload, r.Cand}
		g := groups[k]
		if g == nil {
			g = &group{perf: map[string][]float64{}}
			groups[k] = g
			order = append(order, k)
		}
		g.rps = append(g.rps, r.RPS)
		g.bench = append(g.bench, r.BenchCPU)
		if d := direct[roundKey{r.Session, r.Mode, r.Workload, r.Round}]; d > 0 {
			g.ratio = append(g.ratio, r.RPS/d)
		}
		if r.Perf != nil {
			g.sys = append(g.sys, r.Syscalls)
			for e, v := range r.Perf {
				g.perf[e] = append(g.perf[e], v)
			}
			continue // perf's own cost inflates CPU: keep it out of the CPU figures
		}
		if t := twem[roundKey{r.Session, r.Mode, r.Workload, r.Round}]; t > 0 && r.Cand != "direct" {
			g.vsTwem = append(g.vsTwem, r.CPUus/t)
		}
		if r.Cand != "direct" {
			g.cpu = append(g.cpu, r.CPUus)
			g.cs = append(g.cs, r.CtxSw)
			g.nvcs = append(g.nvcs, r.NvCtxSw)
			g.thr = append(g.thr, float64(r.Threads))
		}
	}
	sort.SliceStable(order, func(i, j int) bool {
		if order[i].mode != order[j].mode {
			return order[i].mode > order[j].mode // quiet before busy
		}
		return workIndex(order[i].work) < workIndex(order[j].work)
	})
	last := ""
	for _, k := range order {
		g := groups[k]
		if h := k.mode + " " + k.work; h != last {
			fmt.Fprintf(w, "\n%s\n%-15s %5s %-24s %-22s %-22s %-12s %-6s %-4s %-8s %s\n", strings.ToUpper(h),
				"cand", "runs", "CPU µs/req", "CPU/twem same round", "ratio to direct", "ctxsw/req", "invol", "thr", "bench µs", "syscalls/req (perf)")
			last = h
		}
		fmt.Fprintf(w, "%-15s %5d %-24s %-22s %-22s %-12s %-6s %-4s %-8s %s\n", k.cand, len(g.rps),
			mmm(g.cpu, "%.2f"), mmm(g.vsTwem, "%.2f"), mmm(g.ratio, "%.2f"), med(g.cs, "%.3f"), med(g.nvcs, "%.3f"), med(g.thr, "%.0f"),
			med(g.bench, "%.2f"), perfLine(g.perf))
	}
	return nil
}

func workIndex(name string) int {
	for i, w := range workloads {
		if w.name == name {
			return i
		}
	}
	return len(workloads)
}

func median(v []float64) (lo, mid, hi float64) {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		mid = s[n/2]
	} else {
		mid = (s[n/2-1] + s[n/2]) / 2
	}
	return s[0], mid, s[n-1]
}

func mmm(v []float64, f string) string {
	if len(v) == 0 {
		return "-"
	}
	lo, mid, hi := median(v)
	return fmt.Sprintf(f+" ["+f+".."+f+"]", mid, lo, hi)
}

func med(v []float64, f string) string {
	if len(v) == 0 {
		return "-"
	}
	_, mid, _ := median(v)
	return fmt.Sprintf(f, mid)
}

func perfLine(p map[string][]float64) string {
	if len(p) == 0 {
		return ""
	}
	short := func(e string) string {
		e = strings.TrimPrefix(e, "syscalls:sys_enter_")
		return strings.TrimPrefix(e, "raw_syscalls:sys_enter")
	}
	var b strings.Builder
	for _, e := range perfEvents {
		v, ok := p[e]
		if !ok || e == "task-clock" {
			continue
		}
		_, mid, _ := median(v)
		if mid < 0.005 {
			continue
		}
		name := short(e)
		if name == "" {
			name = "all"
		}
		fmt.Fprintf(&b, "%s %.2f ", name, mid)
	}
	return strings.TrimSpace(b.String())
}
