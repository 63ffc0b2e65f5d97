package proxy

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"
)

// poolKey is what Redis sees on a connection: whom it is authenticated
// as, in which database, speaking which protocol. Sessions share
// connections only with sessions that Redis would see the same way.
type poolKey struct {
	user  string   // "" until an AUTH succeeds: the default user, unauthenticated
	cred  [32]byte // SHA-256 of the password Redis accepted for user
	proto uint8    // 2 or 3
	db    int32
	// node is the Redis the connections go to: 0 for the one upstream; in
	// front of a Redis Cluster, the number of a node (clusterview.go). A
	// session's own key is node-independent (node 0); it reaches a node
	// through that key at the node.
	node int32
}

// anonymous is where every session starts.
var anonymous = poolKey{proto: 2}

// isAnon reports whether k is the anonymous key of its node: the pool
// that keeps its ready connections whether or not a session uses it.
func (k poolKey) isAnon() bool { return k.user == "" && k.db == 0 && k.proto == 2 }

// anon is the anonymous key of k's node.
func (k poolKey) anon() poolKey { return poolKey{proto: 2, node: k.node} }

// at is k at a cluster node.
func (k poolKey) at(node int32) poolKey {
	k.node = node
	return k
}

// credentials authenticate more connections of a pool. They are held in
// memory only, for as long as the pool lives, and never logged. named
// says the client named the user (AUTH user pass, HELLO ... AUTH): Redis
// answers AUTH pass and AUTH default pass differently when the default
// user has no password, so a connection is authenticated the way its
// client asked.
type credentials struct {
	user, pass string
	named      bool
}

func credHash(pass string) [32]byte { return sha256.Sum256([]byte(pass)) }

// errRevoked: Redis no longer accepts a pool's credentials (the user was
// deleted or its password changed, and its connections were closed). A
// client connected to Redis itself would have been disconnected; its
// sessions are closed the same way.
var errRevoked = errors.New("upstream refused the credentials of this connection pool")

// pools holds the connections per key: the shared ones, and ready
// ones — dialled and set up for the key before they are wanted — for the
// sessions of that key that need a connection of their own. The
// anonymous pool (RESP2, db 0, not authenticated) exists from the start,
// so that an idle proxy holds its ready connections and nothing else.
type pools struct {
	srv    *Server
	mu     sync.Mutex
	byKey  map[poolKey]*pool
	wake   chan struct{} // the filler: a pool is short of ready connections
	done   chan struct{} // closed by close
	closed bool
}

// pool is the connections of one key.
type pool struct {
	key      poolKey
	cred     *credentials
	slots    []poolSlot
	ready    []*upConn // private connections in this key's state, waiting
	sessions int
	idle     time.Time // when the last session left
	revoked  bool
	created  chan struct{} // closed once the first connection is set up
	err      error         // why it could not be created
}

// poolSlot is one shared connection, or the dial that will give it.
type poolSlot struct {
	c       *upConn
	dialing chan struct{} // closed when the dial in progress ends
	err     error         // how the last dial failed
}

const (
	// poolIdle is how long a pool that no session uses is kept.
	poolIdle = 30 * time.Second
	// minReadyCap is the fewest ready connections a pool may keep when
	// sessions give theirs back (a burst of transactions ending).
	minReadyCap = 4
)

func newPools(srv *Server) *pools {
	ps := &pools{srv: srv, byKey: map[poolKey]*pool{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
	if !srv.opts.Upstream.Cluster {
		// A cluster's anonymous pools are those of its primaries, made
		// as the slot map names them (clusterview.go).
		ps.byKey[anonymous] = &pool{key: anonymous, slots: make([]poolSlot, srv.opts.SharedConns)}
		srv.stats.pools.Add(1)
	}
	return ps
}

// start runs the filler of the ready connections and the reaper of idle
// pools until close.
func (ps *pools) start() {
	go ps.fill()
	go ps.reap()
	go ps.watch()
}

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

// join adds a session to the pool of key, creating it with its first
// connection if there is none. A *refusal is Redis's answer to the setup
// (a wrong password, a database out of range).
func (ps *pools) join(key poolKey, cred *credentials) (*pool, error) {
	ps.mu.Lock()
	for {
		if ps.closed {
			ps.mu.Unlock()
			return nil, ErrServerClosed
		}
		p := ps.byKey[key]
		if p == nil {
			break
		}
		if p.created != nil {
			ch := p.created
			ps.mu.Unlock()
			<-ch
			ps.mu.Lock()
			if p.err != nil {
				ps.mu.Unlock()
				return nil, p.err
			}
			continue
		}
		if p.revoked {
			ps.dropLocked(p)
			break
		}
		p.sessions++
		ps.mu.Unlock()
		ps.refill() // its ready connections, now that it is in use
		return p, nil
	}
	p := &pool{key: key, cred: cred, slots: make([]poolSlot, ps.srv.opts.SharedConns), created: make(chan struct{})}
	ps.byKey[key] = p
	ps.mu.Unlock()
	c, err := ps.dialShared(key, cred)
	ps.mu.Lock()
	ch := p.created
	p.created = nil
	if err != nil {
		p.err = err
		delete(ps.byKey, key)
	} else {
		p.slots[0].c = c
		p.sessions++
		ps.srv.stats.pools.Add(1)
	}
	close(ch)
	ps.mu.Unlock()
	if err != nil {
		return nil, err
	}
	ps.refill()
	return p, nil
}

// dropLocked forgets a pool and closes its connections; ps.mu is held.
func (ps *pools) dropLocked(p *pool) {
	delete(ps.byKey, p.key)
	ps.srv.stats.pools.Add(-1)
	for _, sl := range p.slots {
		if sl.c != nil {
			go sl.c.close()
		}
	}
	ps.srv.stats.readyConns.Add(-int64(len(p.ready)))
	for _, c := range p.ready {
		go c.close()
	}
	p.ready = nil
}

// existing adds a session to key's pool if it is there, set up and not
// revoked, without waiting; else nil.
func (ps *pools) existing(key poolKey) *pool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p := ps.byKey[key]
	if p == nil || p.created != nil || p.revoked || ps.closed {
		return nil
	}
	p.sessions++
	return p
}

// sharedNow is shared without waiting: the live connection, or nil.
func (ps *pools) sharedNow(p *pool, id uint64) *upConn {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed || p.revoked {
		return nil
	}
	if c := p.slots[int(id%uint64(len(p.slots)))].c; c != nil && !c.isDead() {
		return c
	}
	return nil
}

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

// leave takes a session out of its pool.
func (ps *pools) leave(p *pool) {
	ps.mu.Lock()
	p.sessions--
	if p.sessions == 0 {
		p.idle = time.Now()
	}
	ps.mu.Unlock()
}

// shared returns the live shared connection of p for the session with
// the given id (always the same one of p's), dialling one if needed.
// Sessions that need the same connection meanwhile wait for that one
// dial, so an unreachable Redis costs each of them one dial timeout.
func (ps *pools) shared(p *pool, id uint64) (*upConn, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	sl := &p.slots[int(id%uint64(len(p.slots)))]
	waited, rounds := false, 0
	for {
		switch {
		case ps.closed:
			return nil, ErrServerClosed
		case p.revoked:
			return nil, errRevoked
		case sl.c != nil && !sl.c.isDead():
			return sl.c, nil
		case waited && sl.err != nil:
			return nil, sl.err
		case waited && rounds >= 2:
			return nil, errConnDead // dialled, and lost already, again
		case waited:
			// Dialled by another session, and lost or retired already
			// (a long script on it): dial the slot's next one.
			waited = false
			rounds++
			continue
		case sl.dialing != nil:
			ch := sl.dialing
			ps.mu.Unlock()
			<-ch
			ps.mu.Lock()
			waited = true
			continue
		}
		ch := make(chan struct{})
		sl.dialing = ch
		ps.mu.Unlock()
		c, err := ps.dialShared(p.key, p.cred)
		ps.mu.Lock()
		sl.dialing, sl.err = nil, err
		close(ch)
		var ref *refusal
		if errors.As(err, &ref) && p.key.user != "" {
			// Redis closed the pool's connections and now refuses its
			// credentials: as if it had closed every client of them.
			ps.mu.Unlock()
			ps.revoke(p, ref)
			ps.mu.Lock()
			return nil, errRevoked
		}
		if err != nil {
			return nil, err
		}
		if ps.closed {
			c.close()
			return nil, ErrServerClosed
		}
		sl.c = c
		return c, nil
	}
}

func (ps *pools) dialShared(key poolKey, cred *credentials) (*upConn, error) {
	conn, err := ps.srv.dialUpstream(context.Background(), key, cred)
	if err != nil {
		ps.srv.dialFailed(err)
		return nil, err
	}
	c := newUpConn(ps.srv, conn, key, true)
	ps.srv.stats.sharedConns.Add(1)
	return c, nil
}

// forgetShared is told by a shared connection's reader that it is gone.
func (ps *pools) forgetShared(c *upConn) {
	ps.srv.stats.sharedConns.Add(-1)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p := ps.byKey[c.key]; p != nil {
		for i := range p.slots {
			if p.slots[i].c == c {
				p.slots[i].c = nil
			}
		}
	}
}

// private returns a connection for a session of key to own: a ready one
// (setup reports that the session must set it up for key first, in the
// same write as its command), else a new one set up here.
func (ps *pools) private(key poolKey, cred *credentials) (c *upConn, setup bool, err error) {
	if c, setup = ps.privateNow(key); c != nil {
		return c, setup, nil
	}
	conn, err := ps.srv.dialUpstream(context.Background(), key, cred)
	if err != nil {
		ps.srv.dialFailed(err)
		return nil, false, err
	}
	return newUpConn(ps.srv, conn, key, false), false, nil
}

// release takes back a private connection that holds nothing but key's
// state, as a ready connection of key's pool, or closes it.
func (ps *pools) release(c *upConn, key poolKey) {
	c.setOwner(nil)
	ps.mu.Lock()
	if p := ps.byKey[key]; p != nil && !ps.closed && !p.revoked && !c.isDead() &&
		len(p.ready) < max(ps.srv.opts.ReadyConns, minReadyCap) {
		p.ready = append(p.ready, c)
		ps.srv.stats.readyConns.Add(1)
		ps.mu.Unlock()
		return
	}
	ps.mu.Unlock()
	c.close()
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

// close closes every connection the pools hold; sessions have ended.
func (ps *pools) close() {
	ps.mu.Lock()
	if ps.closed {
		ps.mu.Unlock()
		return
	}
	ps.closed = true
	var all []*upConn
	for _, p := range ps.byKey {
		for _, sl := range p.slots {
			if sl.c != nil {
				all = append(all, sl.c)
			}
		}
		all = append(all, p.ready...)
		ps.srv.stats.readyConns.Add(-int64(len(p.ready)))
		p.ready = nil
	}
	ps.srv.stats.pools.Add(-int64(len(ps.byKey)))
	ps.byKey = map[poolKey]*pool{}
	close(ps.done)
	ps.mu.Unlock()
	for _, c := range all {
		c.close()
	}
}
