// Command evbench measures what a proxy costs per request next to twemproxy
// and the prototypes in this folder, the way bench/internal/suite does:
// redis-server on CPU 0, the proxy and redis-benchmark on CPU 1, candidates
// interleaved within each round. With --busy, a CPU-bound shell loop runs
// on CPU 1 at normal priority during every measurement (direct ones too),
// as an application would on a sidecar's core.
//
//	go run ./evbench --modes quiet,busy --rounds 3 --out /tmp/ev.jsonl
//	go run ./evbench --summary /tmp/ev.jsonl
//
// Every run is one JSON line in --out; --summary prints median [min..max]
// per candidate, mode and workload.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/exproxy/exproxy/bench/internal/fixture"
	"github.com/exproxy/exproxy/bench/internal/idle"
	"github.com/exproxy/exproxy/bench/internal/rbench"
)

// workload is one redis-benchmark shape (GET only, keys filled first).
type workload struct {
	name     string
	clients  int
	pipeline int
	size     int
	idle     int // idle connections held open to the side during the run
	guessN   int // -n of the calibration run
}

var workloads = []workload{
	{"p1", 50, 1, 64, 0, 60000},
	{"p16", 50, 16, 64, 0, 600000},
	{"c1000", 1000, 1, 64, 0, 40000},
	{"idle1000", 50, 1, 64, 1000, 60000},
	{"d1k", 50, 1, 1024, 0, 60000},
}

// Run is one measurement, one JSON line of output.
type Run struct {
	Session  string             `json:"session"` // one evbench invocation: rounds pair up within it
	Mode     string             `json:"mode"`
	Workload string             `json:"workload"`
	Round    int                `json:"round"`
	Cand     string             `json:"cand"`
	N        int                `json:"n"`
	RPS      float64            `json:"rps"`
	Secs     float64            `json:"secs"`
	CPUus    float64            `json:"cpu_us_req"`      // proxy CPU per request (sum of its threads' schedstat run time)
	CPUTick  float64            `json:"cpu_tick_us_req"` // the same from utime+stime (10 ms ticks)
	CtxSw    float64            `json:"ctxsw_req"`       // proxy voluntary+involuntary switches per request, all threads
	NvCtxSw  float64            `json:"nvctxsw_req"`     // of which involuntary
	Threads  int                `json:"threads"`         // proxy threads after the run
	BenchCPU float64            `json:"bench_cpu_us"`    // redis-benchmark CPU per request
	RedisCPU float64            `json:"redis_cpu_us"`    // redis-server CPU per request
	Syscalls float64            `json:"syscalls_req"`    // with --perf: all syscalls per request
	Perf     map[string]float64 `json:"perf,omitempty"`  // with --perf: per request, by event
	P50ms    float64            `json:"p50_ms"`
	// With --per-thread: each thread's share, by TID (the first is the
	// main thread; Go starts sysmon next).
	PerThread []threadDelta `json:"per_thread,omitempty"`
}

var (
	flagModes    = flag.String("modes", "quiet", "comma list of quiet,busy")
	flagWork     = flag.String("workloads", "p1,p16,c1000,idle1000,d1k", "comma list of workloads")
	flagCands    = flag.String("cands", "direct,twem,exp,gor,gnet", "comma list of candidates (see candidates.go)")
	flagRounds   = flag.Int("rounds", 3, "rounds per workload")
	flagSecs     = flag.Float64("secs", 1.5, "target duration of a direct run")
	flagOut      = flag.String("out", "/tmp/evbench.jsonl", "JSON lines output (appended)")
	flagThreads  = flag.Bool("per-thread", false, "record each proxy thread's context switches and CPU")
	flagPerf     = flag.Bool("perf", false, "count the proxy's syscalls with perf stat (costs CPU: use for syscall figures only)")
	flagSummary  = flag.String("summary", "", "print the summary of a JSON lines file and exit")
	flagSince    = flag.String("since", "", "with --summary: only sessions at or after this one (MMDD-HHMMSS)")
	flagExproxy  = flag.String("exproxy", "/tmp/exproxy-main", "exproxy binary")
	flagProtoDir = flag.String("bindir", "/tmp/evproto", "where the prototypes are built")
)

func main() {
	flag.Parse()
	log.SetFlags(log.Ltime)
	if *flagSummary != "" {
		if err := summarize(*flagSummary, os.Stdout); err != nil {
			log.Fatal(err)
		}
		return
	}
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	if _, err := fixture.RaiseNoFile(65536); err != nil {
		return err
	}
	cands, err := pickCandidates(strings.Split(*flagCands, ","))
	if err != nil {
		return err
	}
	if err := buildPrototypes(cands); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "evbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	redis, err := fixture.StartRedis(dir, "0")
	if err != nil {
		return err
	}
	defer redis.Stop()
	if err := fixture.PinSelf("1"); err != nil {
		return err
	}
	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	for _, c := range cands {
		p, err := c.start(dir, redis.Addr)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		procs = append(procs, p)
	}
	out, err := os.OpenFile(*flagOut, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	enc := json.NewEncoder(out)
	ctx := context.Background()
	session := time.Now().Format("0102-150405")
	filled := 0
	for _, mode := range strings.Split(*flagModes, ",") {
		busy := mode == "busy"
		for _, wname := range strings.Split(*flagWork, ",") {
			w, ok := findWorkload(wname)
			if !ok {
				return fmt.Errorf("unknown workload %q", wname)
			}
			if filled != w.size {
				if err := fill(redis.Addr, w.size); err != nil {
					return err
				}
				filled = w.size
			}
			// Two direct warm-up runs (procs[0] is direct); the first
			// after a fill or a mode change runs slow.
			var cal Run
			for range 2 {
				cal, err = measure(ctx, w, w.guessN, procs[0], redis, busy)
				if err != nil {
					return fmt.Errorf("calibrate %s: %w", w.name, err)
				}
			}
			n := int(cal.RPS * *flagSecs)
			n = max(n, w.guessN) // CPU per request needs enough requests on a slow machine
			log.Printf("%s %s: direct %.0f rps, -n %d", mode, w.name, cal.RPS, n)
			for r := 0; r < *flagRounds; r++ {
				for i := range procs {
					p := procs[(i+r)%len(procs)]
					if !p.alive() {
						return fmt.Errorf("%s died: %s", p.name, p.logTail())
					}
					res, err := measure(ctx, w, n, p, redis, busy)
					if err != nil {
						log.Printf("%s %s round %d %s: %v", mode, w.name, r, p.name, err)
						continue
					}
					res.Session, res.Mode, res.Round = session, mode, r
					log.Printf("%-5s %-8s r%d %-14s %8.0f rps  %6.2f µs/req  %5.3f cs/req  %2d thr  sys %.2f",
						mode, w.name, r, p.name, res.RPS, res.CPUus, res.CtxSw, res.Threads, res.Syscalls)
					if err := enc.Encode(res); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

func findWorkload(name string) (workload, bool) {
	for _, w := range workloads {
		if w.name == name {
			return w, true
		}
	}
	return workload{}, false
}

// measure runs redis-benchmark once against p.
func measure(ctx context.Context, w workload, n int, p *proc, redis *fixture.Process, busy bool) (Run, error) {
	if w.idle > 0 {
		conns, err := idle.Open(ctx, p.addr, w.idle, 64)
		if err != nil {
			return Run{}, err
		}
		defer conns.Close()
	}
	var spin *exec.Cmd
	if busy {
		spin = exec.Command("taskset", "-c", "1", "sh", "-c", "while :; do :; done")
		spin.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := spin.Start(); err != nil {
			return Run{}, fmt.Errorf("busy loop: %w", err)
		}
		defer func() {
			_ = spin.Process.Kill()
			_ = spin.Wait()
		}()
		time.Sleep(100 * time.Millisecond)
	}
	cfg := rbench.Config{Addr: p.addr, CPU: "1", Tests: "get", Clients: w.clients, Pipeline: w.pipeline,
		DataSize: w.size, Requests: n, Keyspace: 100000}
	var perf *exec.Cmd
	var perfOut strings.Builder
	if *flagPerf && p.pid != 0 {
		args := []string{"stat", "-x", ",", "-p", strconv.Itoa(p.pid)}
		for _, e := range perfEvents {
			args = append(args, "-e", e)
		}
		perf = exec.Command("perf", args...)
		perf.Stdout, perf.Stderr = &perfOut, &perfOut
		if err := perf.Start(); err != nil {
			return Run{}, err
		}
		time.Sleep(300 * time.Millisecond)
	}
	before := snap(p.pid)
	r0, _ := fixture.CPUTime(redis.Pid)
	t0 := time.Now()
	args := append([]string{"-c", "1", "redis-benchmark"}, cfg.Args()...)
	cmd := exec.CommandContext(ctx, "taskset", args...)
	b, err := cmd.Output()
	secs := time.Since(t0).Seconds()
	after := snap(p.pid)
	r1, _ := fixture.CPUTime(redis.Pid)
	if perf != nil {
		_ = perf.Process.Signal(syscall.SIGINT)
		_ = perf.Wait()
	}
	if err != nil {
		return Run{}, fmt.Errorf("redis-benchmark: %w: %s", err, b)
	}
	res, err := rbench.Parse(b, n)
	if err != nil {
		return Run{}, err
	}
	fn := float64(n)
	run := Run{Workload: w.name, Cand: p.name, N: n, RPS: res.RPS(), Secs: secs,
		RedisCPU: float64((r1 - r0).Microseconds()) / fn, P50ms: res.Tests[0].P50ms}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		run.BenchCPU = float64(time.Duration(ru.Utime.Nano()+ru.Stime.Nano()).Microseconds()) / fn
	}
	if p.pid != 0 {
		run.CPUus = float64((after.cpu - before.cpu).Microseconds()) / fn
		run.CPUTick = float64((after.tick - before.tick).Microseconds()) / fn
		run.CtxSw = float64(after.vcs+after.nvcs-before.vcs-before.nvcs) / fn
		run.NvCtxSw = float64(after.nvcs-before.nvcs) / fn
		run.Threads = after.threads
		if *flagThreads {
			run.PerThread = perThread(before, after, fn)
		}
	}
	if perf != nil {
		run.Perf = parsePerf(perfOut.String(), fn)
		run.Syscalls = run.Perf["raw_syscalls:sys_enter"]
	}
	return run, nil
}

var perfEvents = []string{
	"raw_syscalls:sys_enter",
	"syscalls:sys_enter_read", "syscalls:sys_enter_write",
	"syscalls:sys_enter_writev", "syscalls:sys_enter_readv",
	"syscalls:sys_enter_epoll_wait", "syscalls:sys_enter_epoll_pwait",
	"syscalls:sys_enter_epoll_ctl", "syscalls:sys_enter_futex",
	"syscalls:sys_enter_nanosleep", "syscalls:sys_enter_getpid", "syscalls:sys_enter_tgkill",
	"sched:sched_wakeup", "sched:sched_switch",
	"context-switches", "cpu-migrations", "task-clock",
}

func parsePerf(out string, n float64) map[string]float64 {
	m := map[string]float64{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			m[f[2]] = v / n
		}
	}
	return m
}

type threadDelta struct {
	TID   int     `json:"tid"`
	Vol   float64 `json:"vol_req"`
	Invol float64 `json:"invol_req"`
	CPU   float64 `json:"cpu_us_req"`
}

type taskSnap struct {
	vcs, nvcs int64
	cpu       time.Duration
}

type procSnap struct {
	tasks     map[int]taskSnap
	cpu, tick time.Duration
	vcs, nvcs int64
	threads   int
}

// snap reads the proxy's CPU time and the context switches of all its
// threads (a thread's counts live in /proc/PID/task/TID/status only).
func snap(pid int) procSnap {
	s := procSnap{tasks: map[int]taskSnap{}}
	if pid == 0 {
		return s
	}
	s.tick, _ = fixture.CPUTime(pid)
	dirs, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	s.threads = len(dirs)
	for _, d := range dirs {
		tid, _ := strconv.Atoi(filepath.Base(d))
		var t taskSnap
		// utime+stime tick at 10 ms; the scheduler's own run time per
		// thread (schedstat, ns) resolves a short run's CPU far better.
		if b, err := os.ReadFile(d + "/schedstat"); err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				ns, _ := strconv.ParseInt(f[0], 10, 64)
				t.cpu = time.Duration(ns)
			}
		}
		if b, err := os.ReadFile(d + "/status"); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
					t.vcs, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				} else if v, ok := strings.CutPrefix(line, "nonvoluntary_ctxt_switches:"); ok {
					t.nvcs, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				}
			}
		}
		s.tasks[tid] = t
		s.cpu += t.cpu
		s.vcs += t.vcs
		s.nvcs += t.nvcs
	}
	return s
}

// perThread is each thread's share of a run, by TID.
func perThread(before, after procSnap, n float64) []threadDelta {
	var out []threadDelta
	for tid, a := range after.tasks {
		b := before.tasks[tid]
		out = append(out, threadDelta{TID: tid, Vol: float64(a.vcs-b.vcs) / n, Invol: float64(a.nvcs-b.nvcs) / n,
			CPU: float64((a.cpu - b.cpu).Microseconds()) / n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TID < out[j].TID })
	return out
}

// fill sets every key redis-benchmark -r 100000 draws (key:%012d) to a
// value of size bytes, so each GET hits.
func fill(addr string, size int) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	val := strings.Repeat("x", size)
	w := bufio.NewWriterSize(c, 1<<20)
	r := bufio.NewReader(c)
	const batch = 1000
	for i := 0; i < 100000; i += batch {
		for j := i; j < i+batch; j++ {
			k := fmt.Sprintf("key:%012d", j)
			fmt.Fprintf(w, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, size, val)
		}
		if err := w.Flush(); err != nil {
			return err
		}
		for j := 0; j < batch; j++ {
			line, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if line != "+OK\r\n" {
				return fmt.Errorf("fill: SET answered %q", line)
			}
		}
	}
	return nil
}
