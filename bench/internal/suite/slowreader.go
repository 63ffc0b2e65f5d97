package suite

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/exproxy/exproxy/bench/internal/fixture"
	"github.com/exproxy/exproxy/bench/internal/slowread"
)

// slowKey holds the big value the slow-reader clients GET.
const slowKey = "exbench:slowreader:big"

// perClientSlack is the constant beside 1.25 × client-output-limit that
// issue 11 allows per slow client: the proxy's per-connection buffers, one
// chunk of output, and the 1 MB a pacing writer lets wait.
const perClientSlack = 4 << 20

// slowCase is one slow-reader workload.
type slowCase struct {
	mode    slowread.Mode
	clients int
	gets    int // pipelined GETs of the big value per client
}

// slowRun is one candidate's figures for one case in one round.
type slowRun struct {
	base    int64 // VmRSS of the fresh proxy before the clients
	peak    int64 // VmHWM at the end: the highest RSS of its life
	sampled int64 // highest VmRSS sampled every 5 ms (a check on peak)
	after   int64 // VmRSS a second after the clients closed
	res     slowread.Result
	// stallTimeout: the stalled clients gave up waiting to be cut (30 s).
	stallTimeout bool
}

type slowResult struct {
	limit, value int64
	cases        []slowCase
	runs         map[slowCase]map[string][]slowRun // case → candidate → rounds
	errs         []string
}

func (s *Suite) slowCases() []slowCase {
	// Enough GETs that a client which does not read would pass the limit
	// twice over; a slow reader asks for less so that its run, paced at
	// its reading speed, stays short.
	over := int(2*s.cfg.SlowLimit/s.cfg.SlowValue) + 1
	var cs []slowCase
	for _, n := range []int{1, 10} {
		cs = append(cs,
			slowCase{slowread.Fast, n, over},
			slowCase{slowread.Slow, n, 2},
			slowCase{slowread.Stalled, n, over})
	}
	return cs
}

// runSlowReaders measures what clients that ask for big replies cost each
// exproxy candidate in memory: a fresh proxy per case (so VmHWM is that
// case's peak), started with --client-output-limit, RSS read before,
// during and after.
func (s *Suite) runSlowReaders(ctx context.Context) {
	r := &slowResult{limit: s.cfg.SlowLimit, value: s.cfg.SlowValue, cases: s.slowCases(), runs: map[slowCase]map[string][]slowRun{}}
	s.slow = r
	if s.cfg.Stub {
		r.errs = append(r.errs, "skipped: stub run")
		return
	}
	if err := setValue(ctx, s.main.redis.Addr, slowKey, int(s.cfg.SlowValue)); err != nil {
		r.errs = append(r.errs, err.Error())
		s.fail("slowreader: %v", err)
		return
	}
	cands := s.cfg.candidates()
	rounds := s.cfg.SlowRounds
	for round := 1; round <= rounds && ctx.Err() == nil; round++ {
		for _, c := range r.cases {
			if r.runs[c] == nil {
				r.runs[c] = map[string][]slowRun{}
			}
			for i := range cands {
				cand := cands[(i+round-1)%len(cands)]
				run, err := s.slowOnce(ctx, cand, c)
				if err != nil {
					msg := fmt.Sprintf("%s %s x%d: %v", cand.Name, c.mode, c.clients, err)
					r.errs = append(r.errs, msg)
					s.fail("slowreader %s", msg)
					continue
				}
				r.runs[c][cand.Name] = append(r.runs[c][cand.Name], run)
				s.logf("round %d/%d slowreader %-7s x%-2d %d GETs of %d MiB, limit %d MiB: %-5s RSS %d -> peak %d MiB (sampled %d), after %d MiB; %d complete, %d cut, %v",
					round, rounds, c.mode, c.clients, c.gets, s.cfg.SlowValue>>20, s.cfg.SlowLimit>>20, cand.Name,
					run.base>>20, run.peak>>20, run.sampled>>20, run.after>>20, run.res.Complete, run.res.Cut, run.res.Elapsed.Round(time.Millisecond))
			}
		}
	}
}

func (s *Suite) slowOnce(ctx context.Context, cand Candidate, c slowCase) (slowRun, error) {
	var run slowRun
	args := append(append([]string(nil), s.cfg.ProxyArgs...), fmt.Sprintf("--client-output-limit=%d", s.cfg.SlowLimit))
	p, err := fixture.StartProxy(cand.Bin, s.cfg.Dir, s.cfg.CPULoad, s.main.redis.Addr, "", args)
	if err != nil {
		return run, fmt.Errorf("start proxy: %w", err)
	}
	defer p.Stop()
	time.Sleep(300 * time.Millisecond)
	if run.base, err = fixture.RSS(p.Pid); err != nil {
		return run, err
	}

	// Sample VmRSS while the clients run; the stalled clients wait until
	// the proxy's memory has stopped growing (it has read all Redis sent,
	// or cut the clients at the limit).
	var (
		mu         sync.Mutex
		lastGrowth = time.Now()
	)
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
			v, err := fixture.RSS(p.Pid)
			if err != nil {
				continue
			}
			mu.Lock()
			if v > run.sampled+(1<<20) {
				lastGrowth = time.Now()
			}
			run.sampled = max(run.sampled, v)
			mu.Unlock()
		}
	}()
	// A stalled client waits until the proxy has cut it for passing the
	// limit (every case asks for twice the limit), as its
	// exproxy_output_limit_closed_total counter says; a proxy without the
	// counter, until its RSS has not grown for 3 s. Its peak is then what
	// the limit let it hold.
	stalled := func(ctx context.Context) {
		start := time.Now()
		for ctx.Err() == nil && time.Since(start) < 30*time.Second {
			time.Sleep(50 * time.Millisecond)
			if m, err := fixture.Metrics(p.Admin); err == nil {
				if v, ok := m["exproxy_output_limit_closed_total"]; ok {
					if int(v) >= c.clients {
						return
					}
					continue
				}
			}
			mu.Lock()
			quiet := time.Since(lastGrowth)
			mu.Unlock()
			if quiet >= 3*time.Second {
				return
			}
		}
		run.stallTimeout = true
	}
	run.res, err = slowread.Run(ctx, slowread.Config{
		Addr: p.Addr, Key: slowKey, ValueSize: int(s.cfg.SlowValue),
		Clients: c.clients, GETs: c.gets, Mode: c.mode, Stalled: stalled,
	})
	stopSampling()
	<-sampled
	if err != nil {
		return run, err
	}
	if run.peak, err = fixture.PeakRSS(p.Pid); err != nil {
		return run, err
	}
	time.Sleep(time.Second)
	if run.after, err = fixture.RSS(p.Pid); err != nil {
		return run, err
	}
	if !p.Alive() {
		return run, fmt.Errorf("proxy died: %s", p.LogTail())
	}
	return run, nil
}

// setValue stores a value of size bytes at key, directly in Redis.
func setValue(ctx context.Context, addr, key string, size int) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("set %s: %w", key, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	w := bufio.NewWriterSize(c, 1<<20)
	fmt.Fprintf(w, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n", len(key), key, size)
	chunk := []byte(strings.Repeat("x", 64<<10))
	for left := size; left > 0; left -= len(chunk) {
		w.Write(chunk[:min(left, len(chunk))])
	}
	w.WriteString("\r\n")
	if err := w.Flush(); err != nil {
		return fmt.Errorf("set %s: %w", key, err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("set %s: %w", key, err)
	}
	if !strings.HasPrefix(line, "+OK") {
		return fmt.Errorf("set %s: Redis answered %q", key, strings.TrimSpace(line))
	}
	return nil
}
