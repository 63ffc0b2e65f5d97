package suite

import (
	"context"
	"fmt"
	"time"

	"github.com/exproxy/exproxy/bench/internal/exlib"
	"github.com/exproxy/exproxy/bench/internal/rcost"
)

// costResult is what Redis itself spends per call, direct.
type costResult struct {
	ops     []rcost.Op
	runs    map[string][]rcost.Result // by op name, one per round
	libs    []string                  // libraries measured, for the report
	skipped string                    // why the versioned-string rows are missing

	// Handler CPU from looping inside one FCALL (rcost.Loop), by library
	// label ("this", "baseline") and handler run.
	loopLabels []string
	loops      map[string]map[string]time.Duration
	loopN      int
}

// runRedisCost measures Redis's own CPU per call of plain commands, a
// minimal Lua function and the versioned-string handlers called with
// FCALL, all direct: what the Lua costs Redis, apart from any proxy. With
// --lua-baseline another binary's library is measured in the same rounds,
// interleaved, for before/after figures of a change to the Lua.
func (s *Suite) runRedisCost(ctx context.Context) {
	c := &costResult{runs: map[string][]rcost.Result{}}
	s.cost = c
	redis := s.main.redis
	if err := exlib.LoadReplace(ctx, redis.Addr, "", rcost.BenchLibrary); err != nil {
		s.fail("rediscost: %v", err)
		return
	}
	c.ops = rcost.PlainOps()
	loopLibs := map[string]string{} // label -> exstring library code
	if lib, err := s.library(ctx); err != nil {
		c.skipped = err.Error()
	} else {
		label := ""
		if s.cfg.LuaBaseline != "" {
			label = "this"
		}
		c.ops = append(c.ops, rcost.ExOps(lib.Func, label)...)
		c.libs = append(c.libs, fmt.Sprintf("%s (%s)", lib.Name, s.cfg.ProxyBin))
		c.loopLabels = append(c.loopLabels, "this")
		loopLibs["this"] = lib.Code
	}
	if s.cfg.LuaBaseline != "" {
		base, err := exlib.FromBinary(ctx, s.cfg.LuaBaseline)
		if err == nil {
			err = base.Load(ctx, redis.Addr, "")
		}
		if err != nil {
			s.fail("rediscost: baseline library: %v", err)
		} else {
			// Each handler right after its baseline twin, so the two are
			// measured seconds apart, on the same machine load.
			n := len(rcost.PlainOps())
			this, old := c.ops[n:], rcost.ExOps(base.Func, "baseline")
			c.ops = c.ops[:n:n]
			for i := range old {
				if i < len(this) {
					c.ops = append(c.ops, this[i])
				}
				c.ops = append(c.ops, old[i])
			}
			c.libs = append(c.libs, fmt.Sprintf("%s (baseline, %s)", base.Name, s.cfg.LuaBaseline))
			c.loopLabels = append(c.loopLabels, "baseline")
			loopLibs["baseline"] = base.Code
		}
	}
	for round := 1; round <= s.cfg.CostRounds && ctx.Err() == nil; round++ {
		for i, op := range c.ops {
			res, err := rcost.Run(ctx, rcost.Config{
				Addr: redis.Addr, Clients: 50, Duration: s.cfg.CostDuration,
				RedisPid: redis.Pid, Prefix: fmt.Sprintf("exbench:cost:%d", i),
			}, op)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.fail("rediscost %s: %v", op.Name, err)
				continue
			}
			c.runs[op.Name] = append(c.runs[op.Name], res)
			n, _ := res.Inner()
			s.logf("round %d/%d rediscost %-34s %7.0f calls/s  redis %.2f µs/call  exec %.2f µs/call  %.2f inner calls",
				round, s.cfg.CostRounds, op.Name, res.CallsPerSec(), res.CPUPerCall(), res.ExecPerCall(), n)
		}
	}
	s.runLoops(ctx, c, loopLibs)
}

// runLoops measures each handler's own CPU by looping it inside one
// FCALL (rcost.Loop), libraries alternating handler by handler.
func (s *Suite) runLoops(ctx context.Context, c *costResult, code map[string]string) {
	redis := s.main.redis
	c.loops = map[string]map[string]time.Duration{}
	c.loopN = 5000
	reps := 5
	if s.cfg.Quick {
		c.loopN, reps = 1000, 2
	}
	for _, label := range c.loopLabels {
		lib := "exbench_loop_" + label
		if err := exlib.LoadReplace(ctx, redis.Addr, "", rcost.LoopLibrary(code[label], lib)); err != nil {
			s.fail("rediscost loop library %s: %v", label, err)
			return
		}
		c.loops[label] = map[string]time.Duration{}
	}
	for _, run := range rcost.LoopHandlers {
		for _, label := range c.loopLabels {
			d, err := rcost.Loop(ctx, redis.Addr, "", redis.Pid, "exbench_loop_"+label, run, c.loopN, reps)
			if err != nil {
				if ctx.Err() == nil {
					s.fail("rediscost loop %s %s: %v", label, run, err)
				}
				return
			}
			c.loops[label][run] = d
			s.logf("rediscost loop %-11s %-8s %.2f µs of Redis CPU per run", run, label, float64(d.Nanoseconds())/1000)
		}
	}
}
