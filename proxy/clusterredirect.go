package proxy

import (
	"bytes"
	"errors"
	"time"

	"github.com/exproxy/exproxy/proxy/cluster"
)

// The replies of a cluster node that the proxy acts on.
var (
	errTryAgain    = []byte("-TRYAGAIN ")
	errClusterDown = []byte("-CLUSTERDOWN ")
	askingCommand  = []byte("*1\r\n$6\r\nASKING\r\n")
	// inside MULTI a redirection cannot be followed (the node flagged the
	// transaction, so EXEC will fail): the client gets an error it can
	// retry, never MOVED or ASK.
	errMovedInMulti = []byte("-TRYAGAIN the key's slot moved to another node during the transaction; EXEC will be aborted (exproxy)\r\n")
)

// retryDelay is the pause before a TRYAGAIN or CLUSTERDOWN is retried:
// a slot migration's keys move within milliseconds; a failover takes
// the cluster node timeout and more.
const retryDelay = 20 * time.Millisecond

// clusterErrorLocked follows a MOVED or ASK and retries a TRYAGAIN or
// CLUSTERDOWN, within MaxRedirects and FailoverWait; it reports whether
// it did, and otherwise returns the reply the client gets.
func (s *session) clusterErrorLocked(w *tagWaiter, data []byte) (bool, []byte) {
	v := s.srv.cluster
	nd := v.node(w.node)
	if rd, ok := cluster.ParseRedirect(data); ok {
		if w.tx {
			return false, errMovedInMulti
		}
		if nd != nil && rd.Ask {
			nd.asks.Add(1)
		} else if nd != nil {
			nd.moved.Add(1)
		}
		if !rd.Ask {
			v.kick()
		}
		if w.data == nil || int(w.tries) >= v.opts.MaxRedirects {
			return false, data
		}
		target := int32(0)
		if addr, ok := rd.Addr(v.addr(w.node)); ok {
			target = v.num(addr)
		} else if st := v.state.Load(); st != nil && w.slot >= 0 {
			target = st.slotNode[w.slot]
		}
		if target == 0 {
			return false, data
		}
		nw := *w
		nw.tries++
		nw.node = target
		s.resendLocked(nw, rd.Ask)
		return true, nil
	}
	tryAgain := bytes.HasPrefix(data, errTryAgain)
	down := bytes.HasPrefix(data, errClusterDown)
	if !tryAgain && !down || w.data == nil || w.tx {
		return false, data
	}
	if tryAgain && int(w.tries) >= v.opts.MaxRedirects {
		return false, data
	}
	now := time.Now()
	nw := *w
	if nw.since.IsZero() {
		nw.since = now
	}
	if now.Sub(nw.since) >= v.opts.FailoverWait {
		return false, data
	}
	nw.tries = min(nw.tries+1, 255)
	if down {
		v.kick()
	}
	// Later commands of the session wait: they must not overtake this
	// one on its keys.
	s.hold()
	go s.retryLater(nw, retryDelay<<min(nw.tries-1, 4))
	return true, nil
}

// resendLocked sends a command again, to the node its redirection named,
// keeping its place in client order. mu is held, on a reader's goroutine:
// a connection that must be dialled first is dialled on another.
func (s *session) resendLocked(w tagWaiter, ask bool) {
	id := s.cl.ident.Load()
	ps := s.srv.pools
	if p := ps.existing(id.key.at(w.node)); p != nil {
		c := ps.sharedNow(p, s.rinfo.ID)
		ps.leave(p)
		if c != nil && c.queueResend(w, ask) == nil {
			c.flushNoWait()
			return
		}
	}
	s.hold()
	go func() {
		s.resendSlow(w, ask)
		s.unhold()
	}()
}

// resendSlow is resendLocked off the reader's goroutine: it may dial,
// and while the node cannot be reached it waits, up to FailoverWait from
// the command's first retry, for the cluster to name another for its
// slot (a failover); then the client gets the error.
func (s *session) resendSlow(w tagWaiter, ask bool) {
	v := s.srv.cluster
	if w.since.IsZero() {
		w.since = time.Now()
	}
	for {
		err := s.trySend(w, ask)
		if err == nil {
			return
		}
		left := v.opts.FailoverWait - time.Since(w.since)
		if left <= 0 || ask || errors.Is(err, errRevoked) || errors.Is(err, ErrServerClosed) || s.q.isClosed() {
			s.mu.Lock()
			s.tagDoneLocked(false, &w, unreachableNode(s.srv, w.node, err), '-')
			s.replayLocked()
			s.flushLocked()
			s.mu.Unlock()
			return
		}
		node := w.node
		st, _ := v.await(min(left, 200*time.Millisecond), func(st *clusterState) bool {
			return w.slot >= 0 && st.slotNode[w.slot] != node
		})
		if st != nil && w.slot >= 0 && st.slotNode[w.slot] != 0 {
			w.node = st.slotNode[w.slot]
		}
	}
}

// trySend queues w on the session's shared connection at its node.
func (s *session) trySend(w tagWaiter, ask bool) error {
	id := s.cl.ident.Load()
	ps := s.srv.pools
	p, err := ps.join(id.key.at(w.node), id.cred)
	if err != nil {
		return err
	}
	c, err := ps.shared(p, s.rinfo.ID)
	ps.leave(p)
	if err != nil {
		return err
	}
	if err = c.queueResend(w, ask); err != nil {
		return err
	}
	c.flushNoWait()
	return nil
}

// retryLater sends a command again after a TRYAGAIN or CLUSTERDOWN, to
// the node that serves its slot then. The session's sends are held
// (hold) until it is on its way.
func (s *session) retryLater(w tagWaiter, delay time.Duration) {
	defer s.unhold()
	v := s.srv.cluster
	select {
	case <-time.After(delay):
	case <-s.replyEnded:
		return
	}
	if w.slot >= 0 {
		if st := v.state.Load(); st != nil && st.slotNode[w.slot] != 0 {
			w.node = st.slotNode[w.slot]
		}
	}
	s.resendSlow(w, false)
}

// hold keeps the read loop from sending while a retry waits.
func (s *session) hold() {
	s.sendMu.Lock()
	s.holds++
	s.sendMu.Unlock()
}

func (s *session) unhold() {
	s.sendMu.Lock()
	s.holds--
	s.resumed.Broadcast()
	s.sendMu.Unlock()
}

// queueResend queues one command again on a cluster connection,
// preceded by ASKING for an -ASK redirection.
func (c *upConn) queueResend(w tagWaiter, ask bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return errConnDead
	}
	if ask {
		c.tfifo = append(c.tfifo, tagWaiter{s: w.s, drop: true})
		c.out = append(c.out, askingCommand...)
		c.owed.Add(1)
	}
	// A resent command is a command of its own: it leads no group and
	// follows none (follow.go).
	w.grp, w.follows = nil, false
	c.tfifo = append(c.tfifo, w)
	c.out = append(c.out, w.data...)
	c.owed.Add(1)
	if nd := c.srv.clusterNode(c.node); nd != nil {
		nd.commands.Add(1)
	}
	return nil
}
