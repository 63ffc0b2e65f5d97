package proxy

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"
)

// errOutputLimit closes a client that does not read its replies.
var errOutputLimit = errors.New("client output buffer limit reached")

// A writer that finds more than paceAbove bytes waiting for a client
// waits for the client to take some, for as long as it keeps taking them
// (a client reading a 100 MB value as fast as it can is not a client
// that does not read): memory stays at paceAbove, and Redis is read no
// faster than the client reads. A client that takes nothing for
// stallAfter is left to its backlog, bounded by the output limit. The
// flusher writes flushChunks chunks at a time, so progress is heard of
// every 256 KB.
const (
	paceAbove   = 1 << 20
	stallAfter  = 100 * time.Millisecond
	flushChunks = 8
)

// chunkSize is the unit in which replies wait for a client that reads
// slowly. Fixed-size chunks, returned to a pool once written, keep the
// memory held for such a client at what is buffered plus one chunk:
// one growing slice would double past the limit and leave garbage.
const chunkSize = 32 << 10

var chunkPool = sync.Pool{New: func() any { return new([chunkSize]byte) }}

// output collects replies for one client and writes them without ever
// waiting: the writer (an upstream connection's reader, which may serve
// many clients) writes what the socket takes at once, and what it does
// not take goes to a background flusher, bounded by limit. buf is owned
// by the holder of the session's reply lock; the rest is under mu.
type output struct {
	client       *clientConn
	conn         net.Conn        // the flusher's: client.blocking(), made when it starts
	raw          syscall.RawConn // for writes that must not wait on a net.Conn; nil if it has none
	rw           rawWriter       // on raw, for flush (the reply side's one driver)
	buf          []byte
	limit        int64
	writeTimeout time.Duration // a slow client that takes nothing for this long is closed

	mu       sync.Mutex
	slow     bool // the flusher owns the connection's write side
	backlog  []*[chunkSize]byte
	first    int   // bytes of backlog[0] already written
	last     int   // bytes used in the last chunk
	size     int64 // bytes waiting in backlog
	err      error // the flusher's write error, if any
	wake     chan struct{}
	progress chan struct{} // the flusher wrote something; made with the first flusher
	stalled  bool          // the client took nothing for stallAfter while a writer paced
	idle     chan struct{} // closed by the flusher when it has written all and exits
	wdl      lazyDeadline  // the flusher's
}

// init readies o, which is part of its session (an allocation less per
// client).
func (o *output) init(client *clientConn, limit int64, writeTimeout time.Duration) {
	o.client, o.limit, o.writeTimeout = client, limit, writeTimeout
	o.wdl.write = true
	if client.owned {
		return // writes go to the descriptor itself
	}
	o.conn = client.conn
	if sc, ok := o.conn.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			o.raw = rc
			o.rw.init(rc)
		}
	}
}

// flush writes what was collected: what the socket takes now, the rest
// through the flusher. It returns errOutputLimit when the bytes waiting
// for the client would exceed the limit, or the write error.
func (o *output) flush() error {
	if len(o.buf) == 0 {
		return nil
	}
	o.mu.Lock()
	if o.slow {
		err := o.err
		if err == nil {
			err = o.enqueueLocked(o.buf)
		}
		waiting, stalled := o.size, o.stalled
		o.mu.Unlock()
		o.reset()
		if err == nil {
			select {
			case o.wake <- struct{}{}:
			default:
			}
			if waiting > paceAbove && !stalled {
				o.pace()
			}
		}
		return err
	}
	o.mu.Unlock()
	n, err := o.writeNoWait(o.buf)
	if err != nil {
		return err
	}
	if n < len(o.buf) {
		err = o.goSlow(o.buf[n:])
	}
	o.reset()
	return err
}

// pace waits while more than paceAbove bytes wait for the client and it
// keeps taking them; it returns when the client stalls for stallAfter.
func (o *output) pace() {
	t := time.NewTimer(stallAfter)
	defer t.Stop()
	for {
		select {
		case <-o.progress:
		case <-t.C:
			// Stalled: the backlog takes what comes, up to the limit,
			// without waiting again until the client takes something.
			o.mu.Lock()
			o.stalled = true
			o.mu.Unlock()
			return
		}
		o.mu.Lock()
		waiting, done := o.size, !o.slow || o.err != nil
		o.mu.Unlock()
		if done || waiting <= paceAbove {
			return
		}
		t.Reset(stallAfter)
	}
}

// reset empties buf, letting a buffer that a burst grew go.
func (o *output) reset() {
	if cap(o.buf) > 4*flushAt {
		o.buf = nil
	} else {
		o.buf = o.buf[:0]
	}
}

// writeNoWait writes what the socket accepts now.
func (o *output) writeNoWait(b []byte) (int, error) {
	if o.client.owned {
		return o.client.writeNoWait(b)
	}
	if o.raw == nil {
		// No raw access (a wrapped connection): a short deadline stands
		// in for "now".
		_ = o.conn.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
		n, err := o.conn.Write(b)
		_ = o.conn.SetWriteDeadline(time.Time{})
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			err = nil
		}
		return n, err
	}
	return o.rw.writeNoWait(b)
}

// goSlow starts the background flusher with rest, the bytes a write
// could not place.
func (o *output) goSlow(rest []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.enqueueLocked(rest); err != nil {
		return err
	}
	if o.conn == nil {
		// A raw descriptor: the flusher blocks, so it needs a net.Conn.
		conn, err := o.client.blocking()
		if err != nil {
			o.freeLocked()
			return err
		}
		o.conn = conn
	}
	o.slow = true
	if o.progress == nil {
		o.progress = make(chan struct{}, 1)
	}
	o.wake = make(chan struct{}, 1)
	o.idle = make(chan struct{})
	go o.flusher()
	return nil
}

// enqueueLocked copies b into the backlog's chunks; mu is held.
func (o *output) enqueueLocked(b []byte) error {
	if o.size+int64(len(b)) > o.limit {
		return fmt.Errorf("%w (%d bytes pending)", errOutputLimit, o.size+int64(len(b)))
	}
	o.size += int64(len(b))
	for len(b) > 0 {
		if len(o.backlog) == 0 || o.last == chunkSize {
			o.backlog = append(o.backlog, chunkPool.Get().(*[chunkSize]byte))
			o.last = 0
		}
		n := copy(o.backlog[len(o.backlog)-1][o.last:], b)
		o.last += n
		b = b[n:]
	}
	return nil
}

// flusher writes the backlog of a slow client and hands the connection
// back to the fast path once everything is written. A client that takes
// nothing for writeTimeout is given up on.
func (o *output) flusher() {
	var bufs net.Buffers
	for {
		o.mu.Lock()
		if o.size == 0 || o.err != nil {
			o.freeLocked()
			o.slow = false
			// The next fast write sets no deadline; an expired one of the
			// flusher's would fail it.
			o.wdl.clear(o.conn)
			close(o.idle)
			o.mu.Unlock()
			return
		}
		// What is in the chunks now (the last may fill further
		// meanwhile, beyond what is taken here), a few at a time, so
		// that a writer pacing itself on progress hears of it often.
		bufs = bufs[:0]
		for i, c := range o.backlog {
			if i == flushChunks {
				break
			}
			from, to := 0, chunkSize
			if i == 0 {
				from = o.first
			}
			if i == len(o.backlog)-1 {
				to = o.last
			}
			bufs = append(bufs, c[from:to])
		}
		o.mu.Unlock()
		o.wdl.refresh(o.conn, o.writeTimeout)
		n, err := bufs.WriteTo(o.conn)
		o.mu.Lock()
		o.consumeLocked(n)
		if n > 0 {
			o.stalled = false
		}
		if err != nil {
			o.err = err
		}
		o.mu.Unlock()
		select {
		case o.progress <- struct{}{}:
		default:
		}
		if err != nil {
			// Ends the session even if no further reply comes to run
			// into the error.
			shutdownConn(o.conn)
		}
	}
}

// consumeLocked drops n written bytes from the front of the backlog,
// returning emptied chunks to the pool; mu is held.
func (o *output) consumeLocked(n int64) {
	o.size -= n
	for n > 0 {
		avail := int64(chunkSize - o.first)
		if len(o.backlog) == 1 {
			avail = int64(o.last - o.first)
		}
		if n < avail {
			o.first += int(n)
			return
		}
		n -= avail
		chunkPool.Put(o.backlog[0])
		o.backlog[0] = nil
		o.backlog = o.backlog[1:]
		o.first = 0
	}
	if len(o.backlog) == 0 {
		o.backlog, o.last = nil, 0
	}
}

func (o *output) freeLocked() {
	for _, c := range o.backlog {
		chunkPool.Put(c)
	}
	o.backlog, o.first, o.last, o.size = nil, 0, 0, 0
}

// waiting reports whether writes wait for a slow client, so that drain
// would wait.
func (o *output) waiting() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.slow
}

// drain waits until a slow client's backlog is written, or until
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
