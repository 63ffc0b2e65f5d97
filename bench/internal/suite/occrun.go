package suite

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/exproxy/exproxy/bench/internal/occ"
)

// occVariant is one (method, path) pair measured each round.
type occVariant struct {
	method occ.Method
	side   string // "direct", or the proxy side's name ("exproxy", "stub")
}

// occGroup is the optimistic-locking workloads on one number of keys.
type occGroup struct {
	keys     int
	variants []occVariant
	runs     map[occVariant][]occ.Result
	errs     map[occVariant]string
	skipped  map[occVariant]string
	rounds   []map[occVariant]float64 // commits/s per variant, per round
}

// ratios returns a/b of commits/s for every round that measured both.
func (g *occGroup) ratios(a, b occVariant) []float64 {
	var out []float64
	for _, r := range g.rounds {
		if x, y := r[a], r[b]; x > 0 && y > 0 {
			out = append(out, x/y)
		}
	}
	return out
}

func (s *Suite) runOCC(ctx context.Context) {
	dur := s.cfg.OCCDuration
	via := s.main.ex
	// EXCAS straight to the library (FCALL, no proxy) shows what the
	// proxy costs on top of the Lua.
	lib, libErr := s.library(ctx)
	for _, keys := range []int{1, 100} {
		g := &occGroup{
			keys:    keys,
			runs:    map[occVariant][]occ.Result{},
			errs:    map[occVariant]string{},
			skipped: map[occVariant]string{},
		}
		s.occs = append(s.occs, g)
		g.variants = []occVariant{
			{occ.Watch, "direct"}, {occ.Watch, via.name},
			{occ.ExVer, via.name}, {occ.ExCAS, via.name}, {occ.ExCAS, "direct"},
			{occ.Lua, "direct"}, {occ.Lua, via.name},
		}
		for _, v := range g.variants {
			switch {
			case v.method.NeedsProxy() && v.side == "direct" && libErr != nil:
				g.skipped[v] = fmt.Sprintf("library not loaded: %v", libErr)
			case v.method.NeedsProxy() && v.side != "direct" && s.cfg.Stub:
				g.skipped[v] = "needs the proxy (stub run)"
			}
		}
		for round := 1; round <= s.cfg.Rounds && ctx.Err() == nil; round++ {
			got := map[occVariant]float64{}
			for _, v := range g.variants {
				if g.skipped[v] != "" || g.errs[v] != "" {
					continue
				}
				addr, pid := s.main.direct.addr, 0
				if v.side != "direct" {
					addr, pid = via.addr, via.pid
				}
				var cpuFn func() time.Duration
				if pid != 0 {
					cpuFn = func() time.Duration { return cpu(pid) }
				}
				var fn func(string) string
				if v.method.NeedsProxy() && v.side == "direct" {
					fn = lib.Func
				}
				res, err := occ.Run(ctx, occ.Config{
					Addr: addr, Method: v.method, Clients: 32, Keys: keys, Duration: dur,
					Prefix:   fmt.Sprintf("exbench:%s:%s:%d:%d", v.method, v.side, keys, round),
					Protocol: s.cfg.Protocol, CPU: cpuFn, Func: fn,
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
				s.logf("round %d/%d occ keys=%-3d %-9s %-7s %8.0f commits/s  %.2f retries/commit  %.2f RT/commit  p50 %v p99 %v",
					round, s.cfg.Rounds, keys, v.method, v.side, res.CommitsPerSec(), res.RetriesPerCommit(), res.RTPerCommit(),
					res.P50.Round(time.Microsecond), res.P99.Round(time.Microsecond))
			}
			g.rounds = append(g.rounds, got)
		}
	}
}
