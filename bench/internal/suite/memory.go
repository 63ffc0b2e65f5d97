package suite

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/exproxy/exproxy/bench/internal/fixture"
	"github.com/exproxy/exproxy/bench/internal/idle"
)

type memResult struct {
	conns                   int
	proxies                 []memProxy // one per exproxy candidate
	redisBefore, redisAfter int64      // redis's own cost of the same connections, direct
	err                     string
}

// memProxy is one exproxy candidate's idle-connection figure.
type memProxy struct {
	name                    string
	proxyBefore, proxyAfter int64
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
	redis := s.main.redis

	// Redis's own per-connection memory, for scale.
	rb, err := fixture.RSS(redis.Pid)
	if err == nil {
		var conns *idle.Conns
		conns, err = idle.Open(ctx, redis.Addr, m.conns, 64)
		if err == nil {
			settle()
			var ra int64
			ra, err = fixture.RSS(redis.Pid)
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
	for _, c := range s.cfg.candidates() {
		settle() // let redis reap the closed connections
		mp, err := s.memoryOf(ctx, c, m.conns)
		if err != nil {
			m.err = fmt.Sprintf("%s: %v", c.Name, err)
			s.fail("memory (%s, %d conns): %v", c.Name, m.conns, err)
			continue
		}
		m.proxies = append(m.proxies, mp)
		s.logf("memory: %s RSS %d -> %d KiB with %d idle conns (%.1f KiB/conn); redis %d -> %d KiB (%.1f KiB/conn)",
			c.Name, mp.proxyBefore>>10, mp.proxyAfter>>10, m.conns, perConnKiB(mp.proxyBefore, mp.proxyAfter, m.conns),
			m.redisBefore>>10, m.redisAfter>>10, perConnKiB(m.redisBefore, m.redisAfter, m.conns))
	}
}

// memoryOf starts a fresh proxy of candidate c, so heap grown by earlier
// workloads does not hide or inflate the per-connection cost, and opens
// conns idle connections to it.
func (s *Suite) memoryOf(ctx context.Context, c Candidate, conns int) (memProxy, error) {
	mp := memProxy{name: c.Name}
	settle := func() { time.Sleep(time.Second) }
	p, err := fixture.StartProxy(c.Bin, s.cfg.Dir, s.cfg.CPULoad, s.main.redis.Addr, "", s.cfg.ProxyArgs)
	if err != nil {
		return mp, fmt.Errorf("start proxy: %w", err)
	}
	defer p.Stop()
	settle()
	pb, err := fixture.RSS(p.Pid)
	if err != nil {
		return mp, err
	}
	sb, hb, merr := fixture.GoMemStats(p.Admin)
	cs, err := idle.Open(ctx, p.Addr, conns, 64)
	if err != nil {
		return mp, err
	}
	defer cs.Close()
	settle()
	pa, err := fixture.RSS(p.Pid)
	if err != nil {
		return mp, err
	}
	mp.proxyBefore, mp.proxyAfter = pb, pa
	if sa, ha, err2 := fixture.GoMemStats(p.Admin); merr == nil && err2 == nil {
		mp.stackBefore, mp.stackAfter, mp.heapBefore, mp.heapAfter = sb, sa, hb, ha
	}
	return mp, nil
}

func perConnKiB(before, after int64, n int) float64 {
	if n == 0 {
		return math.NaN()
	}
	return float64(after-before) / 1024 / float64(n)
}
