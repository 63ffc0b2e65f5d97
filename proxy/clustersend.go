package proxy

import "errors"

// clusterOut is what the batch sends on one connection.
type clusterOut struct {
	node  int32
	c     *upConn
	spans []span
	ws    []tagWaiter
}

// span is one command (or part of one) in the batch for a connection:
// its bytes upbuf[off:off+n], the batch entry it answers, and what its
// tagWaiter must say.
type span struct {
	bi, off, n int32
	slot       int32
	fan        *fanout
	part       int32
	wait       bool // a reply pairs with it (not a RESP3 subscribe, nor on an ordered connection)
	tx         bool
	drop       bool // its reply is read and dropped (a setup command)
}

const arenaChunk = 16 << 10

// out returns the index of c's clusterOut in the batch.
func (cl *sessionCluster) out(node int32, c *upConn) int {
	for i := 0; i < cl.nouts; i++ {
		if cl.outs[i].c == c {
			return i
		}
	}
	if cl.nouts == len(cl.outs) {
		cl.outs = append(cl.outs, clusterOut{})
	}
	o := &cl.outs[cl.nouts]
	o.node, o.c = node, c
	cl.nouts++
	return cl.nouts - 1
}

// sendCluster is send in front of a Redis Cluster: the batch's entries
// go onto the session's queue in client order, then each connection gets
// its commands' bytes and one tagWaiter per reply.
func (s *session) sendCluster() bool {
	cl := s.cl
	s.batchFailed = false
	if s.loop != nil && s.q.full() {
		s.mayBlock()
	}
	s.q.waitSpace()
	s.sendMu.Lock()
	if (s.paused || s.holds > 0) && s.loop != nil {
		s.sendMu.Unlock()
		s.mayBlock()
		s.sendMu.Lock()
	}
	for (s.paused || s.holds > 0) && !s.q.isClosed() {
		s.resumed.Wait()
	}
	seq0, ok := s.q.pushSeq(s.batch)
	var failed []tagWaiter
	revoked := false
	if ok {
		total := 0
		for i := 0; i < cl.nouts; i++ {
			for _, sp := range cl.outs[i].spans {
				total += int(sp.n)
			}
		}
		if cap(cl.arena)-len(cl.arena) < total {
			cl.arena = make([]byte, 0, max(arenaChunk, total))
		}
		for i := 0; i < cl.nouts; i++ {
			o := &cl.outs[i]
			start := len(cl.arena)
			cl.at = cl.at[:0]
			for _, sp := range o.spans {
				a := len(cl.arena)
				cl.arena = append(cl.arena, s.upbuf[sp.off:sp.off+sp.n]...)
				if !sp.wait {
					continue
				}
				o.ws = append(o.ws, tagWaiter{
					s: s, seq: seq0 + uint64(sp.bi), data: cl.arena[a:len(cl.arena):len(cl.arena)],
					fan: sp.fan, part: sp.part, slot: sp.slot, node: o.node, tx: sp.tx, drop: sp.drop,
				})
				cl.at = append(cl.at, int32(a-start))
			}
			data := cl.arena[start:len(cl.arena):len(cl.arena)]
			var err error
			if len(s.cands) > 0 && o.c.shared && !o.c.isOrdered() && o.c != s.conns.own {
				err = o.c.queueTaggedGrouped(s, o.node, o.ws, cl.at, data, seq0)
			} else {
				err = o.c.queueTagged(o.ws, data)
			}
			if err == errConnDead && o.c != s.conns.own {
				// Lost since it was chosen: once more on a new one.
				cl.nodeConns(o.node).shared = nil
				var c *upConn
				if c, err = s.clusterShared(o.node); err == nil {
					o.c = c
					err = c.queueTagged(o.ws, data)
				}
			}
			if nd := s.srv.clusterNode(o.node); nd != nil {
				nd.commands.Add(int64(len(o.spans)))
			}
			switch {
			case err == nil && s.loop != nil:
				s.loop.markDirty(o.c)
			case err == nil:
				o.c.flush()
			case errors.Is(err, errRevoked) || errors.Is(err, ErrServerClosed):
				revoked = true
			case o.c == s.conns.own:
				// A connection of its own that is gone: its reader
				// closes the session.
			default:
				// The node went away since it was chosen: each command
				// waits for the cluster to fail over, as at routing.
				failed = append(failed, o.ws...)
			}
		}
	}
	s.sendMu.Unlock()
	for i := 0; i < cl.nouts; i++ {
		o := &cl.outs[i]
		clear(o.ws)
		o.ws, o.spans, o.c = o.ws[:0], o.spans[:0], nil
	}
	cl.nouts = 0
	s.batch = s.batch[:0]
	s.clearCands()
	if cap(s.upbuf) > steadyBuf {
		s.upbuf = nil
	} else {
		s.upbuf = s.upbuf[:0]
	}
	for _, w := range failed {
		s.hold()
		go func() {
			defer s.unhold()
			s.resendSlow(w, false)
		}()
	}
	if s.hasLocal || s.kick {
		s.hasLocal, s.kick = false, false
		s.emitIfIdle()
	}
	if revoked {
		s.close()
	}
	return ok && !revoked
}

// queueTagged queues a session's commands for a cluster connection: one
// waiter per reply, and the bytes. The entries are on the session's
// queue already.
func (c *upConn) queueTagged(ws []tagWaiter, data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return errConnDead
	}
	c.tfifo = append(c.tfifo, ws...)
	c.owed.Add(int64(len(ws)))
	c.out = append(c.out, data...)
	return nil
}

// flush writes what is queued unless a writer is at it already.
func (c *upConn) flush() {
	c.mu.Lock()
	if c.writing || c.dead || len(c.out) == 0 {
		c.mu.Unlock()
		return
	}
	c.writing = true
	c.writeOutLocked()
}
