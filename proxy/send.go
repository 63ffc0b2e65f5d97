package proxy

import (
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/exproxy/exproxy/proxy/resp"
)

// sessionConns is which upstream connections a session uses. The read
// loop owns it; the connection in use is also in session.conn, under
// sendMu, for a resend.
type sessionConns struct {
	key    poolKey      // what Redis must see of the session
	cred   *credentials // the password Redis accepted for key.user
	pool   *pool        // key's pool, once joined
	own    *upConn      // a connection of its own, while it has one
	sticky bool         // own holds state that cannot be undone: it is kept for good
	authed bool         // an AUTH succeeded (and no RESET followed)
}

// releaseAll gives up the session's connections when it has ended. A
// connection of its own is closed, not reused: its state (or a command
// cut off) went with the client.
func (cs *sessionConns) releaseAll(s *session) {
	s.sendMu.Lock()
	own := cs.own
	cs.own, s.conn = nil, nil
	s.sendMu.Unlock()
	if own != nil {
		own.close()
	}
	if cs.pool != nil {
		s.srv.pools.leave(cs.pool)
		cs.pool = nil
	}
	if s.cl != nil {
		s.cl.leaveAll()
	}
}

// send pushes the batch's entries and writes its bytes upstream.
func (s *session) send() bool {
	if len(s.batch) == 0 {
		return true
	}
	if s.cl != nil {
		return s.sendCluster()
	}
	s.batchFailed = false
	if s.loop != nil && s.q.full() {
		s.mayBlock()
	}
	s.q.waitSpace()
	n := 0
	for i := range s.batch {
		if s.batch[i].local == nil {
			n++
		}
	}
	if n > 0 && s.conns.own == nil && s.srv.opts.Mode == PinnedUpstream {
		// The eager connect failed: this batch tries again.
		if err := s.takeOwn(nil); err != nil {
			s.failBatch(err)
			n = 0
		}
	}
	s.sendMu.Lock()
	if s.paused && s.loop != nil {
		s.sendMu.Unlock()
		s.mayBlock()
		s.sendMu.Lock()
	}
	for s.paused {
		s.resumed.Wait()
	}
	err := s.sendLocked(n)
	s.sendMu.Unlock()
	s.batch = s.batch[:0]
	s.clearCands()
	if cap(s.upbuf) > steadyBuf {
		s.upbuf = nil
	} else {
		s.upbuf = s.upbuf[:0]
	}
	if s.hasLocal || s.kick {
		s.hasLocal, s.kick = false, false
		s.emitIfIdle()
	}
	if errors.Is(err, errRevoked) {
		s.close()
	}
	return err == nil
}

// sendLocked sends the batch on the session's connection, choosing a
// shared one if it has none; sendMu is held.
func (s *session) sendLocked(n int) error {
	if c := s.conn; c != nil && c.retired.Load() && s.q.pending() == 0 {
		s.conn = nil // nothing owed there: the next connection of the pool
	}
	for attempt := 0; n > 0; attempt++ {
		c := s.conn
		if c == nil {
			if s.conns.own != nil {
				c = s.conns.own
			} else {
				var err error
				if c, err = s.sharedConn(); err != nil {
					if errors.Is(err, errRevoked) || errors.Is(err, ErrServerClosed) {
						return errRevoked
					}
					s.failBatch(err)
					break
				}
			}
			s.conn = c
		}
		var err error
		if l := s.loop; l != nil {
			// The loop writes the connection once, at the end of its
			// batch, for every session that queued on it.
			if err = c.queue(s, s.batch, n, s.upbuf); err == nil {
				l.markDirty(c)
				return nil
			}
		} else if err = c.send(s, s.batch, n, s.upbuf); err == nil {
			return nil
		}
		if err != errConnDead || c == s.conns.own {
			// A connection of its own that is gone: its reader closes the
			// session.
			return errSessionClosed
		}
		s.conn = nil
		if attempt == 1 {
			s.failBatch(err)
			break
		}
	}
	if !s.q.push(s.batch) {
		return errSessionClosed
	}
	return nil
}

// sharedConn returns the shared connection for the session's commands,
// joining its key's pool first.
func (s *session) sharedConn() (*upConn, error) {
	cs := &s.conns
	ps := s.srv.pools
	if cs.pool != nil && cs.pool.key != cs.key {
		// The key changed on a connection of the session's own (RESET).
		ps.leave(cs.pool)
		cs.pool = nil
	}
	if cs.pool == nil {
		if cs.pool = ps.existing(cs.key); cs.pool == nil {
			s.mayBlock() // the pool's first connection is dialled
			p, err := ps.join(cs.key, cs.cred)
			if err != nil {
				return nil, err
			}
			cs.pool = p
		}
	}
	if c := ps.sharedNow(cs.pool, s.rinfo.ID); c != nil {
		return c, nil
	}
	s.mayBlock() // dialled, or waited for
	return ps.shared(cs.pool, s.rinfo.ID)
}

// takeOwn gives the session a connection of its own, set up as its key
// says. The caller has made sure nothing is in flight elsewhere (Redis
// must run a client's commands in the order sent). A ready connection is
// set up by commands of the proxy's own in the same write as the
// session's next batch, so moving costs no round trip.
func (s *session) takeOwn(why []byte) error {
	c, setup := s.srv.pools.privateNow(s.conns.key)
	if c == nil {
		s.mayBlock() // dialled
		var err error
		if c, setup, err = s.srv.pools.private(s.conns.key, s.conns.cred); err != nil {
			return err
		}
	}
	c.setOwner(s)
	s.clearCands() // a connection of its own: no other session's commands to group with
	if setup {
		data, n := setupCommands(nil, s.conns.key, s.conns.cred, !s.srv.authRequired.Load())
		es := make([]entry, n, n+len(s.batch))
		for i := range es {
			es[i] = entry{internal: true, replies: 1}
		}
		s.batch = append(es, s.batch...)
		s.upbuf = append(data, s.upbuf...)
	}
	s.sendMu.Lock()
	s.conns.own, s.conn = c, c
	s.sendMu.Unlock()
	if why != nil {
		s.srv.stats.pinned.Add(1)
		s.log.Debug("session takes an upstream connection of its own", zap.ByteString("command", why))
	}
	return nil
}

// canGiveBack reports whether the session's own connection holds nothing
// but what its key says — no transaction, watched key, subscription,
// reply mode or command in flight — so the session may share again.
func (s *session) canGiveBack() bool {
	cs := &s.conns
	if cs.own == nil || cs.sticky || s.tx.inMulti || s.tx.watching || len(s.batch) > 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.ended && !s.rs.active && s.q.unpopped() == 0 && !s.rs.holdsState()
}

// giveBack returns the session's own connection for reuse and puts the
// session back on the shared connections of its pool.
func (s *session) giveBack() {
	c := s.conns.own
	s.sendMu.Lock()
	s.conns.own, s.conn = nil, nil
	s.sendMu.Unlock()
	key := s.conns.key
	if c.node != 0 {
		key = key.at(c.node)
		c.setOrdered(false)
	}
	s.srv.pools.release(c, key)
	s.srv.stats.unpinned.Add(1)
}

// moveToOwn flushes the batch, waits for what is in flight on a shared
// connection, and takes a connection of the session's own. !alive ends
// the read loop; when a connection cannot be had, !moved, and cmd is
// answered with the reason.
func (s *session) moveToOwn(cmd *command, name []byte) (moved, alive bool) {
	if !s.send() || !s.waitIdle() {
		return false, false
	}
	if err := s.takeOwn(name); err != nil {
		s.answerLocal(cmd, unreachableReply(s.srv, err))
		return false, true
	}
	return true, true
}

// emitIfIdle emits locally answered entries when no reply is being
// delivered ahead of them; otherwise the reader emits them after it.
func (s *session) emitIfIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.rs.active {
		return
	}
	if s.rs.emitHead() {
		if s.cl != nil {
			s.replayLocked()
		}
		s.flushLocked()
	}
}

// answerLocal queues reply as the proxy's answer to cmd, in order.
func (s *session) answerLocal(cmd *command, reply []byte) {
	s.srv.stats.commands.Add(1)
	s.batch = append(s.batch, entry{cmd: cmd, local: reply, replies: 1})
	s.hasLocal = true
}

// failBatch answers every command of the batch that expected an upstream
// reply with the reason Redis cannot be reached.
func (s *session) failBatch(err error) {
	msg := unreachableReply(s.srv, err)
	for i := range s.batch {
		e := &s.batch[i]
		if e.local == nil {
			if e.replies == 0 || e.internal {
				e.local = []byte{}
			} else {
				e.local = msg
			}
			e.rw, e.obs, e.resend = nil, nil, nil
		}
	}
	s.upbuf = s.upbuf[:0]
	s.clearCands()
	s.hasLocal = true
	s.batchFailed = true
	// Session state changed by these commands never reached Redis.
	s.tx.inMulti, s.tx.watching = false, false
}

// unreachableReply is the answer to a command for which no connection
// could be had. When Redis refused to set one up (BUSY while a script
// runs, LOADING, a revoked password), Redis's own words are the answer,
// as Redis would have given them to the command itself; only a Redis that
// cannot be reached at all gets the proxy's text.
func unreachableReply(srv *Server, err error) []byte {
	var ref *refusal
	if errors.As(err, &ref) {
		return ref.reply
	}
	return resp.AppendError(nil, fmt.Sprintf("ERR exproxy: upstream %s unreachable: %v", srv.opts.Upstream, err))
}
