package proxy

import (
	"time"
)

// Replies in client order across the nodes of a Redis Cluster.
//
// A session's commands may be in flight on several connections at once,
// one per node. Its queue stays one FIFO of entries in the order the
// client sent them; each cluster connection keeps, instead of runs of
// replies per session, one tagWaiter per command: whose reply comes
// next and which entry (by sequence number) it answers. The reader of a
// connection hands the reply of the session's head entry straight to its
// reply side (deliverLocked, no copy, as on one Redis); any other reply
// is held whole until the entries before it are answered, then replayed
// through the same path in order. With one command in flight — a client
// that waits for each reply — every reply is the head's: nothing is
// copied.
//
// Error replies are held whole before anything else sees them, so that a
// redirection (MOVED, ASK) is followed, and a TRYAGAIN or CLUSTERDOWN
// retried, inside the proxy: the command's own bytes (tagWaiter.data)
// are sent again under the same sequence number, so its place in client
// order is kept without holding anything back.

// tagWaiter is one reply owed on a cluster connection.
type tagWaiter struct {
	s    *session
	seq  uint64 // the entry it answers
	data []byte // the command as sent (after any rewrite), for a resend; nil: none
	fan  *fanout
	part int32 // with fan: which part of the split command it answers
	slot int32 // the hash slot of its keys; -1 without keys
	node int32 // the node it was sent to
	// tries counts redirections and retries followed; since is when the
	// first retry began (for FailoverWait).
	tries uint8
	since time.Time
	tx    bool // sent inside MULTI: a redirection cannot be followed
	drop  bool // ASKING sent before a resend: its +OK is dropped
	// grp: a command of a group (follow.go), its leader or, with
	// follows, a follower, not sent (data is kept for a redirection).
	grp     *group
	follows bool
}

// tagRead is the state of the reply a cluster connection's reader is
// reading (one at a time, so the reader keeps it).
type tagRead struct {
	on     bool
	push   bool // a RESP3 push: answers no command
	stream bool // goes straight to the session's reply side
	kind   byte
	s      *session
	w      tagWaiter
	buf    []byte // what is held while it may not be streamed
}

// start begins a reply and returns whose it is (nil: nobody's).
func (tr *tagRead) start(c *upConn, tl []tagWaiter, owner *session, kind byte) *session {
	tr.on, tr.kind, tr.stream = true, kind, false
	tr.push = kind == '>'
	tr.w = tagWaiter{}
	tr.s = nil
	switch {
	case tr.push && owner != nil:
		tr.s = owner
	case len(tl) == 0:
	case tr.push:
		tr.s = tl[0].s
	default:
		tr.w = tl[0]
		tr.s = tr.w.s
	}
	return tr.s
}

func (tr *tagRead) reset() {
	tr.on, tr.stream, tr.s = false, false, nil
	tr.w = tagWaiter{}
	if cap(tr.buf) > steadyBuf {
		tr.buf = nil
	} else {
		tr.buf = tr.buf[:0]
	}
}

// readyReply is a reply held until its entry reaches the head.
type readyReply struct {
	seq  uint64
	data []byte
	kind byte
	node int32
}

// deliverTaggedLocked takes one chunk of the reply tr is reading. mu is
// held.
func (s *session) deliverTaggedLocked(tr *tagRead, chunk []byte, done bool) {
	w := &tr.w
	switch {
	case s.ended || w.drop:
	case tr.stream:
		s.deliverLocked(chunk, done, tr.kind)
	case tr.kind != '-' && w.fan == nil && s.headIsLocked(tr):
		tr.stream = true
		s.rs.node = w.node
		if len(tr.buf) > 0 {
			// It became the head while it was held: what was held goes
			// first, the rest streams.
			s.deliverLocked(tr.buf, false, tr.kind)
			tr.buf = tr.buf[:0]
		}
		if !s.ended {
			s.deliverLocked(chunk, done, tr.kind)
		}
	default:
		tr.buf = append(tr.buf, chunk...)
		if done {
			data := tr.buf
			tr.buf = nil
			s.tagDoneLocked(tr.push, w, data, tr.kind)
		}
	}
	if done {
		tr.reset()
		s.replayLocked()
	}
}

// headIsLocked reports whether the reply tr reads may go to the client
// now: nothing else is being delivered, and it is a push or answers the
// head entry.
func (s *session) headIsLocked(tr *tagRead) bool {
	r := &s.rs
	if r.active {
		return false
	}
	if tr.push {
		return true
	}
	if !r.emitHead() {
		return false // ended
	}
	h := s.q.head()
	return h != nil && h.seq == tr.w.seq
}

// tagDoneLocked takes a reply that was held whole: a redirection or a
// retryable error is followed; a part of a split command is kept for the
// merge; anything else waits for its turn.
func (s *session) tagDoneLocked(push bool, w *tagWaiter, data []byte, kind byte) {
	r := &s.rs
	if push {
		r.pushes = append(r.pushes, data)
		return
	}
	if kind == '-' {
		var retried bool
		if retried, data = s.clusterErrorLocked(w, data); retried {
			return
		}
	}
	if w.fan != nil {
		s.partDoneLocked(w, data)
		return
	}
	r.ready = append(r.ready, readyReply{seq: w.seq, data: data, kind: kind, node: w.node})
}

// replayLocked delivers held pushes, and held replies whose entries have
// reached the head, in order, while nothing else is being delivered.
func (s *session) replayLocked() {
	r := &s.rs
	for !s.ended && !r.active && (len(r.ready) > 0 || len(r.pushes) > 0) {
		if len(r.pushes) > 0 {
			p := r.pushes[0]
			r.pushes[0] = nil
			r.pushes = r.pushes[1:]
			s.deliverLocked(p, true, '>')
			continue
		}
		if !r.emitHead() {
			return
		}
		h := s.q.head()
		if h == nil {
			return
		}
		i := 0
		for i < len(r.ready) && r.ready[i].seq != h.seq {
			i++
		}
		if i == len(r.ready) {
			return
		}
		rd := r.ready[i]
		last := len(r.ready) - 1
		r.ready[i] = r.ready[last]
		r.ready[last] = readyReply{}
		r.ready = r.ready[:last]
		r.node = rd.node
		s.deliverLocked(rd.data, true, rd.kind)
	}
	if len(r.ready) == 0 && cap(r.ready) > 64 {
		r.ready = nil
	}
}
