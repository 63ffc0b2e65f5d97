// Package suite is the benchmark run: it owns the redis-server, exproxy
// and reference C proxy processes, runs every workload interleaved over
// all of them (direct, exproxy, twemproxy, ... in an order that rotates
// each round) for several rounds, and prints one report.
package suite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/exproxy/exproxy/bench/internal/exlib"
	"github.com/exproxy/exproxy/bench/internal/fixture"
	"github.com/exproxy/exproxy/bench/internal/occ"
)

// Config controls a run.
type Config struct {
	Rounds      int
	Quick       bool          // smoke run: fewer requests, shorter runs
	OCCDuration time.Duration // per optimistic-locking run
	MemConns    int           // idle connections for the memory figure
	SlowLimit   int64         // client-output-limit the slow-reader proxies run with
	SlowValue   int64         // size of the value the slow-reader clients GET
	SlowRounds  int           // rounds of the slow-reader cases
	Only        []string      // workload groups or single workloads; empty = all
	Busy        bool          // also run the passthrough workloads on a busy host

	ProxyBin  string   // built exproxy binary (the first candidate's)
	ProxyArgs []string // extra proxy flags
	// Candidates are the exproxy binaries measured side by side, each a
	// side of its own in every round (an A/B of two builds); empty means
	// one candidate, "exproxy", running ProxyBin.
	Candidates []Candidate
	Stub       bool // no proxy: the "proxy" side is a second direct measurement

	TwemproxyBin string // nutcracker binary; "" = not measured
	PredixyBin   string // predixy binary; "" = not measured

	CostRounds   int           // rounds of the Redis-cost workloads
	CostDuration time.Duration // per Redis-cost run
	LuaBaseline  string        // an exproxy binary whose Lua library is costed beside ProxyBin's

	CPURedis, CPULoad string // taskset CPU lists; "" = no pinning
	Protocol          int    // RESP version for the go-redis workloads

	PerfDir string // when set, record a perf profile of the proxies into it

	Dir string    // scratch directory for logs
	Log io.Writer // progress, per run
	Out io.Writer // final report
}

// Candidate is one exproxy binary measured as a side of its own.
type Candidate struct {
	Name string // side name in the report, e.g. "exproxy", "old", "new"
	Bin  string
}

// candidates returns the exproxy binaries to measure: Candidates, or
// ProxyBin as "exproxy".
func (c Config) candidates() []Candidate {
	if len(c.Candidates) > 0 {
		return c.Candidates
	}
	return []Candidate{{Name: "exproxy", Bin: c.ProxyBin}}
}

// Groups are the workload groups --only takes besides single passthrough
// workloads.
// "cluster" is the passthrough rows against a Redis Cluster, which
// "passthrough" leaves out.
var Groups = []string{"passthrough", "cluster", "occ", "memory", "slowreader", "rediscost"}

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

// side is one thing measured in every passthrough round: Redis itself, or
// a proxy in front of it.
type side struct {
	name string // "direct", "exproxy" (or "stub"), "twemproxy", "predixy"
	addr string
	pid  int  // the proxy's pid for CPU accounting; 0 for direct
	c    bool // a C proxy: issue 12's yardstick
	ex   bool // an exproxy candidate (or the stub standing in for one)
}

// env is one Redis and the proxies in front of it. The run has one for
// open Redis and, for the requirepass workload, one whose Redis requires a
// password (every client there authenticates).
type env struct {
	password string
	redis    *fixture.Process // the Redis, or the cluster primary the direct side names
	// redisPids are the Redis processes whose CPU a run sums: the one
	// Redis, or every primary of a cluster.
	redisPids []int
	direct    side
	ex        side   // the first exproxy candidate, or the stub's second direct side
	exs       []side // every exproxy candidate (ex first)
	cprox     []side // twemproxy, predixy: those that started
	procs     []*fixture.Process
	exproc    *fixture.Process   // the first candidate's process; nil in a stub run
	exprocs   []*fixture.Process // every candidate's process
}

// sides lists what a passthrough round measures: direct first, then
// the exproxy candidates, then the C proxies.
func (e *env) sides() []side {
	return append(append([]side{e.direct}, e.exs...), e.cprox...)
}

// redisCPU is the CPU time of all of the env's Redis processes.
func (e *env) redisCPU() time.Duration {
	var d time.Duration
	for _, pid := range e.redisPids {
		d += cpu(pid)
	}
	return d
}

func (e *env) stop() {
	if e == nil {
		return
	}
	for i := len(e.procs) - 1; i >= 0; i-- {
		e.procs[i].Stop()
	}
}

// Suite holds the processes of a run and what was measured.
type Suite struct {
	cfg     Config
	main    *env
	auth    *env // started for the requirepass workload only
	cluster *env // a 3-primary cluster and exproxy in cluster mode; cluster rows only

	lib    *exlib.Library // exproxy's Lua library, once loaded into main's Redis
	libErr error

	pass   []*passResult
	occs   []*occGroup
	mem    *memResult
	slow   *slowResult
	cost   *costResult
	perf   []perfRow
	failed []string // workload errors; any makes the run fail
	lost   bool     // a lost update: the loudest failure
}

// Run starts the processes, runs the workloads and writes the report.
// It returns an error when any workload failed or an update was lost.
func Run(ctx context.Context, cfg Config) error {
	s := &Suite{cfg: cfg}
	defer func() {
		s.main.stop()
		s.auth.stop()
		s.cluster.stop()
	}()
	wantPass, wantC := false, false
	for _, w := range s.passWorkloads() {
		wantPass = true
		wantC = wantC || !w.cluster
	}
	var err error
	s.main, err = s.startEnv("", wantC)
	if err != nil {
		return err
	}

	if wantPass {
		s.runPassthrough(ctx)
	}
	// Their processes must not idle beside the next workloads.
	s.auth.stop()
	for i, p := range s.cluster.exprocsOrNil() {
		if !p.Alive() {
			s.fail("%s (cluster) died during the run: %s", s.cluster.exs[i].name, p.LogTail())
		}
	}
	s.cluster.stop()
	if cfg.wants("occ") {
		s.runOCC(ctx)
	}
	if cfg.wants("rediscost") {
		s.runRedisCost(ctx)
	}
	if cfg.wants("memory") {
		s.runMemory(ctx)
	}
	if cfg.wants("slowreader") {
		s.runSlowReaders(ctx)
	}
	if cfg.PerfDir != "" && ctx.Err() == nil {
		if err := s.profile(ctx); err != nil {
			s.fail("perf profile: %v", err)
		}
	}
	for i, p := range s.main.exprocs {
		if !p.Alive() {
			s.fail("%s died during the run: %s", s.main.exs[i].name, p.LogTail())
		}
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

// startEnv starts a Redis (with requirepass when password is set),
// exproxy in front of it, and, when withC, the C proxies the run has.
// A C proxy that does not start is reported and left out; Redis or
// exproxy not starting ends the run.
func (s *Suite) startEnv(password string, withC bool) (*env, error) {
	cfg := s.cfg
	e := &env{password: password}
	var err error
	e.redis, err = fixture.StartRedis(cfg.Dir, cfg.CPURedis, password)
	if err != nil {
		return nil, fmt.Errorf("start redis: %w", err)
	}
	e.procs = append(e.procs, e.redis)
	e.redisPids = []int{e.redis.Pid}
	e.direct = side{name: "direct", addr: e.redis.Addr}
	if cfg.Stub {
		e.ex = side{name: "stub", addr: e.redis.Addr, ex: true}
		e.exs = []side{e.ex}
	} else {
		for _, c := range cfg.candidates() {
			p, err := fixture.StartProxy(c.Bin, cfg.Dir, cfg.CPULoad, e.redis.Addr, password, cfg.ProxyArgs)
			if err != nil {
				e.stop()
				return nil, fmt.Errorf("start %s (%s): %w", c.Name, c.Bin, err)
			}
			e.procs = append(e.procs, p)
			e.exprocs = append(e.exprocs, p)
			e.exs = append(e.exs, side{name: c.Name, addr: p.Addr, pid: p.Pid, ex: true})
		}
		e.exproc, e.ex = e.exprocs[0], e.exs[0]
	}
	if withC {
		start := []struct {
			name, bin string
			fn        func(bin, dir, cpu, upstream, password string) (*fixture.Process, error)
		}{
			{"twemproxy", cfg.TwemproxyBin, fixture.StartTwemproxy},
			{"predixy", cfg.PredixyBin, fixture.StartPredixy},
		}
		for _, c := range start {
			if c.bin == "" {
				continue
			}
			p, err := c.fn(c.bin, cfg.Dir, cfg.CPULoad, e.redis.Addr, password)
			if err != nil {
				s.fail("start %s (%s): %v", c.name, c.bin, err)
				continue
			}
			e.procs = append(e.procs, p)
			e.cprox = append(e.cprox, side{name: c.name, addr: p.Addr, pid: p.Pid, c: true})
		}
	}
	what := "open"
	if password != "" {
		what = "requirepass"
	}
	s.logf("%s redis-server pid %d on %s (cpu %q); proxies on cpu %q:", what, e.redis.Pid, e.redis.Addr, cfg.CPURedis, cfg.CPULoad)
	for _, sd := range e.sides()[1:] {
		s.logf("  %-9s pid %d on %s", sd.name, sd.pid, sd.addr)
	}
	return e, nil
}

// startClusterEnv starts a Redis Cluster of three primaries (pinned like
// the single Redis) and every exproxy candidate in front of it with a
// redis+cluster:// upstream naming all three. No C proxy: twemproxy does
// not speak Redis Cluster (it shards by its own hash over plain Redises).
func (s *Suite) startClusterEnv() (*env, error) {
	cfg := s.cfg
	c, err := fixture.StartCluster(cfg.Dir, cfg.CPURedis, 3)
	if err != nil {
		return nil, fmt.Errorf("start redis cluster: %w", err)
	}
	e := &env{redis: c.Nodes[0], redisPids: c.Pids()}
	e.procs = append(e.procs, c.Nodes...)
	e.direct = side{name: "direct", addr: e.redis.Addr}
	upstream := "redis+cluster://" + strings.Join(c.Addrs(), ",")
	if cfg.Stub {
		e.ex = side{name: "stub", addr: e.redis.Addr, ex: true}
		e.exs = []side{e.ex}
	} else {
		for _, cand := range cfg.candidates() {
			p, err := fixture.StartProxy(cand.Bin, cfg.Dir, cfg.CPULoad, upstream, "", cfg.ProxyArgs)
			if err != nil {
				e.stop()
				return nil, fmt.Errorf("start %s (%s) on %s: %w", cand.Name, cand.Bin, upstream, err)
			}
			e.procs = append(e.procs, p)
			e.exprocs = append(e.exprocs, p)
			e.exs = append(e.exs, side{name: cand.Name, addr: p.Addr, pid: p.Pid, ex: true})
		}
		e.exproc, e.ex = e.exprocs[0], e.exs[0]
	}
	s.logf("redis cluster: primaries %s (pids %v, cpu %q); proxies on cpu %q:", strings.Join(c.Addrs(), ", "), c.Pids(), cfg.CPURedis, cfg.CPULoad)
	for _, sd := range e.exs {
		s.logf("  %-9s pid %d on %s", sd.name, sd.pid, sd.addr)
	}
	return e, nil
}

// exprocsOrNil returns the env's exproxy processes; none for a nil env.
func (e *env) exprocsOrNil() []*fixture.Process {
	if e == nil {
		return nil
	}
	return e.exprocs
}

// library returns exproxy's Lua library, loaded into the main Redis with
// FUNCTION LOAD, for the workloads that call it without the proxy.
func (s *Suite) library(ctx context.Context) (*exlib.Library, error) {
	if s.lib != nil || s.libErr != nil {
		return s.lib, s.libErr
	}
	if s.cfg.ProxyBin == "" {
		s.libErr = errors.New("no exproxy binary (stub run)")
		return nil, s.libErr
	}
	lib, err := exlib.FromBinary(ctx, s.cfg.ProxyBin)
	if err == nil {
		err = lib.Load(ctx, s.main.redis.Addr, "")
	}
	if err != nil {
		s.libErr = err
		return nil, err
	}
	s.lib = &lib
	return s.lib, nil
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
// direct and stub sides need no special cases.
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

// ctxsw samples a process's context switches (voluntary + involuntary,
// all threads); zero without a pid.
func ctxsw(pid int) int64 {
	if pid == 0 {
		return 0
	}
	v, n, err := fixture.CtxSwitches(pid)
	if err != nil {
		return 0
	}
	return v + n
}
