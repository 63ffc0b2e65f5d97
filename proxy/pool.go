package proxy

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"time"
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
	// front of a Redis Cluster, the number of a node (clusternodes.go). A
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
		// as the slot map names them (clusterrefresh.go).
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
