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
	settle() // let redis reap the closed connections
	p, err := fixture.StartProxy(s.cfg.ProxyBin, s.cfg.Dir, s.cfg.CPULoad, redis.Addr, "", s.cfg.ProxyArgs)
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
