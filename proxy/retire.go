package proxy

import (
	"time"

	"go.uber.org/zap"
)

// stuckAfter is how long a shared connection may owe replies without
// delivering any before it is retired (upConn.retired).
const stuckAfter = 100 * time.Millisecond

// watch retires shared connections whose replies have stopped while
// some are owed: Redis is running a long script or command for one of
// their sessions, and the others' commands must not wait behind it.
func (ps *pools) watch() {
	t := time.NewTicker(stuckAfter)
	defer t.Stop()
	seen := map[*upConn]uint64{}
	for {
		select {
		case <-t.C:
		case <-ps.done:
			return
		}
		ps.mu.Lock()
		for _, p := range ps.byKey {
			for i := range p.slots {
				c := p.slots[i].c
				if c == nil {
					continue
				}
				n := c.replies.Load()
				// Replies that stopped because the proxy's own reader
				// was not scheduled (a loaded host) are no reason: only
				// a reader that has been waiting on an empty socket for
				// as long, with replies owed, says Redis is busy.
				if last, ok := seen[c]; ok && last == n && c.owed.Load() > 0 && c.starvedFor() >= stuckAfter {
					c.retired.Store(true)
					p.slots[i].c = nil
					ps.srv.stats.retired.Add(1)
					delete(seen, c)
					continue
				}
				seen[c] = n
			}
		}
		if len(seen) > 256 {
			clear(seen) // forget connections long gone
		}
		ps.mu.Unlock()
	}
}

// revoke marks a pool whose credentials Redis refuses now (the user was
// deleted or its password changed): its sessions are closed, as Redis
// closed the connections of that user.
func (ps *pools) revoke(p *pool, ref *refusal) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p.revoked || p.key.user == "" {
		return
	}
	p.revoked = true
	ps.srv.log.Warn("upstream refuses a connection pool's credentials; closing its clients",
		zap.String("user", p.key.user), zap.String("reply", trimLine(ref.reply)))
}

// reap closes pools that no session has used for poolIdle (but the
// anonymous one), and forgets ready connections Redis has closed (its
// idle timeout).
func (ps *pools) reap() {
	t := time.NewTicker(poolIdle / 3)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ps.done:
			return
		}
		ps.mu.Lock()
		if ps.closed {
			ps.mu.Unlock()
			return
		}
		now := time.Now()
		for _, p := range ps.byKey {
			if (!p.key.isAnon() || !ps.srv.keepsAnon(p.key.node)) && p.created == nil && p.sessions == 0 && now.Sub(p.idle) >= poolIdle {
				ps.dropLocked(p)
				continue
			}
			live := p.ready[:0]
			for _, c := range p.ready {
				if c.isDead() {
					ps.srv.stats.readyConns.Add(-1)
					continue
				}
				live = append(live, c)
			}
			clear(p.ready[len(live):])
			p.ready = live
		}
		ps.mu.Unlock()
		ps.refill()
	}
}
