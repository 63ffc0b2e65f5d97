package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/exproxy/exproxy/proxy/resp"
)

const (
	// maxBufferedCommand is the largest command held whole in memory;
	// larger ones (e.g. a 64 MB SET) stream through in chunks.
	maxBufferedCommand = 1 << 20
	// maxResend bounds the copy kept of a rewritten command for a Retry.
	maxResend = 64 << 10
)

// session is one client connection and its own upstream connection. All
// per-connection state lives here: the read loop owns the fields marked
// "read side", the reply loop those marked "reply side".
type session struct {
	srv    *Server
	log    sessionLog
	client net.Conn
	rinfo  SessionInfo // ID and Addr only: what the read side may show a Rewriter

	q    *queue
	wake atomic.Bool // the read loop interrupted the reply loop's upstream read

	upMu       sync.Mutex // orders pushes and upstream writes of the two loops
	up         net.Conn   // set by the read side under upMu; nil until dialled
	upDeadline time.Time  // write deadline set on up; under upMu
	upErr      error      // under upMu: why writing upstream failed
	aborted    uint64     // under upMu: 1 + seq of a streamed command cut short by a protocol error
	paused     bool       // under upMu: the reply loop is resending; send nothing new
	resumed    *sync.Cond // on upMu: signalled when paused ends

	finishOnce sync.Once
	closing    atomic.Bool   // no more commands will come from the client
	draining   atomic.Bool   // server shutdown: stop reading the client
	done       chan struct{} // closed when the session has ended

	// read side
	rbuf        []byte
	r, w        int
	lastRead    int                  // bytes the last read returned
	rdeadline   time.Time            // read deadline set on client by readRaw
	filled      bool                 // a read since the buffer was last drained filled it
	parser      resp.ResumableParser // re-parses nothing when a command trickles in over many reads
	argv        [][]byte
	inline      []byte
	upbuf       []byte
	batch       []entry
	inMulti     bool
	queued      []string
	hasLocal    bool // the batch holds a locally answered entry
	batchFailed bool // the last batch could not reach upstream

	// reply side
	rs replySide

	// Shared upstream mode (shared.go). While sharedMode, a shared
	// connection's reader drives rs under rsMu, and inflight counts the
	// replies it still owes this session.
	sharedMode bool        // read side: the session is on shared connections
	proto      int         // read side: their protocol
	sc         *sharedConn // the one in use; written by the read side under upMu
	pinProto   int         // protocol to set up on the session's own connection
	rsMu       sync.Mutex
	idle       *sync.Cond // on rsMu: inflight reached 0
	inflight   atomic.Int64
	readDone   bool // under rsMu: no more commands will come
	finished   bool // under rsMu: endShared has run
}

func newSession(srv *Server, client net.Conn, id uint64) *session {
	s := &session{
		srv:    srv,
		client: client,
		q:      newQueue(srv.opts.MaxPending),
		done:   make(chan struct{}),
		parser: resp.ResumableParser{CommandParser: resp.CommandParser{Limits: srv.opts.Limits}},
	}
	s.resumed = sync.NewCond(&s.upMu)
	s.idle = sync.NewCond(&s.rsMu)
	if srv.opts.Mode == SharedUpstream {
		s.sharedMode, s.proto = true, 2
	}
	s.rinfo = SessionInfo{ID: id, Addr: client.RemoteAddr().String()}
	s.log = sessionLog{base: srv.log, id: id, addr: s.rinfo.Addr}
	s.rs.init(s)
	s.rs.shared = s.sharedMode
	return s
}

// run serves the session until either side closes.
func (s *session) run() {
	s.log.Debug("client connected")
	if !s.sharedMode {
		s.dial() // eagerly, so the first command does not pay for it; failures are answered per command
		go s.rs.loop()
	}
	s.readLoop()
	<-s.done
	s.log.Debug("client disconnected")
}

// dial connects upstream if not connected. It reports the error to answer
// commands with when Redis cannot be reached.
func (s *session) dial() error {
	s.upMu.Lock()
	defer s.upMu.Unlock()
	if s.up != nil {
		return nil
	}
	conn, err := s.srv.dialUpstream(context.Background())
	if err == nil && s.pinProto == 3 {
		// Moved off a shared connection after HELLO 3: the client's
		// protocol comes along.
		if err = hello3(conn, s.srv.opts.DialTimeout); err != nil {
			_ = conn.Close()
		}
	}
	if err != nil {
		s.srv.stats.upstreamErrors.Add(1)
		s.log.Warn("upstream unreachable", zap.String("upstream", s.srv.opts.Upstream.String()), zap.Error(err))
		return err
	}
	if s.q.isClosed() {
		// close ran while the dial was on its way (a shutdown right after
		// the client connected): nothing would ever close this one.
		_ = conn.Close()
		return errQueueClosed
	}
	s.up = conn
	// The reply loop may be waiting for a connection to read from.
	s.notify()
	return nil
}

func (s *session) notify() {
	select {
	case s.q.notify <- struct{}{}:
	default:
	}
}

func (s *session) upstream() net.Conn {
	s.upMu.Lock()
	defer s.upMu.Unlock()
	return s.up
}

// readLoop reads commands from the client, routes them and writes them
// upstream, one write per batch of whatever the client had sent.
func (s *session) readLoop() {
	defer s.endReading()
	s.rbuf = make([]byte, minBuf)
	var raw syscall.RawConn
	if sc, ok := s.client.(syscall.Conn); ok {
		raw, _ = sc.SyscallConn()
	}
	for {
		if raw != nil {
			end, err := s.readRaw(raw)
			if end {
				return
			}
			s.clearReadDeadline()
			if errors.Is(err, os.ErrDeadlineExceeded) && !s.draining.Load() {
				continue // eofCheckAfter: read again
			}
			if err != nil {
				s.readFailed(err)
				return
			}
		}
		// The plain path: for a command that must be streamed through, or
		// a connection without raw access.
		if s.draining.Load() {
			return
		}
		if s.needRoom() && !s.makeRoom() {
			return
		}
		n, err := s.client.Read(s.rbuf[s.w:])
		s.w += n
		s.lastRead = n
		if s.w == len(s.rbuf) {
			s.filled = true // a batch did not fit
		}
		if n > 0 {
			if !s.process() {
				return
			}
		}
		if err != nil {
			s.readFailed(err)
			return
		}
	}
}

// needRoom prepares the read buffer for the next read and reports whether
// it is full (one incomplete command fills it), which makeRoom resolves.
func (s *session) needRoom() bool {
	if s.r == s.w {
		s.r, s.w = 0, 0
		if n := resize(len(s.rbuf), s.lastRead, s.filled); n != len(s.rbuf) {
			s.rbuf = make([]byte, n)
		}
		s.filled = false
	}
	return s.w == len(s.rbuf)
}

// eofCheckAfter bounds how long readRaw waits after a short read before
// it reads again anyway: an end of stream that arrived with the last data
// (a client that writes and shuts down at once) raises no new readiness
// event, so only a read finds it.
const eofCheckAfter = 100 * time.Millisecond

// readRaw is the read loop's fast path. It stays inside one RawConn.Read,
// so that after a read that did not fill the buffer — the client has
// sent all it had — it waits for the next readiness event instead of
// reading again to learn that there is nothing: one read syscall per
// request instead of two. (A fresh conn.Read forgets readiness that
// arrived in between, so it must try a read first.) end reports that the
// session is over; otherwise, with a nil error, a command too large to
// buffer needs the plain path.
func (s *session) readRaw(raw syscall.RawConn) (end bool, err error) {
	rerr := raw.Read(func(fd uintptr) bool {
		for {
			if s.draining.Load() {
				end = true
				return true
			}
			if s.needRoom() {
				if s.r > 0 || len(s.rbuf) < maxBufferedCommand {
					s.makeRoom() // compacts or grows; never streams
				} else {
					return true // streaming reads the client itself
				}
			}
			space := len(s.rbuf) - s.w
			n, errno := syscall.Read(int(fd), s.rbuf[s.w:])
			switch {
			case errno == syscall.EINTR:
				continue
			case errno == syscall.EAGAIN:
				s.clearReadDeadline() // nothing was pending: wait without one
				return false
			case errno != nil:
				err = os.NewSyscallError("read", errno)
				return true
			case n == 0:
				err = io.EOF
				return true
			}
			s.w += n
			s.lastRead = n
			if s.w == len(s.rbuf) {
				s.filled = true
			}
			if !s.process() {
				end = true
				return true
			}
			if n < space {
				// Refreshed only when half used, so a busy client costs
				// a clock read per request, not a timer update.
				now := time.Now()
				if s.rdeadline.Sub(now) < eofCheckAfter/2 {
					s.rdeadline = now.Add(eofCheckAfter)
					_ = s.client.SetReadDeadline(s.rdeadline)
				}
				if s.draining.Load() {
					end = true
					return true
				}
				return false
			}
		}
	})
	if err == nil && rerr != nil {
		err = rerr
	}
	return end, err
}

// clearReadDeadline removes the deadline readRaw set to look for an end
// of stream; an expired one would fail every read.
func (s *session) clearReadDeadline() {
	if !s.rdeadline.IsZero() {
		s.rdeadline = time.Time{}
		_ = s.client.SetReadDeadline(s.rdeadline)
	}
}

// readFailed ends reading on a read error, logging what is unexpected.
func (s *session) readFailed(err error) {
	if s.draining.Load() {
		return
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		s.log.Debug("client read", zap.Error(err))
	}
}

// makeRoom is called with a full read buffer holding one incomplete
// command at s.r: compact, grow, or stream the command through.
func (s *session) makeRoom() bool {
	if s.r > 0 {
		s.w = copy(s.rbuf, s.rbuf[s.r:s.w])
		s.r = 0
		return true
	}
	if len(s.rbuf) < maxBufferedCommand {
		nb := make([]byte, min(2*len(s.rbuf), maxBufferedCommand))
		s.w = copy(nb, s.rbuf[:s.w])
		s.rbuf = nb
		return true
	}
	// What follows the streamed command in the buffer is processed now:
	// the client may be waiting for its replies and send nothing more.
	return s.streamCommand() && s.process()
}

// process frames and routes every complete command in the buffer, then
// sends the batch.
func (s *session) process() bool {
	for s.r < s.w && !s.draining.Load() {
		n, args, inline, err := s.parser.Parse(s.rbuf[s.r:s.w], s.argv[:0])
		if err != nil {
			s.protocolError(err)
			return false
		}
		if n == 0 {
			break
		}
		raw := s.rbuf[s.r : s.r+n]
		s.r += n
		if len(args) == 0 {
			continue // Redis ignores empty commands and sends no reply
		}
		if inline {
			raw, args = s.inlineToMultibulk(args)
		}
		cmd := s.srv.table.lookup(args[0])
		if s.sharedMode {
			if done, ok := s.routeShared(cmd, raw, args); done {
				s.argv = args[:0]
				if !ok {
					return false
				}
				continue
			}
		}
		s.route(cmd, raw, args, len(args), false)
		s.argv = args[:0]
	}
	return s.send()
}

// inlineToMultibulk re-encodes an inline command so that upstream and the
// extensions see exactly the arguments the proxy parsed.
func (s *session) inlineToMultibulk(args [][]byte) ([]byte, [][]byte) {
	s.inline = resp.AppendArrayHeader(s.inline[:0], len(args))
	for _, a := range args {
		s.inline = resp.AppendBulk(s.inline, a)
	}
	var p resp.CommandParser
	p.Limits = s.parser.Limits
	_, out, _, _ := p.Parse(s.inline, args[:0])
	return s.inline, out
}

// route decides what to send for one command and appends it, with its
// entry, to the batch. partial is set for a command streamed through,
// whose raw holds only its beginning.
func (s *session) route(cmd *command, raw []byte, args [][]byte, argc int, partial bool) (skip int) {
	s.srv.stats.commands.Add(1)
	e := entry{cmd: cmd, replies: 1}
	rewritten := false
	if cmd != nil {
		s.sendSideState(&e, cmd, args)
		if cmd.rewriter != nil {
			if rw, ok := cmd.rewriter.Rewrite(args, argc, &s.rinfo); ok {
				if rw.Local != nil {
					e.local = rw.Local
					s.batch = append(s.batch, e)
					s.hasLocal = true
					return len(raw)
				}
				e.rw = rw.Reply
				if rw.Prefix != nil {
					skip = afterName(raw, args[0])
					s.upbuf = appendRewrite(s.upbuf, rw, argc)
					if !partial {
						s.upbuf = append(s.upbuf, raw[skip:]...)
						// The command as the client sent it is kept, not
						// its rewrite: a resend rewrites it again, since the
						// reason for the resend may change the rewrite
						// (FCALL unknown: EVALSHA instead).
						if e.rw != nil && len(raw) <= maxResend {
							e.resend = bytes.Clone(raw)
						}
					}
					rewritten = true
				}
			}
		}
		if cmd.observed {
			e.obs = &observed{args: cloneArgs(args[1:]), sent: time.Now()}
			if cmd.kind == kindExec {
				e.obs.queued, s.queued = s.queued, nil
			}
		}
	}
	if s.inMulti && len(s.srv.opts.Observers) > 0 && (cmd == nil || (cmd.kind != kindMulti && cmd.kind != kindExec)) {
		s.queued = append(s.queued, nameOf(cmd, args[0]))
	}
	if !rewritten {
		if !partial {
			s.upbuf = append(s.upbuf, raw...)
		}
		skip = 0
	}
	s.batch = append(s.batch, e)
	return skip
}

// sendSideState updates what the read side tracks (MULTI, CLIENT REPLY)
// and records in e what the reply side needs to apply the command's effect.
func (s *session) sendSideState(e *entry, cmd *command, args [][]byte) {
	switch cmd.kind {
	case kindMulti:
		s.inMulti = true
		s.queued = s.queued[:0]
	case kindExec, kindDiscard:
		s.inMulti = false
	case kindReset:
		s.inMulti = false
		s.queued = nil
	case kindSelect:
		if len(args) == 2 {
			e.arg = string(args[1])
		}
	case kindAuth:
		switch len(args) {
		case 2:
			e.arg = "default"
		case 3:
			e.arg = string(args[1]) // the user name; the password is never kept
		}
	case kindHello:
		if len(args) >= 2 {
			e.arg = string(args[1])
		}
		for i := 2; i < len(args); i++ {
			switch {
			case equalFold(args[i], "auth") && i+2 < len(args):
				e.arg2 = string(args[i+1])
				i += 2
			case equalFold(args[i], "setname") && i+1 < len(args):
				e.arg3 = string(args[i+1])
				i++
			}
		}
	case kindClient:
		if len(args) < 2 {
			return
		}
		switch {
		case equalFold(args[1], "setname") && len(args) == 3:
			e.sub = kindClient
			e.arg = string(args[2])
		case equalFold(args[1], "reply") && len(args) == 3 && !s.inMulti:
			// Whether it takes effect depends on the mode the session is
			// in when it runs, which only the reply side knows: see resolve.
			switch {
			case equalFold(args[2], "off"):
				e.replyMode = replyOff
			case equalFold(args[2], "skip"):
				e.replyMode = replySkip
			case equalFold(args[2], "on"):
				e.replyMode = replyOn
			}
		}
	case kindSubscribe, kindUnsubscribe:
		// How many replies depends on the protocol in force when the
		// command runs, which only the reply side knows; see resolve.
		e.subArgs = int32(len(args) - 1)
	}
}

// appendRewrite appends the header of a rewritten command: the new
// argument count and the prefix that replaces the name.
func appendRewrite(dst []byte, rw Rewrite, argc int) []byte {
	dst = resp.AppendArrayHeader(dst, argc-1+rw.PrefixArgs)
	return append(dst, rw.Prefix...)
}

// rewriteAgain appends to dst what to send for raw, a command kept for a
// resend, rewriting it as the rewriter now would.
func (s *session) rewriteAgain(dst, raw []byte, cmd *command) []byte {
	p := resp.CommandParser{Limits: s.parser.Limits}
	_, args, _, err := p.Parse(raw, nil)
	if err != nil || len(args) == 0 || cmd == nil || cmd.rewriter == nil {
		return append(dst, raw...)
	}
	rw, ok := cmd.rewriter.Rewrite(args, len(args), &s.rinfo)
	if !ok || rw.Prefix == nil {
		return append(dst, raw...)
	}
	dst = appendRewrite(dst, rw, len(args))
	return append(dst, raw[afterName(raw, args[0]):]...)
}

// afterName is the offset in a multibulk command just past its name.
func afterName(raw, name []byte) int {
	first := bytes.IndexByte(raw, '\n') + 1
	second := first + bytes.IndexByte(raw[first:], '\n') + 1
	return second + len(name) + 2
}

func nameOf(cmd *command, name []byte) string {
	if cmd != nil {
		return cmd.name
	}
	return strings.ToLower(string(name))
}

func cloneArgs(args [][]byte) [][]byte {
	if len(args) == 0 {
		return nil
	}
	n := 0
	for _, a := range args {
		n += len(a)
	}
	buf := make([]byte, 0, n)
	out := make([][]byte, len(args))
	for i, a := range args {
		buf = append(buf, a...)
		out[i] = buf[len(buf)-len(a):]
	}
	return out
}

// send pushes the batch's entries and writes its bytes upstream. Entries go
// first, so a reply can never arrive before its entry.
func (s *session) send() bool {
	if len(s.batch) == 0 {
		return true
	}
	s.batchFailed = false
	var ok bool
	if s.sharedMode {
		ok = s.sendShared()
	} else {
		if s.upstream() == nil && s.needsUpstream() {
			if err := s.dial(); err != nil {
				s.failBatch(err)
			}
		}
		ok = s.flushBatch()
	}
	s.batch = s.batch[:0]
	if cap(s.upbuf) > steadyBuf {
		s.upbuf = nil
	} else {
		s.upbuf = s.upbuf[:0]
	}
	return ok
}

func (s *session) needsUpstream() bool {
	for i := range s.batch {
		if s.batch[i].local == nil {
			return true
		}
	}
	return false
}

func (s *session) flushBatch() bool {
	s.q.waitSpace()
	s.upMu.Lock()
	for s.paused {
		s.resumed.Wait()
	}
	if !s.q.push(s.batch) {
		s.upMu.Unlock()
		return false
	}
	var err error
	if len(s.upbuf) > 0 {
		err = s.writeUp(s.upbuf)
	}
	up := s.up
	s.upMu.Unlock()
	if s.hasLocal {
		s.hasLocal = false
		s.interruptReplies(up)
	}
	if err != nil {
		// The reply loop sees the same failure on its read and answers
		// every pending command; nothing more to do here.
		s.log.Debug("upstream write", zap.Error(err))
		return false
	}
	return true
}

// pause stops the read loop from sending anything new, and returns the
// sequence number the next command sent will get.
func (s *session) pause() uint64 {
	s.upMu.Lock()
	defer s.upMu.Unlock()
	s.paused = true
	return s.q.total()
}

// resume lets the read loop send again.
func (s *session) resume() {
	s.upMu.Lock()
	s.paused = false
	s.resumed.Broadcast()
	s.upMu.Unlock()
}

// writeUp writes to the upstream connection; the caller holds upMu. A
// Redis that stops reading (it never should) cannot hang the session past
// WriteTimeout. The deadline is refreshed only when half used up, so the
// common write pays for a clock read, not a timer update.
func (s *session) writeUp(b []byte) error {
	now := time.Now()
	if s.upDeadline.Sub(now) < s.srv.opts.WriteTimeout/2 {
		s.upDeadline = now.Add(s.srv.opts.WriteTimeout)
		_ = s.up.SetWriteDeadline(s.upDeadline)
	}
	_, err := s.up.Write(b)
	if err != nil && s.upErr == nil {
		// A failed write leaves the connection in an unknown state: close
		// it, so the reply loop's read fails too and every pending command
		// is answered with this cause.
		s.upErr = fmt.Errorf("write: %w", err)
		_ = s.up.Close()
	}
	return err
}

// interruptReplies wakes a reply loop blocked reading upstream so that it
// emits locally answered entries.
func (s *session) interruptReplies(up net.Conn) {
	if up == nil {
		s.notify()
		return
	}
	s.wake.Store(true)
	_ = up.SetReadDeadline(time.Now())
}

// failBatch answers every command of the batch that expected an upstream
// reply with the reason Redis cannot be reached.
func (s *session) failBatch(err error) {
	msg := resp.AppendError(nil, fmt.Sprintf("ERR exproxy: upstream %s unreachable: %v", s.srv.opts.Upstream, err))
	for i := range s.batch {
		e := &s.batch[i]
		if e.local == nil {
			if e.replies == 0 {
				e.local = []byte{}
			} else {
				e.local = msg
			}
			e.rw, e.obs, e.resend = nil, nil, nil
		}
	}
	s.upbuf = s.upbuf[:0]
	s.hasLocal = true
	s.batchFailed = true
	// Session state changed by these commands never reached Redis.
	s.inMulti = false
}

// protocolError answers malformed input the way Redis does, after the
// replies still pending, and then closes the connection.
func (s *session) protocolError(err error) {
	s.srv.stats.protocolErrors.Add(1)
	s.log.Debug("protocol error from client", zap.Error(err))
	var pe *resp.ProtocolError
	msg := "ERR " + err.Error()
	if !errors.As(err, &pe) {
		msg = "ERR Protocol error: " + err.Error()
	}
	s.batch = append(s.batch, entry{local: resp.AppendError(nil, msg), closeAfter: true, replies: 1})
	s.hasLocal = true
	s.send()
}

// streamCommand forwards a command too large to buffer whole: its routing
// is decided on its first arguments, the rest is copied through in chunks
// as it arrives, so memory does not grow with the command's size.
func (s *session) streamCommand() bool {
	argc, args, body, err := s.parser.Peek(s.rbuf[s.r:s.w], s.argv[:0])
	if err != nil {
		s.protocolError(err)
		return false
	}
	if s.sharedMode {
		// Chunks of one command cannot interleave with other sessions'.
		if !s.send() {
			return false
		}
		s.pin([]byte("(a command too large to buffer)"))
	}
	skip := 0
	nb := len(s.batch)
	if body > 0 && len(args) > 0 {
		skip = s.route(s.srv.table.lookup(args[0]), s.rbuf[s.r:s.w], args, argc, true)
	} else {
		s.batch = append(s.batch, entry{replies: 1})
	}
	// A locally answered command is read to its end and dropped.
	forward := s.batch[nb].local == nil
	if !s.send() {
		return false
	}
	up := s.upstream()
	forward = forward && up != nil && !s.batchFailed
	// Command mode ends the command exactly where Redis would.
	f := resp.Framer{Limits: s.parser.Limits, Command: true}
	if skip > 0 {
		// The rewrite replaced the header and name: walk them without
		// sending, so the framer still counts the arguments that follow.
		if _, _, err := f.Next(s.rbuf[s.r : s.r+skip]); err != nil {
			s.abortStreamed(err)
			return false
		}
		s.r += skip
	}
	for {
		n, done, err := f.Next(s.rbuf[s.r:s.w])
		if err != nil {
			s.abortStreamed(err)
			return false
		}
		if n > 0 && forward {
			s.upMu.Lock()
			werr := s.writeUp(s.rbuf[s.r : s.r+n])
			s.upMu.Unlock()
			if werr != nil {
				return false
			}
		}
		s.r += n
		if done {
			return true
		}
		if s.r == s.w {
			s.r, s.w = 0, 0
		} else if s.r > 0 {
			s.w = copy(s.rbuf, s.rbuf[s.r:s.w])
			s.r = 0
		}
		rn, rerr := s.client.Read(s.rbuf[s.w:])
		s.w += rn
		if rerr != nil && rn == 0 {
			var ne net.Error
			if errors.As(rerr, &ne) && ne.Timeout() && s.draining.Load() {
				// Shutdown interrupted the read; a command half sent is
				// let finish (within the drain timeout) so it gets its
				// reply, instead of being cut off unanswered.
				_ = s.client.SetReadDeadline(time.Time{})
				continue
			}
			return false
		}
	}
}

// abortStreamed ends a streamed command that turned out malformed part
// way. Redis never saw it whole, so it will never answer it: like Redis,
// the client gets only the protocol error.
func (s *session) abortStreamed(err error) {
	s.upMu.Lock()
	s.aborted = s.q.total() // the streamed command is the last one pushed
	s.upMu.Unlock()
	s.protocolError(err)
}

// endReading runs when no more commands will come from the client: on EOF
// the upstream write side is closed so that Redis, like it would for the
// client itself, finishes what it received and then closes; the reply loop
// forwards those last replies and ends the session.
func (s *session) endReading() {
	s.closing.Store(true)
	if s.sharedMode {
		s.rsMu.Lock()
		s.readDone = true
		if s.inflight.Load() == 0 {
			s.endShared()
		}
		s.rsMu.Unlock()
		return
	}
	up := s.upstream()
	if s.draining.Load() {
		return // Shutdown decides when to close
	}
	if up == nil {
		s.notify()
		return
	}
	if cw, ok := up.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err == nil {
			return
		}
	}
	_ = up.Close()
}

// close tears the session down; safe to call more than once.
func (s *session) close() {
	_ = s.client.Close()
	// The queue first: a dial still on its way (it holds upMu) then
	// discards its connection, or has set s.up by the time we look.
	s.q.close()
	s.rsMu.Lock()
	if s.rs.shared && !s.finished {
		// Replies still owed by a shared connection are dropped.
		s.rs.dead, s.readDone = true, true
		s.endShared()
	}
	s.rsMu.Unlock()
	if up := s.upstream(); up != nil {
		_ = up.Close()
	}
}

// drain stops reading the client and waits for pending replies until ctx
// ends, then closes the session.
func (s *session) drain(ctx context.Context) {
	s.draining.Store(true)
	_ = s.client.SetReadDeadline(time.Now())
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.q.pending() > 0 {
		select {
		case <-ctx.Done():
			s.close()
			<-s.done
			return
		case <-s.done:
			return
		case <-tick.C:
		}
	}
	s.rs.out.drain(time.Until(deadlineOr(ctx, time.Second)))
	s.close()
	<-s.done
}

func deadlineOr(ctx context.Context, d time.Duration) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl
	}
	return time.Now().Add(d)
}

// parseDB reads a SELECT argument; -1 when it is not a plain number.
func parseDB(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}
