package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"go.uber.org/zap"

	"github.com/exproxy/exproxy/proxy/resp"
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
	dispDrop                       // replaced or retried: the client never sees it
	dispBuffer                     // held whole for a ReplyTransformer
)

// replySide reads replies from upstream, pairs each with its entry and
// forwards it. All its fields belong to the reply goroutine.
type replySide struct {
	s        *session
	out      *output
	buf      []byte
	r, w     int
	lastRead int
	filled   bool // a read since the buffer was last drained filled it
	framer   resp.Framer
	info     SessionInfo
	obs      []SessionObserver

	// RESP2 subscriptions, counted from Redis's own confirmations so that
	// an UNSUBSCRIBE of everything knows how many replies it gets.
	chans, pats, shards int
	monitor             bool
	replyOff, replySkip bool // CLIENT REPLY state, as Redis applies it
	quit                bool // QUIT answered: the upstream close is expected
	raw                 bool // after SYNC/PSYNC: bytes are relayed unframed

	// the reply being read
	active  bool
	decided bool
	disp    disposition
	e       *entry // the entry it answers; nil when unsolicited
	pend    []byte // bytes held until the reply's fate is decided; its head
	tail    []byte // last bytes of a RESP2 (un)subscribe confirmation
	tbuf    []byte // whole reply for a transformer
	retry   bool
	cur     *slot   // where this reply goes while replies are reordered
	reorder []*slot // replies held behind a resent command, in client order
	failed  []entry // commands waiting to be resent, in client order
	// MULTI as Redis runs it: how many commands it queued so far, and
	// which of them were rewritten, so that EXEC's reply can be given to
	// their ReplyHandlers element by element.
	inMulti  bool
	queuedN  int
	queuedRw []queuedRewrite
	execFix  bool   // the EXEC reply being read is buffered for fixExec
	retrying bool   // the read loop is paused until they are resent
	fence    uint64 // sequence number of the first command sent after the pause
	event    *Event // reused for every observed reply; allocated on first use
	wrote    bool   // some bytes of the current reply reached the client
	kind     byte   // type byte of the reply being read

	// While the session is on a shared connection, that connection's
	// reader drives this replySide under session.rsMu instead of loop.
	shared bool
	dead   bool // shared: the client is being closed; replies are dropped
}

func (r *replySide) init(s *session) {
	r.s = s
	r.out = newOutput(s.client, s.srv.opts.ClientOutputLimit, s.srv.opts.WriteTimeout)
	r.framer.Limits = s.srv.opts.Limits
	r.framer.Limits.MaxInlineLen = max(r.framer.Limits.MaxInlineLen, 64<<10)
	r.info = SessionInfo{ID: s.rinfo.ID, Addr: s.rinfo.Addr, User: "default", Proto: 2}
	for _, o := range s.srv.opts.Observers {
		r.obs = append(r.obs, o.Open(&r.info))
	}
}

func (r *replySide) loop() {
	s := r.s
	defer r.finish()
	r.buf = make([]byte, minBuf)
	for {
		if !r.emitHead() {
			return
		}
		if len(r.out.buf) > 0 && r.flush() != nil {
			return
		}
		up := s.upstream()
		if up == nil {
			if s.closing.Load() && s.q.pending() == 0 {
				return
			}
			if s.q.isClosed() {
				return
			}
			<-s.q.notify
			continue
		}
		if r.w == len(r.buf) {
			r.makeRoom()
		}
		n, err := up.Read(r.buf[r.w:])
		if n > 0 {
			r.w += n
			r.lastRead = n
			if r.w == len(r.buf) {
				r.filled = true
			}
			if !r.feed() {
				return
			}
			if err := r.flush(); err != nil {
				return
			}
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// The read loop woke us to emit locally answered entries.
				s.wake.Store(false)
				_ = up.SetReadDeadline(time.Time{})
				continue
			}
			r.upstreamLost(err)
			return
		}
	}
}

// makeRoom is called with a full buffer: keep the unconsumed tail (a
// partial header line) and make space after it.
func (r *replySide) makeRoom() {
	if r.r > 0 {
		r.w = copy(r.buf, r.buf[r.r:r.w])
		r.r = 0
		return
	}
	nb := make([]byte, 2*len(r.buf))
	r.w = copy(nb, r.buf[:r.w])
	r.buf = nb
}

// feed frames and dispatches every reply byte read so far.
func (r *replySide) feed() bool {
	for r.r < r.w {
		if r.raw {
			r.relayRaw()
			return true
		}
		if !r.active {
			if !r.emitHead() {
				return false
			}
			if e := r.headEntry(); e != nil && e.cmd != nil && e.cmd.kind == kindSync {
				// The session is a replica's link from here on: an RDB
				// payload (a bulk string without its CRLF, or an EOF-
				// marked stream) and then the replication stream. Relay
				// it unframed, as Redis's own replicas read it.
				r.raw = true
				continue
			}
			r.begin()
		}
		n, done, err := r.framer.Next(r.buf[r.r:r.w])
		if err != nil {
			r.s.log.Warn("malformed reply from upstream", zap.Error(err))
			return false
		}
		if n == 0 && !done {
			break // a partial header line: wait for the rest
		}
		chunk := r.buf[r.r : r.r+n]
		r.r += n
		if !r.take(chunk, done, r.framer.Kind()) {
			return false
		}
		if len(r.out.buf) >= flushAt {
			if r.flush() != nil {
				return false
			}
		}
	}
	if r.r == r.w {
		r.r, r.w = 0, 0
		if n := resize(len(r.buf), r.lastRead, r.filled); n != len(r.buf) {
			r.buf = make([]byte, n)
		}
		r.filled = false
	}
	return true
}

// take handles the next chunk of the reply being read; done says it
// ends the reply, whose type byte is kind.
func (r *replySide) take(chunk []byte, done bool, kind byte) bool {
	r.kind = kind
	if !r.decided {
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

// relayRaw forwards everything read, and drops the entries of what the
// replica sends (REPLCONF ACK gets no reply), so none pile up.
func (r *replySide) relayRaw() {
	r.out.buf = append(r.out.buf, r.buf[r.r:r.w]...)
	r.r = r.w
	for r.s.q.head() != nil {
		r.s.q.pop()
	}
	r.r, r.w = 0, 0
}

// fastPath reports whether the reply can be forwarded without looking at
// it: the common case of a plain command, no pub/sub, MONITOR or reorder.
func (r *replySide) fastPath() bool {
	if len(r.reorder) > 0 || r.monitor || (r.info.Proto == 2 && r.subscribed()) {
		return false
	}
	e := r.headEntry()
	if e == nil {
		return true // unsolicited (a push, or a reply to nothing we know)
	}
	if r.kind == '>' {
		return true
	}
	if e.cmd != nil && e.cmd.kind == kindExec && len(r.queuedRw) > 0 {
		return false
	}
	if e.rw != nil || e.obs != nil || e.slot != nil || (e.cmd != nil && e.cmd.kind != kindPlain && e.cmd.kind != kindMulti && e.cmd.kind != kindExec && e.cmd.kind != kindDiscard) {
		return false
	}
	r.e = e
	return true
}

func (r *replySide) subscribed() bool { return r.chans+r.pats+r.shards > 0 }

// decide settles, from the reply's head, whom it answers and what to do
// with it.
func (r *replySide) decide() {
	r.decided = true
	head := r.head()
	kind := r.kind
	e := r.headEntry()
	switch {
	case kind == '>' || e == nil:
		return // unsolicited
	case r.info.Proto == 2 && r.subscribed() && isPubSubMessage(head):
		return
	case r.monitor && isMonitorLine(head):
		return
	}
	r.e = e
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
	if e == nil {
		return true
	}
	head := r.head()
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
	r.apply(e, head)
	if e.obs != nil {
		r.observe(e, head)
	}
	if r.cur != nil {
		r.cur.ready = true
		r.cur = nil
		r.releaseSlots()
	}
	e.replies--
	if e.replies <= 0 || (len(head) > 0 && head[0] == '-') {
		r.s.q.pop()
	}
	return !e.closeAfter && r.maybeResend()
}

// retryLater sets e aside to be sent again. The first failure pauses the
// read loop; once every command sent before that is answered (they ran
// against the same missing library, so the ex commands among them fail
// too), the library is reloaded and all failed commands are resent in
// their original order, before anything the client sent later. Replies
// behind them wait in slots, so the client sees every reply in order.
func (r *replySide) retryLater(e *entry) bool {
	// The slot keeps this reply's place in client order: the one decide
	// made if replies are already held back, else a new one.
	sl := r.cur
	if sl == nil {
		sl = &slot{}
		r.reorder = append(r.reorder, sl)
	}
	r.cur = nil
	ne := *e
	ne.slot = sl
	ne.replies = 1
	ne.attempts++
	ne.resolved = true
	r.failed = append(r.failed, ne)
	if !r.retrying {
		r.retrying = true
		r.fence = r.s.pause()
	}
	r.s.q.pop()
	return r.maybeResend()
}

// maybeResend resends the failed commands once nothing sent before the
// pause is still unanswered.
func (r *replySide) maybeResend() bool {
	if !r.retrying {
		return true
	}
	if h := r.s.q.head(); h != nil && h.seq < r.fence {
		return true
	}
	s := r.s
	failed := r.failed
	r.failed, r.retrying = nil, false
	ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
	err := failed[0].rw.Reload(ctx)
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
	var data []byte
	for i := range failed {
		data = s.rewriteAgain(data, failed[i].resend, failed[i].cmd)
	}
	s.upMu.Lock()
	var ok bool
	var werr error
	if r.shared {
		ok = s.sc != nil && s.sc.send(s, failed, len(failed), data) == nil
	} else {
		ok = s.q.push(failed)
		if ok {
			werr = s.writeUp(data)
		}
	}
	s.paused = false
	s.resumed.Broadcast()
	s.upMu.Unlock()
	return ok && werr == nil
}

type queuedRewrite struct {
	idx int // position in EXEC's reply
	rw  ReplyHandler
}

// trackMulti follows MULTI ... EXEC from the replies: in MULTI, every
// command answered with a status reply (+QUEUED) takes the next element
// of EXEC's reply; errors are not queued.
func (r *replySide) trackMulti(e *entry) {
	if e.cmd != nil {
		switch e.cmd.kind {
		case kindMulti:
			if !r.inMulti {
				r.inMulti, r.queuedN, r.queuedRw = true, 0, r.queuedRw[:0]
			}
			return
		case kindExec, kindDiscard, kindReset:
			r.inMulti, r.queuedN, r.queuedRw = false, 0, r.queuedRw[:0]
			return
		}
	}
	if !r.inMulti || r.kind != '+' {
		return
	}
	if e.rw != nil {
		r.queuedRw = append(r.queuedRw, queuedRewrite{idx: r.queuedN, rw: e.rw})
	}
	r.queuedN++
}

// fixExec gives each element of an EXEC reply that answers a rewritten
// command to that command's ReplyHandler, as its reply would have been
// given outside MULTI (e.g. exstring restores integers beyond 2^53 that
// Lua could only return as strings). Retry cannot apply inside EXEC.
func (r *replySide) fixExec(reply []byte) []byte {
	nl := bytes.IndexByte(reply, '\n')
	if nl < 0 {
		return reply
	}
	out := append([]byte(nil), reply[:nl+1]...)
	rest := reply[nl+1:]
	f := resp.Framer{Limits: r.framer.Limits}
	q := r.queuedRw
	var reload ReplyHandler
	for i := 0; len(rest) > 0; i++ {
		f.Reset()
		n, done, err := f.Next(rest)
		if err != nil || !done {
			return reply
		}
		el := rest[:n]
		rest = rest[n:]
		if len(q) > 0 && q[0].idx == i {
			switch act, repl := q[0].rw.Check(el, r.info.Proto); act {
			case Replace:
				el = repl
			case Retry:
				reload = q[0].rw
			}
			q = q[1:]
		}
		out = append(out, el...)
	}
	if reload != nil {
		// The element keeps Redis's error; reloading now lets the
		// client's next attempt at the transaction succeed.
		ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
		if err := reload.Reload(ctx); err != nil {
			r.s.log.Warn("reload after EXEC failed", zap.Error(err))
		}
		cancel()
	}
	return out
}

// releaseSlots writes the leading ready slots to the client.
func (r *replySide) releaseSlots() {
	i := 0
	for ; i < len(r.reorder) && r.reorder[i].ready; i++ {
		r.out.buf = append(r.out.buf, r.reorder[i].data...)
		r.reorder[i] = nil
	}
	r.reorder = r.reorder[i:]
	if len(r.reorder) == 0 {
		r.reorder = nil
	}
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
		if e.local != nil {
			r.emitLocal(e.local)
		}
		r.s.q.pop()
	}
}

// resolve fixes how many regular replies an entry gets. That depends on
// the state the session is in when the command runs — CLIENT REPLY
// OFF/SKIP, the protocol, RESP2 subscribed mode — which is known here, in
// reply order, and not when the command was sent.
func (r *replySide) resolve(e *entry) {
	if e.resolved {
		return
	}
	e.resolved = true
	if e.local != nil {
		return
	}
	silenced := r.replyOff || r.replySkip
	subMode := r.info.Proto == 2 && r.subscribed()
	if e.replyMode != replyUnchanged {
		if subMode {
			// Redis refuses CLIENT in RESP2 subscribed mode; the error
			// is silenced like any other reply.
			if silenced {
				e.replies = 0
			}
			r.replySkip = false
			return
		}
		switch e.replyMode {
		case replyOff:
			r.replyOff, e.replies = true, 0
		case replySkip:
			r.replySkip = !r.replyOff
			e.replies = 0
		case replyOn:
			r.replyOff, r.replySkip, e.replies = false, false, 1
		}
		return
	}
	r.replySkip = false
	if e.cmd != nil && e.cmd.kind == kindReset {
		r.replyOff = false // RESET clears CLIENT REPLY OFF before it answers
		return
	}
	if e.cmd != nil && (e.cmd.kind == kindSubscribe || e.cmd.kind == kindUnsubscribe) {
		// Confirmations are sent even under CLIENT REPLY OFF.
		n := e.subArgs
		switch {
		case r.info.Proto == 3 && (n > 0 || e.cmd.kind == kindUnsubscribe):
			e.replies = 0 // confirmations come as pushes
		case n > 0:
			e.replies = n
		case e.cmd.kind == kindUnsubscribe:
			e.replies = int32(max(1, r.subCount(e.cmd.name)))
		case silenced:
			e.replies = 0 // its arity error is silenced
		default:
			e.replies = 1 // arity error
		}
		return
	}
	if silenced {
		e.replies = 0
		if e.cmd != nil && e.cmd.kind == kindQuit {
			r.quit = true // no +OK will say so
		}
	}
}

func (r *replySide) subCount(name string) int {
	switch name {
	case "unsubscribe":
		return r.chans
	case "punsubscribe":
		return r.pats
	default:
		return r.shards
	}
}

// emitHead emits locally answered entries at the head of the queue. It
// returns false when one of them ends the session.
func (r *replySide) emitHead() bool {
	for {
		e := r.s.q.head()
		if e == nil {
			break
		}
		r.resolve(e)
		if e.local == nil && e.replies > 0 {
			break
		}
		closeAfter := e.closeAfter
		if e.local != nil {
			r.emitLocal(e.local)
		}
		r.s.q.pop()
		if closeAfter {
			if r.shared {
				// endShared flushes and waits for a slow client apart
				// from the shared reader.
				r.dead = true
				_ = r.flushShared()
				return false
			}
			_ = r.flush()
			r.out.drain(time.Second)
			return false
		}
		if !r.maybeResend() {
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

// flushShared is flush for a session on a shared connection: one write
// that does not wait, since the reader serves other sessions too. What
// the client does not take at once goes to the background flusher.
func (r *replySide) flushShared() error {
	r.s.q.settle()
	err := r.out.flushNoWait()
	if err != nil {
		r.flushFailed(err)
	}
	return err
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
		if tc, ok := r.s.client.(interface{ SetLinger(int) error }); ok {
			_ = tc.SetLinger(0)
		}
		r.s.srv.stats.outputLimitClosed.Add(1)
		r.s.log.Warn("closing client: it does not read its replies", zap.Error(err),
			zap.Int64("limit_bytes", r.out.limit))
	} else if !errors.Is(err, net.ErrClosed) {
		r.s.log.Debug("client write", zap.Error(err))
	}
}

// apply updates the session's identity from a successful reply.
func (r *replySide) apply(e *entry, head []byte) {
	if e.cmd == nil {
		return
	}
	ok := bytes.HasPrefix(head, []byte("+OK\r\n"))
	switch e.cmd.kind {
	case kindSelect:
		if ok {
			if db := parseDB(e.arg); db >= 0 {
				r.info.DB = db
			}
		}
	case kindAuth:
		if ok && e.arg != "" {
			r.info.User = e.arg
		}
	case kindHello:
		if len(head) > 0 && (head[0] == '%' || head[0] == '*') {
			switch e.arg {
			case "2":
				r.info.Proto = 2
			case "3":
				r.info.Proto = 3
			}
			if e.arg2 != "" {
				r.info.User = e.arg2
			}
			if e.arg3 != "" {
				r.info.Name = e.arg3
			}
		}
	case kindClient:
		if ok && e.sub == kindClient {
			r.info.Name = e.arg
		}
	case kindReset:
		if bytes.HasPrefix(head, []byte("+RESET")) {
			r.info.DB, r.info.Name, r.info.User, r.info.Proto = 0, "", "default", 2
			r.chans, r.pats, r.shards, r.monitor = 0, 0, 0, false
			r.replyOff, r.replySkip = false, false
		}
	case kindMonitor:
		if ok {
			r.monitor = true
		}
	case kindQuit:
		// Redis closes after this reply and ignores whatever followed.
		r.quit = true
	case kindSubscribe, kindUnsubscribe:
		r.countSubscription(head)
	}
}

// countSubscription reads a RESP2 confirmation, e.g.
// *3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n, whose last element is the
// number of subscriptions left.
func (r *replySide) countSubscription(head []byte) {
	if r.info.Proto != 2 || len(head) < 4 || head[0] != '*' || r.tail == nil {
		return
	}
	t := r.tail
	i := bytes.LastIndexByte(t[:len(t)-2], ':')
	if i < 0 {
		return
	}
	v, ok := resp.ParseInt(t[i+1 : len(t)-2])
	if !ok || v < 0 {
		return
	}
	n := int(v)
	// Redis counts channels and patterns together; shard channels apart.
	switch kind := confirmationKind(head); {
	case equalFold(kind, "subscribe"), equalFold(kind, "unsubscribe"):
		r.chans = max(0, n-r.pats)
	case equalFold(kind, "psubscribe"), equalFold(kind, "punsubscribe"):
		r.pats = max(0, n-r.chans)
	case equalFold(kind, "ssubscribe"), equalFold(kind, "sunsubscribe"):
		r.shards = n
	}
}

// confirmationKind is the first element of a RESP2 confirmation
// (*3\r\n$N\r\n<kind>\r\n...), or nil.
func confirmationKind(head []byte) []byte {
	// *3\r\n$N\r\n<kind>\r\n
	i := bytes.IndexByte(head, '\n')
	if i < 0 {
		return nil
	}
	rest := head[i+1:]
	j := bytes.IndexByte(rest, '\n')
	if j < 0 {
		return nil
	}
	rest = rest[j+1:]
	k := bytes.IndexByte(rest, '\r')
	if k < 0 {
		return nil
	}
	return rest[:k]
}

// isPubSubMessage tells a RESP2 message from a reply in subscribed mode.
func isPubSubMessage(head []byte) bool {
	return bytes.HasPrefix(head, []byte("*3\r\n$7\r\nmessage\r\n")) ||
		bytes.HasPrefix(head, []byte("*4\r\n$8\r\npmessage\r\n")) ||
		bytes.HasPrefix(head, []byte("*3\r\n$8\r\nsmessage\r\n"))
}

// isMonitorLine recognises "+1700000000.123456 [0 127.0.0.1:5000] ...".
func isMonitorLine(head []byte) bool {
	if len(head) < 3 || head[0] != '+' || head[1] < '0' || head[1] > '9' {
		return false
	}
	sp := bytes.IndexByte(head, ' ')
	return sp > 0 && bytes.IndexByte(head[:sp], '.') > 0 && sp+1 < len(head) && head[sp+1] == '['
}

func appendTail(t, b []byte) []byte {
	const keep = 32
	if len(b) >= keep {
		return append(t[:0], b[len(b)-keep:]...)
	}
	t = append(t, b...)
	if len(t) > keep {
		t = append(t[:0], t[len(t)-keep:]...)
	}
	return t
}

// observe hands an observed reply to every observer.
func (r *replySide) observe(e *entry, head []byte) {
	if r.event == nil {
		r.event = new(Event) // most sessions never need one
	}
	ev := r.event
	*ev = Event{
		Name:   e.cmd.name,
		Args:   e.obs.args,
		Reply:  head,
		Kind:   r.kind,
		Sent:   e.obs.sent,
		Done:   time.Now(),
		Queued: e.obs.queued,
		Info:   &r.info,
	}
	if o, ok := e.rw.(Outcomer); ok && len(head) > 0 {
		ev.Outcome = o.Outcome(head)
	}
	for _, o := range r.obs {
		o.Observe(ev)
	}
}

// upstreamLost answers everything still pending with an error that says
// its outcome is unknown, and ends the session: its server-side state
// (MULTI, WATCH, SELECT, subscriptions) is gone with the connection.
func (r *replySide) upstreamLost(err error) {
	s := r.s
	if r.quit {
		_ = r.flush()
		return
	}
	if errors.Is(err, io.EOF) && s.closing.Load() {
		// We closed our write side after the client's EOF; Redis has
		// answered everything it received.
		r.failPending(nil)
		return
	}
	s.upMu.Lock()
	if s.upErr != nil {
		err = s.upErr
	}
	s.upMu.Unlock()
	if !errors.Is(err, net.ErrClosed) {
		s.srv.stats.upstreamErrors.Add(1)
		s.log.Warn("upstream connection lost", zap.String("upstream", s.srv.opts.Upstream.String()), zap.Error(err))
	}
	r.failPending(err)
}

func (r *replySide) failPending(err error) {
	if r.active && r.wrote {
		// Part of a reply is out: nothing can follow it that the client
		// would parse correctly. Closing is the honest answer.
		_ = r.flush()
		return
	}
	cause := "connection closed"
	if err != nil {
		cause = err.Error()
	}
	msg := resp.AppendError(nil, fmt.Sprintf("ERR exproxy: lost connection to upstream %s (%s); the outcome of this command is unknown", r.s.srv.opts.Upstream, cause))
	if r.active && r.e != nil {
		r.write(msg)
		r.completeFailed()
	}
	r.s.upMu.Lock()
	aborted := r.s.aborted
	r.s.upMu.Unlock()
	for {
		e := r.s.q.head()
		if e == nil {
			break
		}
		r.resolve(e)
		switch {
		case e.local != nil:
			r.emitLocal(e.local)
		case e.seq+1 == aborted:
			// Cut short by a protocol error: Redis never had it whole.
		case e.replies > 0:
			if e.slot != nil {
				e.slot.data = msg
				e.slot.ready = true
			} else {
				r.emitLocal(msg)
			}
		}
		r.s.q.pop()
	}
	for _, sl := range r.reorder {
		if !sl.ready {
			sl.data, sl.ready = msg, true
		}
	}
	r.releaseSlots()
	_ = r.flush()
	r.out.drain(time.Second)
}

func (r *replySide) completeFailed() {
	r.active = false
	if r.cur != nil {
		r.cur.ready = true
		r.cur = nil
	}
	r.s.q.pop()
}

// finish ends the session.
func (r *replySide) finish() {
	s := r.s
	// A shared session that ends while it is moving to a connection of
	// its own can get here from both its shared reader and its new reply
	// loop.
	s.finishOnce.Do(func() {
		for _, o := range r.obs {
			o.Close()
		}
		s.resume()
		s.close()
		s.srv.forget(s)
		close(s.done)
	})
}
