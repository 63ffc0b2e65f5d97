package proxy

import (
	"net"
	"time"
)

// The end of a session: once its client sends nothing more, the reply
// side ends when what the client sent is answered, the client is shut
// down or closed, and the session lets go of its connections.

// finishReading ends the session once no more commands will come from
// its client: when the reply side has ended too, its connections are
// let go and its client closed. It runs on a goroutine of the session's
// own, which may wait.
func (s *session) finishReading() {
	s.endReading(true)
	<-s.replyEnded
	s.closeClient()
}

// finishLater is finishReading for the event loop's runner, which must
// not wait, once endReading(false) has left the end to others (replies
// still owed, a slow reader's backlog): a goroutine closes the client
// when the reply side has ended. A session with nothing left is closed
// right on the loop (readEnded), the usual end of a client that closed
// an idle connection.
func (s *session) finishLater() {
	go func() {
		<-s.replyEnded
		s.closeClient()
	}()
}

// closeClient lets go of the session's connections and closes its
// client, once the reply side has ended.
func (s *session) closeClient() {
	s.conns.releaseAll(s)
	// Only here, when nothing reads it any more: a descriptor closed
	// earlier could be reused by a new client while the event loop
	// still knew it as this one's.
	s.client.close()
	s.srv.forget(s)
	close(s.done)
	s.log.Debug("client disconnected")
	s.srv.wg.Done()
}

// endReading runs when no more commands will come from the client. The
// session ends once what it sent is answered. A connection of its own is
// half closed, so Redis, as it would for the client itself, answers what
// it has received and closes — which also ends a blocking command that
// nobody would read the reply of. When the session ends here, the end's
// work runs on the calling goroutine, if mayWait or if it cannot wait
// (nothing is left to write to a slow client); ended reports that it
// did, so replyEnded is closed.
func (s *session) endReading(mayWait bool) (ended bool) {
	s.mu.Lock()
	s.readDone = true
	s.endHere, s.endHereMayWait = true, mayWait
	s.maybeEndLocked()
	s.endHere = false
	w, left := s.endLeft, s.endLeftSet
	s.endLeft, s.endLeftSet = endWork{}, false
	over := s.ended
	s.mu.Unlock()
	if left {
		s.finishEnd(w)
		return true
	}
	if over || s.draining.Load() {
		return false // Shutdown decides when to close
	}
	if own := s.conns.own; own != nil {
		own.closeWrite()
	}
	return false
}

// maybeEndLocked ends a session whose client has stopped sending once
// every reply it awaits is in; mu is held.
func (s *session) maybeEndLocked() {
	if s.readDone && !s.rs.active && s.q.unpopped() == 0 {
		s.endLocked(true)
	}
}

// endLocked ends the reply side: nothing more goes to the client, which
// is shut down, after what was collected for it is written when graceful
// (within a second for a client that reads slowly). Safe to call more
// than once; mu is held. The read side then reads the end of its input
// and finishes the session.
func (s *session) endLocked(graceful bool) {
	if s.ended {
		return
	}
	s.ended = true
	if graceful {
		s.rs.flush()
	}
	s.q.close()
	s.idle.Broadcast()
	// A client that closed its end sends nothing more, so the close in
	// closeClient ends the connection cleanly by itself: no half-close
	// first (two syscalls per connection, a fifth of what a client that
	// connects per command costs).
	w := endWork{graceful: graceful, reset: s.rs.reset, closeOnly: s.readDone && s.peerClosed, obs: s.rs.obs}
	s.rs.obs, s.rs.wobs = nil, nil
	if s.endHere && (s.endHereMayWait || !graceful || !s.rs.out.waiting()) {
		s.endLeft, s.endLeftSet = w, true
		return
	}
	go s.finishEnd(w)
}

// endWork is what ending the reply side leaves to do without mu.
type endWork struct {
	graceful, reset, closeOnly bool
	obs                        []SessionObserver
}

// finishEnd writes what is left for the client (graceful), tells the
// observers, shuts the client down, and closes replyEnded.
func (s *session) finishEnd(w endWork) {
	if w.graceful {
		s.rs.out.drain(time.Second)
	}
	for _, o := range w.obs {
		o.Close()
	}
	if w.reset {
		// Linger 0: the close in closeClient resets the connection; a
		// FIN would queue behind the data the client never read.
		s.client.closeRead()
	} else if !w.closeOnly {
		s.client.shutdown()
	}
	s.resume() // a read loop paused for a resend
	close(s.replyEnded)
}

// close ends the session now: whatever is still owed to the client is
// dropped. Safe from any goroutine, more than once.
func (s *session) close() {
	s.mu.Lock()
	s.endLocked(false)
	s.mu.Unlock()
}

// shutdownConn ends both directions of a client connection without
// closing its descriptor (finishReading does that): the client sees the
// end at once, and the side that reads it sees the end of its input.
func shutdownConn(c net.Conn) {
	type halfCloser interface {
		CloseRead() error
		CloseWrite() error
	}
	if hc, ok := c.(halfCloser); ok {
		_ = hc.CloseWrite()
		_ = hc.CloseRead()
		return
	}
	_ = c.Close()
}
