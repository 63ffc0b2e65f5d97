package proxy

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// stallAfter is how long a write to the client may block before the
// client counts as a slow reader. Past it, the reply loop hands the bytes
// to a background flusher and goes on reading upstream, so that replies
// pile up here — bounded — and not unbounded inside Redis, whose normal
// clients have no output limit.
const stallAfter = 100 * time.Millisecond

// errOutputLimit closes a client that does not read its replies.
var errOutputLimit = errors.New("client output buffer limit reached")

// output batches replies for one client. Only the reply loop calls
// append/flush; the flusher goroutine exists only while the client stalls.
type output struct {
	conn         net.Conn
	buf          []byte
	limit        int64
	writeTimeout time.Duration // a stalled client that accepts nothing for this long is closed

	deadline time.Time       // write deadline currently set on conn
	raw      syscall.RawConn // for writes that must not wait; nil if conn has none

	mu        sync.Mutex
	slow      bool   // a flusher owns the connection's write side
	fastAgain bool   // the flusher handed the connection back
	backlog   []byte // bytes the flusher has still to write
	err       error  // the flusher's write error, if any
	wake      chan struct{}
	idle      chan struct{} // closed by the flusher when it drains and exits
}

func newOutput(conn net.Conn, limit int64, writeTimeout time.Duration) *output {
	o := &output{conn: conn, limit: limit, writeTimeout: writeTimeout}
	if sc, ok := conn.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			o.raw = rc
		}
	}
	return o
}

// toBacklog hands o.buf to the flusher while the client is slow, and
// reports whether it did.
func (o *output) toBacklog() (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.slow {
		if o.fastAgain {
			// The flusher set its own deadline when it took over; once
			// expired it would fail flushNoWait's writes, which set none.
			o.fastAgain = false
			o.deadline = time.Time{}
			if o.raw != nil {
				_ = o.conn.SetWriteDeadline(time.Time{})
			}
		}
		return false, nil
	}
	err := o.err
	if err == nil && int64(len(o.backlog)+len(o.buf)) > o.limit {
		err = fmt.Errorf("%w (%d bytes pending)", errOutputLimit, len(o.backlog)+len(o.buf))
	}
	if err == nil {
		o.backlog = append(o.backlog, o.buf...)
	}
	o.buf = o.buf[:0]
	if err == nil {
		select {
		case o.wake <- struct{}{}:
		default:
		}
	}
	return true, err
}

// goSlow starts the background flusher with rest, the bytes a write
// could not place.
func (o *output) goSlow(rest []byte) error {
	if int64(len(rest)) > o.limit {
		return fmt.Errorf("%w (%d bytes pending)", errOutputLimit, len(rest))
	}
	o.mu.Lock()
	o.slow = true
	o.backlog = append(o.backlog[:0], rest...)
	o.wake = make(chan struct{}, 1)
	o.idle = make(chan struct{})
	o.mu.Unlock()
	o.buf = o.buf[:0]
	go o.flusher()
	return nil
}

// flushNoWait is flush for a writer that serves many clients (a shared
// upstream connection's reader): one write that takes what the socket
// accepts now, the rest going to the background flusher at once.
func (o *output) flushNoWait() error {
	if len(o.buf) == 0 {
		return nil
	}
	if o.raw == nil {
		return o.flush()
	}
	if handled, err := o.toBacklog(); handled {
		return err
	}
	var n int
	var werr error
	err := o.raw.Write(func(fd uintptr) bool {
		for {
			m, e := syscall.Write(int(fd), o.buf)
			if e == syscall.EINTR {
				continue
			}
			if m > 0 {
				n = m
			}
			if e != nil && e != syscall.EAGAIN {
				werr = os.NewSyscallError("write", e)
			}
			return true // never wait: that is the flusher's job
		}
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		return err
	}
	if n == len(o.buf) {
		o.shrink()
		return nil
	}
	return o.goSlow(o.buf[n:])
}

// flush writes what append collected. It returns errOutputLimit when a
// stalled client's backlog would exceed the limit, or the write error.
func (o *output) flush() error {
	if len(o.buf) == 0 {
		return nil
	}
	if handled, err := o.toBacklog(); handled {
		return err
	}
	// Refresh the deadline only now and then: setting it costs more than
	// the check, and it only has to catch a stall, not time it exactly.
	now := time.Now()
	if o.deadline.Sub(now) < stallAfter/2 {
		o.deadline = now.Add(stallAfter)
		_ = o.conn.SetWriteDeadline(o.deadline)
	}
	n, err := o.conn.Write(o.buf)
	if err == nil {
		o.shrink()
		return nil
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return err
	}
	return o.goSlow(o.buf[n:])
}

func (o *output) shrink() {
	if cap(o.buf) > 256<<10 {
		o.buf = nil
	} else {
		o.buf = o.buf[:0]
	}
}

// flusher writes the backlog of a stalled client and hands the connection
// back to the fast path once everything is written. A client that takes
// nothing for writeTimeout is given up on.
func (o *output) flusher() {
	var chunk []byte
	for {
		o.mu.Lock()
		if len(o.backlog) == 0 || o.err != nil {
			o.slow = false
			o.fastAgain = true
			o.backlog = nil
			close(o.idle)
			o.mu.Unlock()
			return
		}
		chunk, o.backlog = o.backlog, chunk[:0]
		o.mu.Unlock()
		_ = o.conn.SetWriteDeadline(time.Now().Add(o.writeTimeout))
		if _, err := o.conn.Write(chunk); err != nil {
			o.mu.Lock()
			o.err = err
			o.mu.Unlock()
			// Closing ends the session even if no further reply comes
			// to run into the error.
			_ = o.conn.Close()
		}
	}
}

// drain waits until a stalled client's backlog is written, or until
// timeout. It is for shutdown and for closing after a final reply.
func (o *output) drain(timeout time.Duration) {
	o.mu.Lock()
	slow, idle := o.slow, o.idle
	o.mu.Unlock()
	if !slow {
		return
	}
	select {
	case <-idle:
	case <-time.After(timeout):
	}
}
