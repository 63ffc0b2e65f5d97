package proxy

import (
	"errors"
	"net"

	"go.uber.org/zap"
)

// deliverLocked takes one chunk of a reply from upstream; done says it
// ends the reply, whose type byte is kind. mu is held; the reader
// flushes when it moves on to another session or has read all it has.
func (s *session) deliverLocked(chunk []byte, done bool, kind byte) {
	r := &s.rs
	if s.ended {
		return // the client is gone: what Redis still owes it is dropped
	}
	if !r.active {
		if !r.emitHead() {
			return
		}
		r.begin()
	}
	if !r.take(chunk, done, kind) {
		s.endLocked(true) // a resend could not be sent, or a setup failed
		return
	}
	if len(r.out.buf) >= flushAt {
		s.flushLocked()
	}
	if done {
		r.active = false
		// Also after a push: the entries it leaves at the head (a RESP3
		// unsubscribe, answered by pushes only) are done now.
		if !s.ended && r.emitHead() {
			s.afterReplyLocked()
		}
	}
}

// afterReplyLocked wakes a read loop waiting for the session to be idle,
// and ends a session whose client stopped sending once all is answered.
func (s *session) afterReplyLocked() {
	if !s.waiting && !s.readDone {
		return
	}
	if s.q.unpopped() > 0 {
		return
	}
	if s.waiting {
		s.flushLocked()
		s.idle.Broadcast()
	}
	s.maybeEndLocked()
}

// relaying reports whether the connection's bytes are to be relayed
// unframed: from the reply to SYNC/PSYNC on, the session is a replica's
// link — an RDB payload (a bulk string without its CRLF, or an EOF-marked
// stream) and then the replication stream, read the way Redis's own
// replicas read it. mu is held.
func (s *session) relaying() bool {
	r := &s.rs
	if r.raw || r.active || s.ended || !s.syncing.Load() {
		return r.raw
	}
	if !r.emitHead() {
		return false
	}
	if e := r.headEntry(); e != nil && e.cmd != nil && e.cmd.kind == kindSync {
		r.raw = true
	}
	return r.raw
}

// relayLocked forwards what was read as it is, and drops the entries of
// what the replica sends (REPLCONF ACK gets no reply), so none pile up.
func (s *session) relayLocked(b []byte) {
	if s.ended {
		return
	}
	s.rs.out.buf = append(s.rs.out.buf, b...)
	for s.q.head() != nil {
		s.q.pop()
	}
	if len(s.rs.out.buf) >= flushAt {
		s.flushLocked()
	}
}

// flushLocked writes what was collected for the client without waiting:
// what the socket does not take now goes to the background flusher, so
// that a reader serving many sessions never waits for one. A client that
// cannot take it (gone, or past its output limit) is closed, and what
// comes for it afterwards is dropped. mu is held.
func (s *session) flushLocked() {
	if s.ended {
		return
	}
	if err := s.rs.flush(); err != nil {
		s.endLocked(false)
	}
}

func (r *replySide) flush() error {
	r.s.q.settle()
	err := r.out.flush()
	if err != nil {
		r.flushFailed(err)
	}
	return err
}

func (r *replySide) flushFailed(err error) {
	if errors.Is(err, errOutputLimit) {
		// Reset rather than close: a plain close would still deliver
		// the megabytes queued in the kernel to a client that reads
		// slowly, and it would learn of the close only after them.
		if r.s.client.resetOnClose() {
			r.reset = true
		}
		r.s.srv.stats.outputLimitClosed.Add(1)
		r.s.log.Warn("closing client: it does not read its replies", zap.Error(err),
			zap.Int64("limit_bytes", r.out.limit))
	} else if !errors.Is(err, net.ErrClosed) {
		r.s.log.Debug("client write", zap.Error(err))
	}
}

// emitHead emits locally answered entries at the head of the queue and
// drops those that get no reply. It returns false when one of them ends
// the session.
func (r *replySide) emitHead() bool {
	s := r.s
	for {
		e := s.q.head()
		if e == nil {
			break
		}
		r.resolve(e)
		if e.local == nil && e.replies > 0 || e.pushes > 0 {
			break
		}
		closeAfter := e.closeAfter
		if e.local != nil {
			r.emitLocal(e.local)
		}
		s.q.pop()
		if closeAfter {
			s.endLocked(true)
			return false
		}
		if !r.maybeResend() {
			s.endLocked(true)
			return false
		}
	}
	return true
}

func (r *replySide) emitLocal(b []byte) {
	if len(b) == 0 {
		return
	}
	if len(r.reorder) > 0 {
		r.reorder = append(r.reorder, &slot{data: b, ready: true})
		return
	}
	r.out.buf = append(r.out.buf, b...)
}
