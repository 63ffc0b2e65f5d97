package proxy

import (
	"errors"
	"fmt"
	"net"
	"sync"
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

	deadline time.Time // write deadline currently set on conn

	mu        sync.Mutex
	slow      bool   // a flusher owns the connection's write side
	fastAgain bool   // the flusher handed the connection back
	backlog   []byte // bytes the flusher has still to write
	err       error  // the flusher's write error, if any
	wake      chan struct{}
	idle      chan struct{} // closed by the flusher when it drains and exits
}

func newOutput(conn net.Conn, limit int64, writeTimeout time.Duration) *output {
	return &output{conn: conn, limit: limit, writeTimeout: writeTimeout}
}

// flush writes what append collected. It returns errOutputLimit when a
// stalled client's backlog would exceed the limit, or the write error.
func (o *output) flush() error {
	if len(o.buf) == 0 {
		return nil
	}
	o.mu.Lock()
	if o.slow {
		err := o.err
		if err == nil && int64(len(o.backlog)+len(o.buf)) > o.limit {
			err = fmt.Errorf("%w (%d bytes pending)", errOutputLimit, len(o.backlog)+len(o.buf))
		}
		if err == nil {
			o.backlog = append(o.backlog, o.buf...)
		}
		o.mu.Unlock()
		o.buf = o.buf[:0]
		if err == nil {
			select {
			case o.wake <- struct{}{}:
			default:
			}
		}
		return err
	}
	if o.fastAgain {
		// The flusher cleared the connection's deadline when it took over.
		o.fastAgain = false
		o.deadline = time.Time{}
	}
	o.mu.Unlock()
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
	rest := o.buf[n:]
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
