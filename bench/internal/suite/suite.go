// Package suite is the benchmark run: it owns the redis-server and exproxy
// processes, runs every workload interleaved (direct, proxy, direct, proxy,
// ...) over several rounds, and prints one table.
package suite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/exproxy/exproxy/bench/internal/fixture"
	"github.com/exproxy/exproxy/bench/internal/idle"
	"github.com/exproxy/exproxy/bench/internal/occ"
	"github.com/exproxy/exproxy/bench/internal/rbench"
)

// Config controls a run.
type Config struct {
	Rounds      int
	Quick       bool          // smoke run: fewer requests, shorter runs
	OCCDuration time.Duration // per optimistic-locking run
	MemConns    int           // idle connections for the memory figure
	Only        []string      // workload groups to run (passthrough, occ, memory); empty = all

	ProxyBin  string   // built exproxy binary
	ProxyArgs []string // extra proxy flags
	Stub      bool     // no proxy: the "proxy" side is a second direct measurement

	CPURedis, CPULoad string // taskset CPU lists; "" = no pinning
	Protocol          int    // RESP version for the go-redis workloads

	PerfDir string // when set, record a perf profile of the proxy into it

	Dir string    // scratch directory for logs
	Log io.Writer // progress, per run
	Out io.Writer // final report
}

func (c Config) wants(group string) bool {
	if len(c.Only) == 0 {
		return true
	}
	for _, g := range c.Only {
		if g == group {
			return true
		}
	}
	return false
}

// wantsAnyWorkload reports whether Only names single passthrough workloads.
func (c Config) wantsAnyWorkload() bool {
	for _, g := range c.Only {
		if g != "passthrough" && g != "occ" && g != "memory" {
			return true
		}
	}
	return false
}

// side is one of the two things measured in every round.
type side struct {
	name string // "direct" or "proxy" (or "stub" for the stand-in)
	addr string
	pid  int // proxy pid for CPU accounting; 0 when there is no proxy
}

// Suite holds the processes of a run and what was measured.
type Suite struct {
	cfg    Config
	redis  *fixture.Process
	proxy  *fixture.Process
	direct side
	via    side

	pass   []*passResult
	occs   []*occGroup
	mem    *memResult
	failed []string // workload errors; any makes the run fail
	lost   bool     // a lost update: the loudest failure
}

// Run starts the processes, runs the workloads and writes the report.
// It returns an error when any workload failed or an update was lost.
func Run(ctx context.Context, cfg Config) error {
	s := &Suite{cfg: cfg}
	defer s.stop()
	var err error
	s.redis, err = fixture.StartRedis(cfg.Dir, cfg.CPURedis)
	if err != nil {
		return fmt.Errorf("start redis: %w", err)
	}
	s.direct = side{name: "direct", addr: s.redis.Addr}
	if cfg.Stub {
		s.via = side{name: "stub", addr: s.redis.Addr}
	} else {
		s.proxy, err = fixture.StartProxy(cfg.ProxyBin, cfg.Dir, cfg.CPULoad, s.redis.Addr, cfg.ProxyArgs)
		if err != nil {
			return fmt.Errorf("start proxy: %w", err)
		}
		s.via = side{name: "proxy", addr: s.proxy.Addr, pid: s.proxy.Pid}
	}
	s.logf("redis-server pid %d on %s (cpu %q); %s on %s (cpu %q)",
		s.redis.Pid, s.redis.Addr, cfg.CPURedis, s.via.name, s.via.addr, cfg.CPULoad)

	if cfg.wants("passthrough") || cfg.wantsAnyWorkload() {
		s.runPassthrough(ctx)
	}
	if cfg.wants("occ") {
		s.runOCC(ctx)
	}
	if cfg.wants("memory") {
		s.runMemory(ctx)
	}
	if cfg.PerfDir != "" && !cfg.Stub && ctx.Err() == nil {
		if err := s.profile(ctx); err != nil {
			s.fail("perf profile: %v", err)
		}
	}
	if s.proxy != nil && !s.proxy.Alive() {
		s.fail("exproxy died during the run: %s", s.proxy.LogTail())
	}
	s.report()
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.lost {
		return fmt.Errorf("%w: see the report above", occ.ErrLostUpdate)
	}
	if len(s.failed) > 0 {
		return fmt.Errorf("%d workload(s) failed", len(s.failed))
	}
	return nil
}

func (s *Suite) stop() {
	s.proxy.Stop()
	s.redis.Stop()
}

func (s *Suite) logf(format string, args ...any) {
	fmt.Fprintf(s.cfg.Log, "exbench: "+format+"\n", args...)
}

func (s *Suite) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.failed = append(s.failed, msg)
	s.logf("ERROR: %s", msg)
}

// cpu samples a process's CPU time; a missing pid reads as zero so the
// stub mode needs no special cases.
func cpu(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	d, err := fixture.CPUTime(pid)
	if err != nil {
		return 0
	}
	return d
}

// ---- passthrough -------------------------------------------------------

type passWorkload struct {
	name     string
	desc     string
	clients  int
	pipeline int
	size     int
	requests int // per test (SET and GET each); an upper bound, see calibrate
	idle     int // idle connections held open during the run
	target   float64
	cpuMax   float64 // µs/request target; 0 = none
}

func (s *Suite) passWorkloads() []passWorkload {
	w := []passWorkload{
		{name: "p1-64B", desc: "GET/SET 64 B, 50 clients, pipeline 1", clients: 50, pipeline: 1, size: 64, requests: 100_000, target: 0.70, cpuMax: 6},
		{name: "p16-64B", desc: "GET/SET 64 B, 50 clients, pipeline 16", clients: 50, pipeline: 16, size: 64, requests: 1_000_000, target: 0.90},
		{name: "p1-1KB", desc: "GET/SET 1 KB, 50 clients, pipeline 1", clients: 50, pipeline: 1, size: 1024, requests: 100_000},
		{name: "p1-16KB", desc: "GET/SET 16 KB, 50 clients, pipeline 1", clients: 50, pipeline: 1, size: 16384, requests: 50_000},
		{name: "c1000", desc: "GET/SET 64 B, 1000 clients, pipeline 1", clients: 1000, pipeline: 1, size: 64, requests: 100_000},
		{name: "idle1000", desc: "GET/SET 64 B, 50 clients + 1000 idle conns", clients: 50, pipeline: 1, size: 64, requests: 100_000, idle: 1000},
	}
	if s.cfg.Quick {
		for i := range w {
			w[i].requests /= 5
		}
	}
	if s.cfg.wants("passthrough") {
		return w
	}
	var picked []passWorkload
	for _, x := range w {
		if s.cfg.wants(x.name) {
			picked = append(picked, x)
		}
	}
	return picked
}

type passRun struct {
	rps        float64
	setRPS     float64
	getRPS     float64
	p50ms      float64 // of GET
	proxyUSReq float64 // proxy CPU µs per request; NaN without proxy
	redisUSReq float64
}

type passResult struct {
	w             passWorkload
	direct, proxy []passRun
	ratios        []float64
	err           string
	cmdline       string
}

func (s *Suite) runPassthrough(ctx context.Context) {
	for _, w := range s.passWorkloads() {
		w.requests = s.calibrate(ctx, w)
		r := &passResult{w: w}
		s.pass = append(s.pass, r)
		for round := 1; round <= s.cfg.Rounds && r.err == "" && ctx.Err() == nil; round++ {
			// Alternate which side goes first (direct, proxy | proxy,
			// direct | ...), so a machine that gets busier or quieter during
			// the run does not favour one side.
			order := []side{s.direct, s.via}
			if round%2 == 0 {
				order[0], order[1] = order[1], order[0]
			}
			got := map[string]passRun{}
			for _, sd := range order {
				run, err := s.passOnce(ctx, w, sd)
				if err != nil {
					r.err = err.Error()
					s.fail("%s %s: %v", w.name, sd.name, err)
					break
				}
				got[sd.name] = run
			}
			if r.err != "" {
				break
			}
			d, p := got[s.direct.name], got[s.via.name]
			r.direct = append(r.direct, d)
			r.proxy = append(r.proxy, p)
			r.ratios = append(r.ratios, p.rps/d.rps)
			s.logf("round %d/%d %-9s direct %8.0f rps | %s %8.0f rps (%.2fx) proxy cpu %.2f µs/req, redis cpu %.2f|%.2f µs/req",
				round, s.cfg.Rounds, w.name, d.rps, s.via.name, p.rps, p.rps/d.rps, p.proxyUSReq, d.redisUSReq, p.redisUSReq)
		}
		r.cmdline = "redis-benchmark " + strings.Join(s.rbConfig(w, "HOST:PORT").Args(), " ")
	}
}

// calibrate sizes a workload so one direct run takes about 1.5 seconds
// (0.4 s with --quick): on a loaded shared machine a fixed request count
// could stretch the run far past its budget, and on a quiet one a short
// run is mostly connection setup. Both sides of every round use the same
// count, so the ratios stay comparable. The warm-up run also fills the
// keyspace, so GETs hit.
func (s *Suite) calibrate(ctx context.Context, w passWorkload) int {
	secs := 1.5
	if s.cfg.Quick {
		secs = 0.4
	}
	probe := w
	probe.requests = max(2000, w.requests/20)
	res, err := rbench.Run(ctx, s.rbConfig(probe, s.direct.addr))
	if err != nil {
		s.logf("%s: calibration run failed (%v); using -n %d", w.name, err, w.requests)
		return w.requests
	}
	n := int(res.RPS()*secs/2) / 1000 * 1000
	n = max(probe.requests, min(n, w.requests))
	s.logf("%s: calibrated at %.0f rps direct: -n %d per test", w.name, res.RPS(), n)
	return n
}

func (s *Suite) rbConfig(w passWorkload, addr string) rbench.Config {
	return rbench.Config{
		Addr: addr, CPU: s.cfg.CPULoad, Tests: "set,get",
		Clients: w.clients, Pipeline: w.pipeline, DataSize: w.size,
		Requests: w.requests, Keyspace: 100_000,
	}
}

func (s *Suite) passOnce(ctx context.Context, w passWorkload, sd side) (passRun, error) {
	if w.idle > 0 {
		conns, err := idle.Open(ctx, sd.addr, w.idle, 64)
		if err != nil {
			return passRun{}, err
		}
		defer conns.Close()
	}
	// A hung proxy must not hang the run.
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	p0, r0 := cpu(sd.pid), cpu(s.redis.Pid)
	res, err := rbench.Run(rctx, s.rbConfig(w, sd.addr))
	p1, r1 := cpu(sd.pid), cpu(s.redis.Pid)
	if err != nil {
		return passRun{}, err
	}
	n := float64(res.Requests())
	run := passRun{rps: res.RPS(), proxyUSReq: math.NaN()}
	for _, t := range res.Tests {
		switch t.Name {
		case "SET":
			run.setRPS = t.RPS
		case "GET":
			run.getRPS = t.RPS
			run.p50ms = t.P50ms
		}
	}
	if sd.pid != 0 {
		run.proxyUSReq = float64((p1 - p0).Microseconds()) / n
	}
	run.redisUSReq = float64((r1 - r0).Microseconds()) / n
	return run, nil
}

// ---- optimistic locking ------------------------------------------------

// occVariant is one (method, path) pair measured each round.
type occVariant struct {
	method occ.Method
	side   string // "direct" or the proxy side's name
}

type occGroup struct {
	keys     int
	variants []occVariant
	runs     map[occVariant][]occ.Result
	errs     map[occVariant]string
	skipped  map[occVariant]string
	// per-round EXCAS/WATCH ratios
	casVsWatchDirect, casVsWatchProxy []float64
}

func (s *Suite) runOCC(ctx context.Context) {
	dur := s.cfg.OCCDuration
	for _, keys := range []int{1, 100} {
		g := &occGroup{
			keys:    keys,
			runs:    map[occVariant][]occ.Result{},
			errs:    map[occVariant]string{},
			skipped: map[occVariant]string{},
		}
		s.occs = append(s.occs, g)
		g.variants = []occVariant{
			{occ.Watch, "direct"}, {occ.Watch, s.via.name},
			{occ.ExVer, s.via.name}, {occ.ExCAS, s.via.name},
			{occ.Lua, "direct"}, {occ.Lua, s.via.name},
		}
		for _, v := range g.variants {
			if v.method.NeedsProxy() && s.cfg.Stub {
				g.skipped[v] = "needs the proxy (stub run)"
			}
		}
		for round := 1; round <= s.cfg.Rounds && ctx.Err() == nil; round++ {
			got := map[occVariant]float64{}
			for _, v := range g.variants {
				if g.skipped[v] != "" || g.errs[v] != "" {
					continue
				}
				addr, pid := s.direct.addr, 0
				if v.side != "direct" {
					addr, pid = s.via.addr, s.via.pid
				}
				var cpuFn func() time.Duration
				if pid != 0 {
					cpuFn = func() time.Duration { return cpu(pid) }
				}
				res, err := occ.Run(ctx, occ.Config{
					Addr: addr, Method: v.method, Clients: 32, Keys: keys, Duration: dur,
					Prefix:   fmt.Sprintf("exbench:%s:%s:%d:%d", v.method, v.side, keys, round),
					Protocol: s.cfg.Protocol, CPU: cpuFn,
				})
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					g.errs[v] = err.Error()
					if errors.Is(err, occ.ErrLostUpdate) {
						s.lost = true
						s.logf("!!!!!!!! %v", err)
					}
					s.fail("occ %d keys %s/%s: %v", keys, v.method, v.side, err)
					continue
				}
				g.runs[v] = append(g.runs[v], res)
				got[v] = res.CommitsPerSec()
				s.logf("round %d/%d occ keys=%-3d %-9s %-6s %8.0f commits/s  %.2f retries/commit  %.2f RT/commit  p50 %v p99 %v",
					round, s.cfg.Rounds, keys, v.method, v.side, res.CommitsPerSec(), res.RetriesPerCommit(), res.RTPerCommit(),
					res.P50.Round(time.Microsecond), res.P99.Round(time.Microsecond))
			}
			cas := got[occVariant{occ.ExCAS, s.via.name}]
			if wd := got[occVariant{occ.Watch, "direct"}]; cas > 0 && wd > 0 {
				g.casVsWatchDirect = append(g.casVsWatchDirect, cas/wd)
			}
			if wp := got[occVariant{occ.Watch, s.via.name}]; cas > 0 && wp > 0 {
				g.casVsWatchProxy = append(g.casVsWatchProxy, cas/wp)
			}
		}
	}
}

// ---- memory ------------------------------------------------------------

type memResult struct {
	conns                   int
	proxyBefore, proxyAfter int64
	redisBefore, redisAfter int64 // redis's own cost of the same connections, direct
	// Go runtime figures of the proxy from its /metrics, when available.
	stackBefore, stackAfter int64
	heapBefore, heapAfter   int64
	err                     string
}

// runMemory measures a fresh proxy, so heap grown by earlier workloads does
// not hide or inflate the per-connection cost.
func (s *Suite) runMemory(ctx context.Context) {
	m := &memResult{conns: s.cfg.MemConns}
	s.mem = m
	settle := func() { time.Sleep(time.Second) }

	// Redis's own per-connection memory, for scale.
	rb, err := fixture.RSS(s.redis.Pid)
	if err == nil {
		var conns *idle.Conns
		conns, err = idle.Open(ctx, s.redis.Addr, m.conns, 64)
		if err == nil {
			settle()
			var ra int64
			ra, err = fixture.RSS(s.redis.Pid)
			m.redisBefore, m.redisAfter = rb, ra
			conns.Close()
		}
	}
	if err != nil {
		m.err = fmt.Sprintf("redis: %v", err)
		s.fail("memory (redis, %d conns): %v", m.conns, err)
		return
	}
	if s.cfg.Stub {
		return
	}
	settle() // let redis reap the closed connections
	p, err := fixture.StartProxy(s.cfg.ProxyBin, s.cfg.Dir, s.cfg.CPULoad, s.redis.Addr, s.cfg.ProxyArgs)
	if err != nil {
		m.err = err.Error()
		s.fail("memory: start proxy: %v", err)
		return
	}
	defer p.Stop()
	settle()
	pb, err := fixture.RSS(p.Pid)
	sb, hb, merr := fixture.GoMemStats(p.Admin)
	if err == nil {
		var conns *idle.Conns
		conns, err = idle.Open(ctx, p.Addr, m.conns, 64)
		if err == nil {
			settle()
			var pa int64
			pa, err = fixture.RSS(p.Pid)
			m.proxyBefore, m.proxyAfter = pb, pa
			if sa, ha, err2 := fixture.GoMemStats(p.Admin); merr == nil && err2 == nil {
				m.stackBefore, m.stackAfter, m.heapBefore, m.heapAfter = sb, sa, hb, ha
			}
			conns.Close()
		}
	}
	if err != nil {
		m.err = fmt.Sprintf("proxy: %v", err)
		s.fail("memory (proxy, %d conns): %v", m.conns, err)
		return
	}
	s.logf("memory: proxy RSS %d -> %d KiB with %d idle conns (%.1f KiB/conn); redis %d -> %d KiB (%.1f KiB/conn)",
		m.proxyBefore>>10, m.proxyAfter>>10, m.conns, perConnKiB(m.proxyBefore, m.proxyAfter, m.conns),
		m.redisBefore>>10, m.redisAfter>>10, perConnKiB(m.redisBefore, m.redisAfter, m.conns))
}

func perConnKiB(before, after int64, n int) float64 {
	if n == 0 {
		return math.NaN()
	}
	return float64(after-before) / 1024 / float64(n)
}

// ---- profile -----------------------------------------------------------

// profile records the proxy during extra p1-64B runs, not part of the
// figures since sampling costs CPU: with Go's pprof when the proxy serves
// /debug/pprof on its admin port, and with perf (which also sees the
// kernel's share: syscalls, loopback TCP) when perf is installed.
func (s *Suite) profile(ctx context.Context) error {
	if err := os.MkdirAll(s.cfg.PerfDir, 0o755); err != nil {
		return fmt.Errorf("profile dir: %w", err)
	}
	w := s.passWorkloads()[0]
	load := func() error {
		_, err := s.passOnce(ctx, w, s.via)
		return err
	}
	var errs []error
	if s.proxy.Admin != "" {
		out := filepath.Join(s.cfg.PerfDir, "proxy.pprof")
		top, err := pprofProfile(ctx, s.proxy.Admin, s.cfg.ProxyBin, out, load)
		switch {
		case errors.Is(err, errNoPprof):
			s.logf("proxy serves no /debug/pprof on its admin port %s; perf only", s.proxy.Admin)
		case err != nil:
			errs = append(errs, err)
		default:
			path := filepath.Join(s.cfg.PerfDir, "pprof-top.txt")
			if err := os.WriteFile(path, top, 0o644); err != nil {
				errs = append(errs, fmt.Errorf("write %s: %w", path, err))
			}
			s.logf("pprof CPU profile of the proxy during %s: %s (top: %s)", w.name, out, path)
		}
	}
	var stat strings.Builder
	for _, pw := range s.passWorkloads()[:2] { // pipeline 1 and 16
		var n int
		c, err := perfStat(ctx, s.proxy.Pid, func() error {
			r, err := rbench.Run(ctx, s.rbConfig(pw, s.via.addr))
			n = r.Requests()
			return err
		})
		if err != nil {
			errs = append(errs, err)
			break
		}
		line := fmt.Sprintf("%s, proxy per request (perf stat over %d requests): %s", pw.name, n, formatPerfStat(c, n))
		s.logf("%s", line)
		stat.WriteString(line + "\n")
	}
	if stat.Len() > 0 {
		path := filepath.Join(s.cfg.PerfDir, "perf-stat.txt")
		if err := os.WriteFile(path, []byte(stat.String()), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("write %s: %w", path, err))
		}
	}
	data := filepath.Join(s.cfg.PerfDir, "perf.data")
	report, err := perfRecord(ctx, s.proxy.Pid, data, load)
	if err != nil {
		errs = append(errs, err)
	} else {
		path := filepath.Join(s.cfg.PerfDir, "perf-report.txt")
		if err := os.WriteFile(path, report, 0o644); err != nil {
			errs = append(errs, fmt.Errorf("write %s: %w", path, err))
		}
		s.logf("perf profile of the proxy during %s: %s (report: %s)", w.name, data, path)
	}
	return errors.Join(errs...)
}
