package suite

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/exproxy/exproxy/bench/internal/fixture"
	"github.com/exproxy/exproxy/bench/internal/occ"
)

func busyTag(busy bool) string {
	if busy {
		return "/busy"
	}
	return ""
}

// occVariant is one (method, path) pair measured each round.
type occVariant struct {
	method occ.Method
	side   string // "direct", or the proxy side's name ("exproxy", "stub")
}

// occGroup is the optimistic-locking workloads on one number of keys.
type occGroup struct {
	keys     int
	busy     bool // a CPU-bound process competed for the proxies' core
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
	exs := map[string]side{}
	for _, sd := range s.main.exs {
		exs[sd.name] = sd
	}

	// EXCAS straight to the library (FCALL, no proxy) shows what the
	// proxy costs on top of the Lua.
	lib, libErr := s.library(ctx)
	type groupSpec struct {
		keys int
		busy bool
	}
	specs := []groupSpec{{1, false}, {100, false}}
	if s.cfg.Busy {
		specs = append(specs, groupSpec{1, true}, groupSpec{100, true})
	}
	for _, spec := range specs {
		keys := spec.keys
		g := &occGroup{
			keys:    keys,
			busy:    spec.busy,
			runs:    map[occVariant][]occ.Result{},
			errs:    map[occVariant]string{},
			skipped: map[occVariant]string{},
		}
		s.occs = append(s.occs, g)
		g.variants = []occVariant{{occ.Watch, "direct"}, {occ.ExCAS, "direct"}, {occ.Lua, "direct"}}
		for _, ex := range s.main.exs {
			g.variants = append(g.variants,
				occVariant{occ.Watch, ex.name}, occVariant{occ.ExVer, ex.name},
				occVariant{occ.ExCAS, ex.name}, occVariant{occ.Lua, ex.name})
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
			// The order rotates each round, as the passthrough sides do,
			// so a machine getting busier or quieter favours no variant.
			for i := range g.variants {
				v := g.variants[(i+round-1)%len(g.variants)]
				if g.skipped[v] != "" || g.errs[v] != "" {
					continue
				}
				addr, pid := s.main.direct.addr, 0
				if v.side != "direct" {
					addr, pid = exs[v.side].addr, exs[v.side].pid
				}
				var cpuFn func() time.Duration
				if pid != 0 {
					cpuFn = func() time.Duration { return cpu(pid) }
				}
				var fn func(string) string
				if v.method.NeedsProxy() && v.side == "direct" {
					fn = lib.Func
				}
				var sp *fixture.Spinner
				if g.busy {
					var err error
					if sp, err = fixture.StartSpinner(s.cfg.CPULoad); err != nil {
						s.fail("occ busy: %v", err)
						return
					}
				}
				res, err := occ.Run(ctx, occ.Config{
					Addr: addr, Method: v.method, Clients: 32, Keys: keys, Duration: dur,
					Prefix:   fmt.Sprintf("exbench:%s:%s:%d:%t:%d", v.method, v.side, keys, g.busy, round),
					Protocol: s.cfg.Protocol, CPU: cpuFn, Func: fn, RedisCPU: s.main.redisCPU,
				})
				sp.Stop()
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					g.errs[v] = err.Error()
					if errors.Is(err, occ.ErrLostUpdate) {
						s.lost = true
						s.logf("!!!!!!!! %v", err)
					}
					s.fail("occ %d keys%s %s/%s: %v", keys, busyTag(g.busy), v.method, v.side, err)
					continue
				}
				g.runs[v] = append(g.runs[v], res)
				got[v] = res.CommitsPerSec()
				s.logf("round %d/%d occ keys=%-3d%s %-9s %-7s %8.0f commits/s  %.2f retries/commit  %.2f RT/commit  p50 %v p99 %v",
					round, s.cfg.Rounds, keys, busyTag(g.busy), v.method, v.side, res.CommitsPerSec(), res.RetriesPerCommit(), res.RTPerCommit(),
					res.P50.Round(time.Microsecond), res.P99.Round(time.Microsecond))
			}
			g.rounds = append(g.rounds, got)
		}
	}
}
