//go:build linux

package proxy

import (
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// eventLoop reads the clients of many sessions from one goroutine, the
// way twemproxy and predixy do, instead of a goroutine per client that
// the Go scheduler parks and wakes for every request. It waits for its
// epoll set inside Go's own netpoller (the epoll descriptor is itself
// pollable), so the goroutine parks like any other while nothing is
// ready, and other goroutines — the upstream connections' readers —
// run meanwhile on the same thread. A batch of ready clients is read,
// framed and routed in turn; the commands go into their upstream
// connections' buffers, and each connection is written once at the end
// of the batch.
//
// A session whose command must wait — for its replies before it moves to
// another connection, for a dial, for room in its queue, for a resend —
// does not stop the loop: the goroutine that runs the loop goes on
// serving that session alone (the wait happens there), and a new
// goroutine takes over the loop (handoff). When the session is done
// waiting, it comes back to the loop.
type eventLoop struct {
	srv  *Server
	ep   int
	file *os.File        // ep, registered with Go's netpoller
	poll syscall.RawConn // waits for ep to have events
	wake int             // eventfd: asks the runner to look at stop

	mu       sync.Mutex
	sessions map[int32]*session // by client descriptor
	released bool               // stopping: no session is attached again
	ln       listener           // the clients it accepts itself (loopaccept.go)

	// The runner's: only the goroutine that runs the loop touches these.
	runner atomic.Pointer[runner]
	events []syscall.EpollEvent
	n, i   int
	takeFn func(fd uintptr) bool // take, bound once
	dirty  []*upConn

	stopping atomic.Bool
	stopped  chan struct{} // closed when the runner has let go of every session
}

// runner identifies the goroutine that runs the loop now. (Not an empty
// struct: pointers to zero-size values may all be equal.)
type runner struct{ _ byte }

func newEventLoop(srv *Server) (*eventLoop, error) {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := syscall.SetNonblock(ep, true); err != nil {
		_ = syscall.Close(ep)
		return nil, err
	}
	wake, _, errno := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errno != 0 {
		_ = syscall.Close(ep)
		return nil, os.NewSyscallError("eventfd2", errno)
	}
	l := &eventLoop{
		srv: srv, ep: ep, wake: int(wake),
		sessions: map[int32]*session{},
		events:   make([]syscall.EpollEvent, 256),
		stopped:  make(chan struct{}),
	}
	l.takeFn = l.take
	l.ln.fd.Store(-1)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(l.wake)}
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, l.wake, &ev); err != nil {
		l.closeFDs()
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	l.file = os.NewFile(uintptr(ep), "epoll")
	if l.poll, err = l.file.SyscallConn(); err != nil {
		l.closeFDs()
		return nil, err
	}
	return l, nil
}

func (l *eventLoop) closeFDs() {
	_ = syscall.Close(l.wake)
	if l.file != nil {
		_ = l.file.Close()
	} else {
		_ = syscall.Close(l.ep)
	}
}

func (l *eventLoop) start() {
	r := &runner{}
	l.runner.Store(r)
	go l.run(r)
}

// errLoopStopped: the loop reads no more clients (Shutdown).
var errLoopStopped = errors.New("event loop stopped")

// attach makes the loop read s's client; from any goroutine.
func (l *eventLoop) attach(s *session) error {
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return errLoopStopped
	}
	s.loop = l
	l.sessions[int32(s.fd)] = s
	l.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(s.fd)}
	if err := syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_ADD, s.fd, &ev); err != nil {
		l.forget(s)
		s.loop = nil
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// detach stops the loop reading s's client. The descriptor is still the
// session's (finishReading closes it), so it is this session's that
// leaves the epoll set.
func (l *eventLoop) detach(s *session) {
	_ = syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_DEL, s.fd, nil)
	l.forget(s)
	s.loop = nil
}

func (l *eventLoop) forget(s *session) {
	l.mu.Lock()
	if l.sessions[int32(s.fd)] == s {
		delete(l.sessions, int32(s.fd))
	}
	l.mu.Unlock()
}

// markDirty notes that c has bytes queued in this batch; the runner
// writes it at the batch's end.
func (l *eventLoop) markDirty(c *upConn) {
	if !c.dirty {
		c.dirty = true
		l.dirty = append(l.dirty, c)
	}
}

func (l *eventLoop) flushDirty() {
	for i, c := range l.dirty {
		c.dirty = false
		c.flushNoWait()
		l.dirty[i] = nil
	}
	l.dirty = l.dirty[:0]
}

// handoff gives the loop to a new goroutine; the calling one, which was
// running it, goes on serving the session it was in.
func (l *eventLoop) handoff() {
	r := &runner{}
	l.runner.Store(r)
	go l.run(r)
}

// run is the loop, for as long as me is its runner.
func (l *eventLoop) run(me *runner) {
	for l.runner.Load() == me {
		if l.i >= l.n {
			l.flushDirty()
			if l.stopping.Load() {
				l.release()
				return
			}
			if !l.wait() {
				return
			}
			continue
		}
		ev := l.events[l.i]
		l.i++
		if int(ev.Fd) == l.wake {
			var b [8]byte
			_, _ = syscall.Read(l.wake, b[:])
			continue
		}
		if ev.Fd == l.ln.fd.Load() {
			l.acceptReady()
			continue
		}
		l.mu.Lock()
		s := l.sessions[ev.Fd]
		l.mu.Unlock()
		if s == nil {
			continue
		}
		s.onReadable()
		if l.runner.Load() != me {
			// The session had to wait, and this goroutine served it
			// while another ran the loop: it goes back to the loop now.
			s.backFromWait(l)
			return
		}
	}
}

// wait parks the runner in Go's netpoller until the epoll set has events,
// then takes them without blocking.
func (l *eventLoop) wait() bool {
	err := l.poll.Read(l.takeFn)
	return err == nil || !errors.Is(err, os.ErrClosed)
}

// take is wait's callback (bound once in takeFn: a closure made per wait
// would be an allocation per wait): the events ready now, false when
// there are none yet.
func (l *eventLoop) take(fd uintptr) bool {
	for {
		r, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, fd,
			uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), 0, 0, 0)
		switch {
		case errno == syscall.EINTR:
			continue
		case errno != 0:
			l.n, l.i = 0, 0
			return true
		}
		l.n, l.i = int(r), 0
		return r > 0
	}
}

// stop makes the runner let go of every session (Shutdown drains them on
// goroutines of their own) and end.
func (l *eventLoop) stop() {
	l.stopping.Store(true)
	var one = [8]byte{1}
	_, _ = syscall.Write(l.wake, one[:])
	<-l.stopped
	l.closeFDs()
}

// release detaches every session; each goes on as if its reading had been
// interrupted by the shutdown, on a goroutine of its own.
func (l *eventLoop) release() {
	l.mu.Lock()
	l.released = true
	all := make([]*session, 0, len(l.sessions))
	for _, s := range l.sessions {
		all = append(all, s)
	}
	l.mu.Unlock()
	for _, s := range all {
		l.detach(s)
		s.readOver = true
		go s.finishReading()
	}
	close(l.stopped)
}

// onReadable reads what the client sent and processes it, on the loop's
// runner. A session that has to wait hands the loop to a new runner
// (mayBlock) and is then served by this goroutine until run calls
// backFromWait.
func (s *session) onReadable() {
	for {
		if s.draining.Load() {
			return // Shutdown takes the session off the loop
		}
		if s.in.settle() && !s.in.makeRoom(maxBufferedCommand) {
			// One command fills the largest buffer: it streams through,
			// reading the client as it goes, which may wait.
			s.mayBlock()
			if !s.streamCommand() || !s.process() {
				s.readEnded(nil)
			}
			return
		}
		space := len(s.in.b) - s.in.w
		n, errno := rawRead(s.fd, s.in.free())
		switch {
		case errno == syscall.EINTR:
			continue
		case errno == syscall.EAGAIN:
			return
		case errno != 0:
			s.readEnded(os.NewSyscallError("read", errno))
			return
		case n == 0:
			s.readEnded(io.EOF)
			return
		}
		s.in.added(n)
		if !s.process() {
			s.readEnded(nil)
			return
		}
		if s.loop == nil || n < space {
			return // it waited, or the client has sent all it had
		}
	}
}

// readEnded finishes a session whose client will send nothing more: off
// the loop: at once when nothing is left to do for it, else on a
// goroutine of its own (or the one it already has).
func (s *session) readEnded(err error) {
	if err != nil {
		s.readFailed(err)
	}
	s.readOver = true
	if l := s.loop; l != nil {
		l.forget(s)
		s.loop = nil
		if s.endReading(false) {
			// Nothing left to do: closed here. A descriptor that is the
			// socket's only one leaves the epoll set as it closes, with
			// no epoll_ctl of its own.
			if !s.client.soleFD() {
				_ = syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_DEL, s.fd, nil)
			}
			s.closeClient()
			return
		}
		_ = syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_DEL, s.fd, nil)
		s.finishLater()
		return
	}
	s.finishReading()
}

// backFromWait puts a session that waited back on the loop, once its
// wait is over and what it had read is processed.
func (s *session) backFromWait(l *eventLoop) {
	if s.readOver {
		return
	}
	if s.draining.Load() || l.attach(s) != nil {
		s.readOver = true
		s.finishReading()
	}
}
