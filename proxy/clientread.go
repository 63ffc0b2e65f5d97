package proxy

import (
	"errors"
	"io"
	"net"
	"os"
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
	// eofCheckAfter bounds how long readRaw waits after a short read
	// before it reads again anyway: an end of stream that arrived with
	// the last data (a client that writes and shuts down at once) raises
	// no new readiness event, so only a read finds it.
	eofCheckAfter = 100 * time.Millisecond
)

// readLoop reads commands from the client, routes them and sends them
// upstream, one send per batch of whatever the client had sent.
func (s *session) readLoop() {
	s.in.init(minBuf)
	conn, err := s.client.blocking()
	if err != nil {
		s.readFailed(err)
		return
	}
	var raw syscall.RawConn
	if sc, ok := conn.(syscall.Conn); ok {
		raw, _ = sc.SyscallConn()
	}
	for {
		if raw != nil {
			end, err := s.readRaw(conn, raw)
			if end {
				return
			}
			s.rdl.clear(conn)
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
		if s.in.settle() && !s.in.makeRoom(maxBufferedCommand) {
			// One command fills the largest buffer: stream it through.
			// What follows it in the buffer is processed now: the client
			// may be waiting for its replies and send nothing more.
			if !s.streamCommand() || !s.process() {
				return
			}
			continue
		}
		n, err := conn.Read(s.in.free())
		s.in.added(n)
		if n > 0 && !s.process() {
			return
		}
		if err != nil {
			s.readFailed(err)
			return
		}
	}
}

// readRaw is the read loop's fast path. It stays inside one RawConn.Read,
// so that after a read that did not fill the buffer — the client has
// sent all it had — it waits for the next readiness event instead of
// reading again to learn that there is nothing: one read syscall per
// request instead of two. (A fresh conn.Read forgets readiness that
// arrived in between, so it must try a read first.) end reports that the
// session is over; otherwise, with a nil error, a command too large to
// buffer needs the plain path.
func (s *session) readRaw(conn net.Conn, raw syscall.RawConn) (end bool, err error) {
	rerr := raw.Read(func(fd uintptr) bool {
		for {
			if s.draining.Load() {
				end = true
				return true
			}
			if s.in.settle() && !s.in.makeRoom(maxBufferedCommand) {
				return true // streaming reads the client itself
			}
			space := len(s.in.b) - s.in.w
			n, errno := rawRead(int(fd), s.in.free())
			switch {
			case errno == syscall.EINTR:
				continue
			case errno == syscall.EAGAIN:
				s.rdl.clear(conn) // nothing was pending: wait without one
				return false
			case errno != 0:
				err = os.NewSyscallError("read", errno)
				return true
			case n == 0:
				err = io.EOF
				return true
			}
			s.in.added(n)
			if !s.process() {
				end = true
				return true
			}
			if n < space {
				s.rdl.refresh(conn, eofCheckAfter)
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

// mayBlock is called before the read side does something that can
// wait (for replies, a dial, room in the queue, the rest of a streamed
// command). A session read by the event loop must not stop it: the loop
// gets a new runner, and the current goroutine goes on serving this
// session alone — with what it queued so far written first, since the
// wait may be for its replies. The session returns to the loop once its
// processing is done (backFromWait).
func (s *session) mayBlock() {
	l := s.loop
	if l == nil {
		return
	}
	l.flushDirty()
	l.detach(s)
	s.srv.stats.handoffs.Add(1)
	l.handoff()
}

// readFailed ends reading on a read error, logging what is unexpected.
func (s *session) readFailed(err error) {
	if s.draining.Load() {
		return
	}
	s.peerClosed = errors.Is(err, io.EOF)
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		s.log.Debug("client read", zap.Error(err))
	}
}

// protocolError answers malformed input the way Redis does: after the
// replies still pending, with Redis's own text, and then the connection
// is closed — unless CLIENT REPLY OFF/SKIP silences the reply, when Redis
// keeps the connection open but reads nothing more from it.
func (s *session) protocolError(err error) {
	s.srv.stats.protocolErrors.Add(1)
	s.log.Debug("protocol error from client", zap.Error(err))
	var pe *resp.ProtocolError
	msg := "ERR " + err.Error()
	if !errors.As(err, &pe) {
		msg = "ERR Protocol error: " + err.Error()
	}
	s.batch = append(s.batch, entry{local: resp.AppendError(nil, msg), closeAfterReply: true, readStart: s.readStart, replies: 1})
	s.hasLocal = true
	s.ignoreRest = true
}

// streamCommand forwards a command too large to buffer whole: its routing
// is decided on its first arguments, the rest is copied through in chunks
// as it arrives, so memory does not grow with the command's size. It runs
// on a connection of the session's own: its chunks cannot interleave with
// other sessions' commands.
func (s *session) streamCommand() bool {
	argc, args, body, err := s.parser.Peek(s.in.data(), s.argv[:0])
	if err != nil {
		s.protocolError(err)
		return s.send()
	}
	if !s.send() {
		return false
	}
	var cmd *command
	if body > 0 && len(args) > 0 {
		cmd = s.srv.table.lookup(args[0])
	}
	if s.cl != nil {
		if ok, alive := s.streamOwnCluster(cmd, args); !ok {
			if !alive {
				return false
			}
			return s.discardStreamed() && s.send()
		}
	} else if s.conns.own == nil {
		name := []byte("(a command too large to buffer)")
		if moved, alive := s.moveToOwn(cmd, name); !moved {
			if !alive {
				return false
			}
			// Unreachable: the command was answered; read it to its end.
			return s.discardStreamed() && s.send()
		}
	}
	skip := 0
	if body > 0 && len(args) > 0 {
		skip = s.route(cmd, s.in.data(), args, argc, true)
	} else {
		s.srv.stats.commands.Add(1)
		s.batch = append(s.batch, entry{replies: 1})
	}
	if s.batch[len(s.batch)-1].local != nil {
		// Answered locally: read to its end and dropped.
		return s.send() && s.discardStreamed()
	}
	own := s.conns.own
	if !own.holdWriter() {
		return false
	}
	defer own.releaseWriter()
	s.q.waitSpace()
	n := 0
	for i := range s.batch {
		if s.batch[i].local == nil {
			n++
		}
	}
	s.sendMu.Lock()
	for s.paused {
		s.resumed.Wait()
	}
	err = own.sendHeld(s, s.batch, n, s.upbuf)
	s.sendMu.Unlock()
	s.batch, s.upbuf = s.batch[:0], s.upbuf[:0]
	s.clearCands()
	if err != nil {
		return false
	}
	// Command mode ends the command exactly where Redis would.
	f := resp.Framer{Limits: s.parser.Limits, Command: true}
	if skip > 0 {
		// The rewrite replaced the header and name: walk them without
		// sending, so the framer still counts the arguments that follow.
		if _, _, err := f.Next(s.in.b[s.in.r : s.in.r+skip]); err != nil {
			s.abortStreamed(err)
			return false
		}
		s.in.r += skip
	}
	return s.copyStreamed(&f, own)
}

// copyStreamed copies the rest of a streamed command to c (nil: drops
// it), reading the client as needed.
func (s *session) copyStreamed(f *resp.Framer, c *upConn) bool {
	conn, err := s.client.blocking()
	if err != nil {
		return false
	}
	for {
		n, done, err := f.Next(s.in.data())
		if err != nil {
			if c != nil {
				s.abortStreamed(err)
			} else {
				s.protocolError(err)
				s.send()
			}
			return false
		}
		if n > 0 && c != nil {
			if c.writeHeld(s.in.b[s.in.r:s.in.r+n]) != nil {
				return false
			}
		}
		s.in.r += n
		if done {
			return true
		}
		if s.in.r == s.in.w {
			s.in.r, s.in.w = 0, 0
		} else if s.in.r > 0 {
			s.in.makeRoom(0)
		}
		rn, rerr := conn.Read(s.in.free())
		s.in.w += rn
		if rerr != nil && rn == 0 {
			var ne net.Error
			if errors.As(rerr, &ne) && ne.Timeout() && s.draining.Load() {
				// Shutdown interrupted the read; a command half sent is
				// let finish (within the drain timeout) so it gets its
				// reply, instead of being cut off unanswered.
				_ = conn.SetReadDeadline(time.Time{})
				continue
			}
			return false
		}
	}
}

// discardStreamed reads a streamed command to its end without sending it.
func (s *session) discardStreamed() bool {
	f := resp.Framer{Limits: s.parser.Limits, Command: true}
	return s.copyStreamed(&f, nil)
}

// abortStreamed ends a streamed command that turned out malformed part
// way. Redis never saw it whole, so it will never answer it: like Redis,
// the client gets only the protocol error.
func (s *session) abortStreamed(err error) {
	s.mu.Lock()
	s.aborted = s.q.total() // the streamed command is the last one pushed
	s.mu.Unlock()
	s.protocolError(err)
	s.send()
}
