package proxy

import (
	"time"

	"go.uber.org/zap"
)

const (
	// flushAt bounds the reply bytes batched before a write to the client,
	// so a large reply streams through instead of piling up here.
	flushAt = 64 << 10
	// reloadTimeout bounds a Retry's Reload; the session's replies wait.
	reloadTimeout = 5 * time.Second
	// maxAttempts bounds how often one command is sent. More than one
	// retry is needed when the library vanishes again while a resend is
	// on its way, e.g. a FLUSH pipelined behind the command being resent.
	maxAttempts = 3
)

// disposition is what happens to the bytes of the reply being read.
type disposition uint8

const (
	dispForward disposition = iota // to the client (or to the reply's slot)
	dispDrop                       // replaced, retried or internal: the client never sees it
	dispBuffer                     // held whole for a ReplyTransformer or the EXEC fix-up
)

// replySide pairs each reply with its entry and forwards it. Every field
// is under session.mu: whichever upstream connection's reader delivers
// the session's replies holds it.
type replySide struct {
	s    *session
	out  output
	info SessionInfo
	obs  []SessionObserver
	wobs []SessionObserver // the WriteWatchers' among them

	// Connection state as Redis applies it (connstate.go).
	chans, pats, shards int    // RESP2 subscriptions, counted from Redis's confirmations
	monitor             bool   // MONITOR lines arrive unasked
	replyOff, replySkip bool   // CLIENT REPLY state
	raw                 bool   // after SYNC/PSYNC: bytes are relayed unframed
	quit                bool   // QUIT answered by Redis: its close is expected
	countPushes         bool   // RESP3 subscriptions: pushes are read for the count
	replied             uint64 // 1 + seq of the last command whose reply went to the client
	reset               bool   // the client is closed with a reset (output limit)
	authed              bool   // an AUTH succeeded since the start or the last RESET
	confirmed           bool   // the last AUTH/SELECT/HELLO/RESET took effect

	// The reply being read.
	active  bool
	decided bool
	disp    disposition
	e       *entry // the entry it answers; nil when unsolicited
	pend    []byte // bytes held until the reply's fate is decided; its head
	tail    []byte // last bytes of a RESP2 (un)subscribe confirmation
	tbuf    []byte // whole reply for a transformer
	retry   bool
	wrote   bool   // some bytes of it reached the client
	kind    byte   // its type byte
	cur     *slot  // where it goes while replies are reordered
	event   *Event // reused for every observed reply; allocated on first use

	// Resends after a lost Lua library (retry.go).
	reorder []*slot // replies held behind a resent command, in client order
	failed  []entry // commands waiting to be resent, in client order
	// failedNodes: in front of a Redis Cluster, the node each failed
	// command ran on; resending counts resends on their way.
	failedNodes []int32
	resending   int
	retrying    bool   // the read loop is paused until they are resent
	fence       uint64 // sequence number of the first command sent after the pause

	// A Redis Cluster upstream (clusterreply.go): replies held until
	// their entries reach the head, pushes held while another reply is
	// being delivered, and the node of the reply being delivered.
	ready  []readyReply
	pushes [][]byte
	node   int32

	// MULTI as Redis runs it (exec.go).
	inMulti  bool
	queuedN  int
	queuedRw []queuedRewrite
	execFix  bool // the EXEC reply being read is buffered for fixExec
}

func (r *replySide) init(s *session) {
	r.s = s
	r.out.init(s.client, s.srv.opts.ClientOutputLimit, s.srv.opts.WriteTimeout)
	r.info = SessionInfo{ID: s.rinfo.ID, Addr: s.rinfo.Addr, User: "default", Proto: 2}
	for _, o := range s.srv.opts.Observers {
		so := o.Open(&r.info)
		r.obs = append(r.obs, so)
		if _, ok := o.(WriteWatcher); ok {
			r.wobs = append(r.wobs, so)
		}
	}
}

// take handles the next chunk of the reply being read.
func (r *replySide) take(chunk []byte, done bool, kind byte) bool {
	r.kind = kind
	if !r.decided {
		if !r.authed {
			r.learnAuth(chunk)
		}
		if r.fastPath() {
			r.decided = true
			r.disp = dispForward
			r.dispatch(chunk)
		} else {
			r.pend = append(r.pend, chunk...)
			if len(r.pend) >= HeadSize || done {
				r.decide()
				r.dispatch(r.pend)
			}
		}
	} else {
		if r.tail != nil {
			r.tail = appendTail(r.tail, chunk)
		}
		r.dispatch(chunk)
	}
	if done {
		return r.complete()
	}
	return true
}

func (r *replySide) begin() {
	r.active, r.decided, r.retry, r.wrote, r.execFix = true, false, false, false, false
	r.disp = dispForward
	r.e, r.cur = nil, nil
	r.pend = r.pend[:0]
	r.tail = nil
}

// fastPath reports whether the reply can be forwarded without looking at
// it: the common case of a plain command, no pub/sub, MONITOR or reorder.
func (r *replySide) fastPath() bool {
	if len(r.reorder) > 0 || r.monitor || (r.info.Proto == 2 && r.subscribed()) {
		return false
	}
	if r.kind == '>' {
		// RESP3 (un)subscribe confirmations are pushes, and the
		// subscription count is read from them.
		return !r.countPushes
	}
	e := r.headEntry()
	if e == nil {
		return true // unsolicited: a reply to nothing we know
	}
	if e.rw != nil || e.obs != nil || e.slot != nil || e.internal || e.dropReply {
		return false
	}
	if e.cmd != nil {
		switch e.cmd.kind {
		case kindPlain, kindMulti, kindDiscard, kindWatch, kindUnwatch:
		case kindExec:
			if len(r.queuedRw) > 0 {
				return false
			}
		default:
			return false
		}
	}
	r.e = e
	return true
}

// decide settles, from the reply's head, whom it answers and what to do
// with it.
func (r *replySide) decide() {
	r.decided = true
	head := r.head()
	kind := r.kind
	e := r.headEntry()
	switch {
	case kind == '>':
		if isSubscription(confirmationKind(head)) {
			r.tail = appendTail(make([]byte, 0, 32), r.pend)
		}
		return // unsolicited
	case e == nil:
		return // unsolicited
	case r.info.Proto == 2 && r.subscribed() && isPubSubMessage(head):
		return
	case r.monitor && isMonitorLine(head):
		return
	}
	r.e = e
	if e.internal || e.dropReply {
		r.disp = dispDrop
		if e.internal {
			return
		}
	}
	if e.cmd != nil && e.cmd.kind == kindExec && len(r.queuedRw) > 0 && kind == '*' {
		r.disp, r.execFix = dispBuffer, true
	}
	if e.cmd != nil && (e.cmd.kind == kindSubscribe || e.cmd.kind == kindUnsubscribe) && r.info.Proto == 2 {
		r.tail = appendTail(make([]byte, 0, 32), r.pend)
	}
	if e.slot != nil {
		r.cur = e.slot
	} else if len(r.reorder) > 0 {
		r.cur = &slot{}
		r.reorder = append(r.reorder, r.cur)
	}
	if e.rw == nil {
		return
	}
	action, repl := e.rw.Check(head, r.info.Proto)
	switch action {
	case Replace:
		r.write(repl)
		r.disp = dispDrop
	case Retry:
		if e.resend != nil && e.attempts < maxAttempts {
			r.retry = true
			r.disp = dispDrop
		}
	case Buffer:
		if _, ok := e.rw.(ReplyTransformer); ok {
			r.disp = dispBuffer
		}
	}
}

func (r *replySide) head() []byte {
	if len(r.pend) > HeadSize {
		return r.pend[:HeadSize]
	}
	return r.pend
}

func (r *replySide) dispatch(b []byte) {
	switch r.disp {
	case dispForward:
		r.write(b)
	case dispBuffer:
		r.tbuf = append(r.tbuf, b...)
		if len(r.tbuf) > MaxTransformBytes {
			r.write(r.tbuf)
			r.tbuf = nil
			r.disp = dispForward
		}
	}
}

// write sends reply bytes to the client, or into the reply's slot while
// an earlier command's resend is outstanding.
func (r *replySide) write(b []byte) {
	if r.cur != nil {
		r.cur.data = append(r.cur.data, b...)
		return
	}
	r.wrote = true
	r.out.buf = append(r.out.buf, b...)
}

// complete finishes the reply just framed.
func (r *replySide) complete() bool {
	r.active = false
	e := r.e
	head := r.head()
	if e == nil {
		if r.kind == '>' && r.tail != nil {
			r.countSubscription(head)
			if h := r.s.q.head(); h != nil && h.pushes > 0 {
				h.pushes--
			}
		}
		return true
	}
	if e.internal {
		r.s.q.pop()
		if r.kind == '-' {
			// The connection could not be set up as the session needs
			// (its credentials were revoked meanwhile): as if Redis had
			// closed it.
			r.s.log.Warn("upstream refused setting up a connection for a client; closing the client",
				zap.String("reply", trimLine(head)))
			return false
		}
		return true
	}
	if r.disp == dispBuffer {
		r.disp = dispForward
		if r.execFix {
			r.write(r.fixExec(r.tbuf))
		} else {
			r.write(e.rw.(ReplyTransformer).Transform(r.tbuf, r.info.Proto))
		}
		r.tbuf = r.tbuf[:0]
	}
	r.trackMulti(e)
	if r.retry {
		return r.retryLater(e)
	}
	if e.cmd != nil && e.cmd.kind != kindPlain {
		r.apply(e, head)
	}
	if e.obs != nil {
		if e.cmd != nil && e.cmd.observed {
			r.observe(e, head)
		}
		if e.obs.writes != nil {
			r.observeWrite(e, head)
		}
	}
	if r.cur != nil {
		r.cur.ready = true
		r.cur = nil
		r.releaseSlots()
	}
	if r.disp == dispForward || r.disp == dispBuffer {
		r.replied = e.seq + 1
	}
	e.replies--
	if e.replies <= 0 || (len(head) > 0 && head[0] == '-') {
		r.s.q.pop()
	}
	return !e.closeAfter && r.maybeResend()
}

// headEntry returns the entry the next regular reply answers, first
// emitting locally answered entries and dropping those that get no reply.
func (r *replySide) headEntry() *entry {
	for {
		e := r.s.q.head()
		if e == nil {
			return nil
		}
		r.resolve(e)
		if e.local == nil && e.replies > 0 {
			return e
		}
		if e.pushes > 0 {
			return nil // its confirmations, pushes, are still to come
		}
		if e.local != nil {
			r.emitLocal(e.local)
		}
		r.s.q.pop()
	}
}
