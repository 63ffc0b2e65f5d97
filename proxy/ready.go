package proxy

import (
	"context"
	"errors"
	"time"
)

// privateNow is private without a dial: a ready connection of key's
// pool, else an anonymous one that the session must set up for key first
// (setup), else nil.
func (ps *pools) privateNow(key poolKey) (c *upConn, setup bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	defer ps.refill()
	if c = ps.takeReadyLocked(ps.byKey[key]); c != nil {
		return c, false
	}
	if key.isAnon() {
		return nil, false
	}
	if c = ps.takeReadyLocked(ps.byKey[key.anon()]); c != nil {
		c.key = key
		return c, true
	}
	return nil, false
}

// takeReadyLocked takes a live ready connection of p; ps.mu is held.
func (ps *pools) takeReadyLocked(p *pool) *upConn {
	if p == nil || p.revoked {
		return nil
	}
	for len(p.ready) > 0 {
		c := p.ready[len(p.ready)-1]
		p.ready[len(p.ready)-1] = nil
		p.ready = p.ready[:len(p.ready)-1]
		ps.srv.stats.readyConns.Add(-1)
		if !c.isDead() {
			return c
		}
	}
	return nil
}

func (ps *pools) refill() {
	select {
	case ps.wake <- struct{}{}:
	default:
	}
}

// fill keeps ReadyConns ready connections in every pool that sessions
// use (and in the anonymous one, which new sessions use), dialling one at
// a time, each set up for its pool (AUTH, SELECT, HELLO 3) as it is
// dialled; it backs off while Redis cannot be reached.
func (ps *pools) fill() {
	backoff := time.Duration(0)
	for {
		select {
		case <-ps.wake:
		case <-ps.done:
			return
		}
		for {
			p := ps.shortPool()
			if p == nil {
				break
			}
			conn, err := ps.srv.dialUpstream(context.Background(), p.key, p.cred)
			var ref *refusal
			if errors.As(err, &ref) {
				ps.revoke(p, ref)
				continue
			}
			if err != nil {
				backoff = min(max(2*backoff, 50*time.Millisecond), 2*time.Second)
				select {
				case <-time.After(backoff):
				case <-ps.done:
					return
				}
				continue
			}
			backoff = 0
			ps.srv.learnAuthOnce()
			c := newUpConn(ps.srv, conn, p.key, false)
			ps.mu.Lock()
			if ps.closed || p.revoked || ps.byKey[p.key] != p {
				ps.mu.Unlock()
				c.close()
				continue
			}
			p.ready = append(p.ready, c)
			ps.srv.stats.readyConns.Add(1)
			ps.mu.Unlock()
		}
	}
}

// shortPool is a pool in use that has fewer than ReadyConns ready
// connections, or nil.
func (ps *pools) shortPool() *pool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return nil
	}
	for _, p := range ps.byKey {
		if p.created != nil || p.revoked || len(p.ready) >= ps.srv.opts.ReadyConns {
			continue
		}
		if p.sessions > 0 || p.key.isAnon() {
			return p
		}
	}
	return nil
}
