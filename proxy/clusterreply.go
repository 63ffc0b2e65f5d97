package proxy

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"

	"github.com/exproxy/exproxy/proxy/cluster"
	"github.com/exproxy/exproxy/proxy/resp"
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
	c.tfifo = append(c.tfifo, w)
	c.out = append(c.out, w.data...)
	c.owed.Add(1)
	if nd := c.srv.clusterNode(c.node); nd != nil {
		nd.commands.Add(1)
	}
	return nil
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

// partDoneLocked keeps the reply of one part of a split or fanned-out
// command; once every part is in, their merge is the command's reply.
func (s *session) partDoneLocked(w *tagWaiter, data []byte) {
	f := w.fan
	if f.replies[w.part] == nil {
		f.left--
	}
	f.replies[w.part] = data
	if f.left > 0 {
		return
	}
	merged := f.merge(s.rs.info.Proto)
	f.replies = nil
	kind := byte('-')
	if len(merged) > 0 {
		kind = merged[0]
	}
	s.rs.ready = append(s.rs.ready, readyReply{seq: w.seq, data: merged, kind: kind})
}

// fanout is a command sent to several nodes as parts (a multi-key
// command split by slot, a whole-dataset command sent to every primary),
// whose replies merge into the one the client gets.
type fanout struct {
	how     mergeHow
	replies [][]byte // per part, once in
	left    int      // parts not yet in
	// MGET: for each part, the positions of its keys in the client's
	// command.
	keys  [][]int32
	nkeys int
	// SCAN: the index of the primary asked, and how many there are.
	scanIdx, scanN int
}

type mergeHow uint8

const (
	mergeSum    mergeHow = iota // integers added (DEL, EXISTS, DBSIZE, ...)
	mergeAllOK                  // one reply when all succeed, else the first error
	mergeOneOK                  // the first success, else the first error
	mergeMin                    // the least integer
	mergeMax                    // the greatest integer
	mergeAnd                    // integers, or arrays of them element-wise: logical AND
	mergeOr                     // logical OR
	mergeConcat                 // arrays joined (KEYS)
	mergeByKey                  // arrays placed by key position (MGET)
	mergeScan                   // one part: SCAN's cursor made the proxy's
	mergeRandom                 // a random non-null reply (RANDOMKEY)
)

func (f *fanout) merge(proto int) []byte {
	parts := f.replies
	switch f.how {
	case mergeSum:
		return cluster.AggregateIntegers(parts, cluster.AggSum)
	case mergeMin:
		return cluster.AggregateIntegers(parts, cluster.AggMin)
	case mergeMax:
		return cluster.AggregateIntegers(parts, cluster.AggMax)
	case mergeAnd:
		return cluster.AggregateIntegers(parts, cluster.AggAnd)
	case mergeOr:
		return cluster.AggregateIntegers(parts, cluster.AggOr)
	case mergeAllOK:
		return cluster.AllSucceeded(parts)
	case mergeOneOK:
		return cluster.OneSucceeded(parts)
	case mergeConcat:
		return cluster.ConcatArrays(parts)
	case mergeByKey:
		return cluster.MergeByKey(parts, f.keys, f.nkeys)
	case mergeScan:
		return cluster.ScanReply(parts[0], f.scanIdx, f.scanN)
	case mergeRandom:
		return cluster.PickNonNull(parts, rand.IntN)
	}
	return resp.AppendError(nil, "ERR exproxy: no merge for this command")
}

// resendCluster is maybeResend in front of a Redis Cluster: the library
// is loaded again on each node that failed a command (NodeReloader), then
// the commands go, on a goroutine of their own, to their slots' nodes.
// mu is held.
func (r *replySide) resendCluster(failed []entry, nodes []int32) bool {
	s := r.s
	v := s.srv.cluster
	ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
	var err error
	reloaded := map[int32]bool{}
	for i := range failed {
		n := nodes[i]
		if reloaded[n] {
			continue
		}
		reloaded[n] = true
		if nr, ok := failed[i].rw.(NodeReloader); ok && n != 0 {
			err = nr.ReloadNode(ctx, v.addr(n))
		} else {
			err = failed[i].rw.Reload(ctx)
		}
		if err != nil {
			break
		}
	}
	cancel()
	if err != nil {
		s.log.Warn("reload for resend failed", zap.Error(err))
		msg := resp.AppendError(nil, "ERR exproxy: "+err.Error())
		for _, f := range failed {
			f.slot.data, f.slot.ready = msg, true
		}
		r.releaseSlots()
		s.resume()
		return true
	}
	r.resending++
	go s.resendEntries(failed)
	return true
}

// resendEntries sends failed commands again, rewritten anew, each to its
// slot's node; the session's sends stay paused until they are queued.
func (s *session) resendEntries(failed []entry) {
	v := s.srv.cluster
	st := v.state.Load()
	id := s.cl.ident.Load()
	ps := s.srv.pools
	type item struct {
		w   tagWaiter
		c   *upConn
		err error
	}
	items := make([]item, len(failed))
	var p resp.CommandParser
	p.Limits = s.parser.Limits
	for i := range failed {
		f := &failed[i]
		it := &items[i]
		it.w = tagWaiter{s: s, data: s.rewriteAgain(nil, f.resend, f.cmd), slot: -1, part: -1}
		_, args, _, perr := p.Parse(f.resend, nil)
		node := st.home(s.rinfo.ID)
		if perr == nil && len(args) > 0 {
			_, keys := s.srv.keysOf(f.cmd, args, nil)
			if slot, ok := cluster.SameSlot(args, keys); ok && slot >= 0 && st.slotNode[slot] != 0 {
				it.w.slot, node = int32(slot), st.slotNode[slot]
			}
		}
		it.w.node = node
		var pl *pool
		if pl, it.err = ps.join(id.key.at(node), id.cred); it.err == nil {
			it.c, it.err = ps.shared(pl, s.rinfo.ID)
			ps.leave(pl)
		}
	}
	seq0, ok := s.q.pushSeq(failed)
	var lost []int
	for i := range items {
		it := &items[i]
		it.w.seq = seq0 + uint64(i)
		if ok && it.err == nil {
			if it.err = it.c.queueResend(it.w, false); it.err == nil {
				it.c.flushNoWait()
				continue
			}
		}
		lost = append(lost, i)
	}
	s.mu.Lock()
	for _, i := range lost {
		if ok {
			s.tagDoneLocked(false, &items[i].w, unreachableNode(s.srv, items[i].w.node, items[i].err), '-')
		}
	}
	s.rs.resending--
	if s.waiting {
		s.idle.Broadcast()
	}
	s.replayLocked()
	s.flushLocked()
	s.mu.Unlock()
	s.resume()
}
