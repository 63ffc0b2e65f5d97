package suite

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/exproxy/exproxy/bench/internal/fixture"
	"github.com/exproxy/exproxy/bench/internal/idle"
	"github.com/exproxy/exproxy/bench/internal/rbench"
)

// benchPassword is the requirepass of the password workload's Redis (a
// throwaway server on loopback).
const benchPassword = "exbench-requirepass"

type passWorkload struct {
	name     string
	desc     string
	clients  int
	pipeline int
	size     int
	requests int  // per test (SET and GET each); an upper bound, see calibrate
	idle     int  // idle connections held open during the run
	auth     bool // Redis requires a password; every client authenticates
	busy     bool // a CPU-bound process competes for the proxies' core
	// reconnect: every request on a connection of its own (redis-benchmark
	// -k 0), so a "request" of the row is connect + one command + close.
	reconnect bool
	// cluster: a 3-primary Redis Cluster upstream; the direct side is
	// redis-benchmark --cluster against it, and no C proxy is measured
	// (twemproxy shards by its own hash, it does not speak Redis Cluster).
	cluster bool
	// secs: how long calibrate makes a direct run (0 = 1.2 s; --quick
	// takes a third).
	secs float64
}

func (w passWorkload) label() string {
	if w.busy {
		return w.name + "/busy"
	}
	return w.name
}

// PassWorkloads are the single passthrough workloads --only accepts.
var PassWorkloads = []string{"p1-64B", "p16-64B", "p1-1KB", "p1-16KB", "c1000", "idle1000", "churn", "p1-64B-auth", "p1-64B-cluster", "p16-64B-cluster"}

func (s *Suite) passWorkloads() []passWorkload {
	w := []passWorkload{
		{name: "p1-64B", desc: "GET/SET 64 B, 50 clients, pipeline 1", clients: 50, pipeline: 1, size: 64, requests: 100_000},
		{name: "p16-64B", desc: "GET/SET 64 B, 50 clients, pipeline 16", clients: 50, pipeline: 16, size: 64, requests: 1_000_000},
		{name: "p1-1KB", desc: "GET/SET 1 KB, 50 clients, pipeline 1", clients: 50, pipeline: 1, size: 1024, requests: 100_000},
		{name: "p1-16KB", desc: "GET/SET 16 KB, 50 clients, pipeline 1", clients: 50, pipeline: 1, size: 16384, requests: 50_000},
		{name: "c1000", desc: "GET/SET 64 B, 1000 clients, pipeline 1", clients: 1000, pipeline: 1, size: 64, requests: 100_000},
		{name: "idle1000", desc: "GET/SET 64 B, 50 clients + 1000 idle conns", clients: 50, pipeline: 1, size: 64, requests: 100_000, idle: 1000},
		// Applications without a connection pool (PHP-FPM, scripts,
		// serverless) pay the proxy's accept and session setup, and its
		// upstream connection in pinned mode, once per command. A new
		// connection is about 10x slower than a request on an open one,
		// hence the smaller count; and the proxies, which keep their
		// upstream connections, can outrun direct Redis here, so direct
		// runs 3 s to give every side a few seconds.
		{name: "churn", desc: "GET/SET 64 B, 50 clients, a new connection per request (redis-benchmark -k 0)", clients: 50, pipeline: 1, size: 64, requests: 30_000, reconnect: true, secs: 3},
		{name: "p1-64B-auth", desc: "p1-64B against a Redis with requirepass; every client sends AUTH", clients: 50, pipeline: 1, size: 64, requests: 100_000, auth: true},
		{name: "p1-64B-cluster", desc: "p1-64B against a 3-primary Redis Cluster; direct = redis-benchmark --cluster", clients: 50, pipeline: 1, size: 64, requests: 100_000, cluster: true},
		{name: "p16-64B-cluster", desc: "p16-64B against a 3-primary Redis Cluster; direct = redis-benchmark --cluster", clients: 50, pipeline: 16, size: 64, requests: 1_000_000, cluster: true},
	}
	if s.cfg.Quick {
		for i := range w {
			w[i].requests /= 5
		}
	}
	var picked []passWorkload
	for _, x := range w {
		if s.cfg.wantsPass(x) {
			picked = append(picked, x)
		}
	}
	if s.cfg.Busy {
		for _, x := range picked[:len(picked):len(picked)] {
			x.busy = true
			picked = append(picked, x)
		}
	}
	return picked
}

// wantsPass reports whether the run includes w. The cluster rows start
// three more redis-servers, so they run when named (or with the "cluster"
// group) and in the full run, but not with --only passthrough or --quick.
func (c Config) wantsPass(w passWorkload) bool {
	if c.wants(w.name) {
		return len(c.Only) > 0 || !w.cluster || !c.Quick
	}
	if w.cluster {
		return c.wants("cluster")
	}
	return c.wants("passthrough")
}

type passRun struct {
	rps        float64
	setRPS     float64
	getRPS     float64
	p50ms      float64 // of GET
	cpuUSReq   float64 // the proxy's CPU µs per request; NaN for direct
	ctxPerReq  float64 // the proxy's context switches per request; NaN for direct
	redisUSReq float64
}

type passResult struct {
	w       passWorkload
	sides   []side               // in report order: direct, exproxy, C proxies
	runs    map[string][]passRun // by side name, one per round
	ratios  map[string][]float64 // side / direct, per round
	err     string
	cmdline string
}

func (s *Suite) envFor(w passWorkload) (*env, error) {
	if w.cluster {
		if s.cluster == nil {
			e, err := s.startClusterEnv()
			if err != nil {
				return nil, err
			}
			s.cluster = e
		}
		return s.cluster, nil
	}
	if !w.auth {
		return s.main, nil
	}
	if s.auth == nil {
		e, err := s.startEnv(benchPassword, true)
		if err != nil {
			return nil, err
		}
		s.auth = e
	}
	return s.auth, nil
}

func (s *Suite) runPassthrough(ctx context.Context) {
	for _, w := range s.passWorkloads() {
		if ctx.Err() != nil {
			return
		}
		e, err := s.envFor(w)
		if err != nil {
			s.fail("%s: %v", w.label(), err)
			continue
		}
		w.requests = s.calibrate(ctx, w, e)
		r := &passResult{w: w, sides: e.sides(), runs: map[string][]passRun{}, ratios: map[string][]float64{}}
		s.pass = append(s.pass, r)
		for round := 1; round <= s.cfg.Rounds && r.err == "" && ctx.Err() == nil; round++ {
			// Rotate which side goes first (direct, exproxy, twemproxy |
			// exproxy, twemproxy, direct | ...), so a machine that gets
			// busier or quieter during the run favours none of them.
			n := len(r.sides)
			got := map[string]passRun{}
			for i := 0; i < n; i++ {
				sd := r.sides[(i+round-1)%n]
				run, err := s.passOnce(ctx, w, e, sd)
				if err != nil {
					r.err = err.Error()
					s.fail("%s %s: %v", w.label(), sd.name, err)
					break
				}
				got[sd.name] = run
			}
			if r.err != "" {
				break
			}
			d := got["direct"]
			var line strings.Builder
			fmt.Fprintf(&line, "round %d/%d %-14s direct %7.0f rps", round, s.cfg.Rounds, w.label(), d.rps)
			for _, sd := range r.sides {
				run := got[sd.name]
				r.runs[sd.name] = append(r.runs[sd.name], run)
				if sd.name == "direct" {
					continue
				}
				r.ratios[sd.name] = append(r.ratios[sd.name], run.rps/d.rps)
				fmt.Fprintf(&line, " | %s %.2fx %.2f µs %.2f cs", sd.name, run.rps/d.rps, run.cpuUSReq, run.ctxPerReq)
			}
			s.logf("%s", line.String())
		}
		cfg := s.rbConfig(w, "HOST:PORT", e.password, false)
		r.cmdline = "redis-benchmark " + strings.Join(cfg.Args(), " ")
		if w.cluster {
			cfg.Cluster = true
			r.cmdline = "direct: redis-benchmark " + strings.Join(cfg.Args(), " ") + "  (HOST:PORT = one primary); proxies: " + r.cmdline
		}
	}
}

// calibrate sizes a workload so one direct run takes about 1.2 seconds
// (0.4 s with --quick; w.secs and a third of it for churn): on a loaded shared machine a fixed request count
// could stretch the run far past its budget, and on a quiet one a short
// run is mostly connection setup. Every side of every round uses the same
// count, so the ratios stay comparable. The warm-up run also fills the
// keyspace, so GETs hit. A busy workload is calibrated busy.
func (s *Suite) calibrate(ctx context.Context, w passWorkload, e *env) int {
	secs := 1.2
	if w.secs > 0 {
		secs = w.secs
	}
	if s.cfg.Quick {
		secs /= 3
	}
	probe := w
	probe.requests = max(2000, w.requests/20)
	// The faster of two probes: a burst of someone else's work during a
	// probe would otherwise shrink every run of the workload to a size
	// where the next burst decides its figure.
	rps := 0.0
	for i := 0; i < 2; i++ {
		res, err := s.passOnce(ctx, probe, e, e.direct)
		if err != nil {
			s.logf("%s: calibration run failed (%v); using -n %d", w.label(), err, w.requests)
			return w.requests
		}
		rps = max(rps, res.rps)
	}
	n := int(rps*secs/2) / 1000 * 1000
	n = max(probe.requests, min(n, w.requests))
	if w.cluster && len(e.exs) > 0 {
		// redis-benchmark --cluster adds a hash tag to its keys, so the
		// probes filled other keys than the proxied runs GET: one
		// unmeasured run through the proxy fills those.
		if _, err := s.passOnce(ctx, probe, e, e.exs[0]); err != nil {
			s.logf("%s: warm-up through %s failed: %v", w.label(), e.exs[0].name, err)
		}
	}
	s.logf("%s: calibrated at %.0f rps direct: -n %d per test", w.label(), rps, n)
	return n
}

// rbConfig is the redis-benchmark run of w against addr; cluster makes it
// redis-benchmark --cluster (addr is then one primary of the cluster).
func (s *Suite) rbConfig(w passWorkload, addr, password string, cluster bool) rbench.Config {
	return rbench.Config{
		Addr: addr, CPU: s.cfg.CPULoad, Tests: "set,get",
		Clients: w.clients, Pipeline: w.pipeline, DataSize: w.size,
		Requests: w.requests, Keyspace: 100_000, Password: password,
		Cluster: cluster, Reconnect: w.reconnect,
	}
}

// clusterSide reports whether sd talks to the cluster nodes themselves
// (direct, or the stub's second direct side) rather than to a proxy.
func clusterSide(w passWorkload, sd side) bool {
	return w.cluster && sd.pid == 0
}

// passOnce runs redis-benchmark once against one side and reads what the
// side's proxy and Redis spent meanwhile. For a busy workload a spinner
// holds the proxies' core for exactly this measurement.
func (s *Suite) passOnce(ctx context.Context, w passWorkload, e *env, sd side) (passRun, error) {
	if w.idle > 0 {
		conns, err := idle.Open(ctx, sd.addr, w.idle, 64)
		if err != nil {
			return passRun{}, err
		}
		defer conns.Close()
	}
	if w.busy {
		sp, err := fixture.StartSpinner(s.cfg.CPULoad)
		if err != nil {
			return passRun{}, err
		}
		defer sp.Stop()
	}
	// A hung proxy must not hang the run.
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	p0, r0, c0 := cpu(sd.pid), e.redisCPU(), ctxsw(sd.pid)
	res, err := rbench.Run(rctx, s.rbConfig(w, sd.addr, e.password, clusterSide(w, sd)))
	p1, r1, c1 := cpu(sd.pid), e.redisCPU(), ctxsw(sd.pid)
	if err != nil {
		return passRun{}, err
	}
	n := float64(res.Requests())
	run := passRun{rps: res.RPS(), cpuUSReq: math.NaN(), ctxPerReq: math.NaN()}
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
		run.cpuUSReq = float64((p1 - p0).Microseconds()) / n
		run.ctxPerReq = float64(c1-c0) / n
	}
	run.redisUSReq = float64((r1 - r0).Microseconds()) / n
	return run, nil
}
