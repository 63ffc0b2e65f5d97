package proxy

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
)

// errConnDead reports a send to an upstream connection that has already
// failed; nothing was queued, and another connection may be tried.
var errConnDead = errors.New("upstream connection closed")

// errSessionClosed: the session ended while sending.
var errSessionClosed = errors.New("session closed")

// upConn is one connection to Redis, whoever uses it. A pool's shared
// connection carries many sessions' commands; a private one carries the
// commands of the one session that owns it; a ready one waits to become
// either. Which of these it is, is a matter of who holds it, not of its
// code: every upConn has one writer at a time (whichever goroutine finds
// it idle writes what is queued), one reader goroutine, and a FIFO of the
// sessions waiting for its replies. Codis' BackendConn is the model.
type upConn struct {
	srv    *Server
	conn   net.Conn
	key    poolKey // what Redis sees on it: user, protocol, database
	shared bool    // many sessions' commands: a writer yields once so they batch

	mu      sync.Mutex
	dead    bool
	err     error // why it died
	out     []byte
	spare   []byte
	writing bool       // a goroutine is writing; others only append
	wfree   *sync.Cond // on mu: writing ended (for a streamed command)
	fifo    []waiter   // shared: whose replies come next
	owner   *session   // private: the session every reply goes to
	wdl     lazyDeadline
	// raw writes without waiting, for the event loop; nil where the
	// connection has no file of its own (TLS).
	raw syscall.RawConn
	rw  rawWriter // on raw, for whoever holds writing
	rr  rawReader // on raw, for the reader goroutine
	// dirty: queued by the event loop's sessions in its current batch;
	// the loop's runner owns it.
	dirty bool
	// A shared connection whose replies stop coming while replies are
	// owed (a long script runs) is retired by the pools' watchdog: new
	// commands go to a fresh connection, where Redis answers them as it
	// would answer a client of its own (BUSY past busy-reply-threshold),
	// and the retired one serves what it owes, then closes.
	owed    atomic.Int64  // replies owed on a shared connection
	replies atomic.Uint64 // replies read, ever
	retired atomic.Bool
	// emptySince is when the reader found the socket empty and began to
	// wait for Redis (monotonic nanoseconds since srv.epoch; 0 while it
	// is reading or delivering).
	emptySince atomic.Int64
	done       chan struct{} // closed when the reader has ended

	// node is the cluster node it goes to (poolKey.node); 0 for the one
	// Redis. A cluster connection pairs replies with commands one by one,
	// through tfifo (clusterreply.go) — unless ordered: a connection of a
	// session's own that carries a RESP2 subscription, whose replies pair
	// with the session's commands in order, as on one Redis.
	node    int32
	tfifo   []tagWaiter
	ordered bool

	// groups are the groups whose leader is in out, unwritten
	// (follow.go); shared connections only. pos counts the commands
	// queued on it, where each runs in its stream.
	groups []*group
	pos    uint64
}

// waiter is one session's run of commands in a shared connection's FIFO:
// the next n replies are its. A waiter with grp is one command of a
// group (follow.go): its leader, whose reply its followers are answered
// from, or, with follows, a follower, answered in its turn without a
// reply from Redis.
type waiter struct {
	s       *session
	n       int
	grp     *group
	follows bool
}

func newUpConn(srv *Server, conn net.Conn, key poolKey, shared bool) *upConn {
	c := &upConn{srv: srv, conn: conn, key: key, shared: shared, node: key.node, done: make(chan struct{})}
	c.wdl.write = true
	c.wfree = sync.NewCond(&c.mu)
	if sc, ok := conn.(syscall.Conn); ok {
		if c.raw, _ = sc.SyscallConn(); c.raw != nil {
			c.rw.init(c.raw)
			c.rr.init(c)
		}
	}
	srv.stats.upstreamConns.Add(1)
	if nd := srv.clusterNode(c.node); nd != nil {
		nd.conns.Add(1)
	}
	go c.readLoop()
	return c
}

func (c *upConn) isDead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

// send queues a session's batch: its entries on the session's queue,
// for a shared connection n replies expected on the FIFO, and data for
// Redis; then it writes, unless another goroutine is writing and so will
// write data too. Entries go first, so no reply can come before its
// entry. A failed write is a lost connection, which the reader reports
// to the sessions waiting on it; send returns errConnDead only when
// nothing was queued.
func (c *upConn) send(s *session, batch []entry, n int, data []byte) error {
	c.mu.Lock()
	if err := c.queueLocked(s, batch, n); err != nil || len(data) == 0 {
		c.mu.Unlock()
		return err
	}
	if c.writing || c.shared || len(c.out) > 0 {
		c.out = append(c.out, data...)
		if c.writing {
			c.mu.Unlock()
			return nil
		}
		c.writing = true
		if c.shared {
			// Let every session made runnable by the same network poll
			// append its commands first: one write then carries them
			// all, which is what makes a shared connection cheaper
			// than one per client.
			c.mu.Unlock()
			runtime.Gosched()
			c.mu.Lock()
		}
		c.writeOutLocked()
		return nil
	}
	// A private connection that nobody is writing to: the session's own
	// buffer goes out as it is, without a copy.
	c.writing = true
	c.mu.Unlock()
	err := c.write(data)
	c.mu.Lock()
	if err != nil {
		c.failLocked(err)
	}
	c.writeOutLocked()
	return nil
}

// writeOutLocked writes what is queued until nothing is, then gives up
// the writer's role; c.mu is held, and released on return.
func (c *upConn) writeOutLocked() {
	for len(c.out) > 0 && !c.dead {
		out := c.out
		c.out = c.spare[:0]
		c.endGroupsLocked()
		c.mu.Unlock()
		err := c.write(out)
		c.mu.Lock()
		c.keepSpare(out)
		if err != nil {
			c.failLocked(err)
		}
	}
	if c.dead {
		c.out = nil
	}
	c.writing = false
	c.wfree.Broadcast()
	c.mu.Unlock()
}

// queue is send without the write, for the event loop: it writes each
// connection its sessions queued to once, at the end of a batch of
// client reads (flushNoWait), so one write carries them all.
func (c *upConn) queue(s *session, batch []entry, n int, data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(s.cands) > 0 && c.shared && c.owner == nil {
		return c.queueGroupedLocked(s, batch, data)
	}
	if err := c.queueLocked(s, batch, n); err != nil {
		return err
	}
	c.out = append(c.out, data...)
	return nil
}

// flushNoWait writes what is queued without waiting, for the event loop,
// which must not stop for one connection: what the socket does not take
// at once, and everything on a connection without a file of its own
// (TLS), is written by a goroutine that may wait.
func (c *upConn) flushNoWait() {
	c.mu.Lock()
	if c.writing || c.dead || len(c.out) == 0 {
		c.mu.Unlock()
		return
	}
	c.writing = true
	for c.raw != nil && len(c.out) > 0 && !c.dead {
		out := c.out
		c.out = c.spare[:0]
		c.endGroupsLocked()
		c.mu.Unlock()
		// A deadline a blocking write set earlier would fail this one
		// once it expired, though this one never waits.
		c.wdl.refresh(c.conn, c.srv.opts.WriteTimeout)
		n, err := c.writeNoWait(out)
		c.mu.Lock()
		if err != nil {
			c.failLocked(err)
			break
		}
		if n < len(out) {
			// The rest goes first, then what was queued meanwhile; the
			// rest moves to the front of its own array (no allocation),
			// and the queued bytes' array becomes the spare.
			queued := c.out
			c.out = append(append(out[:0], out[n:]...), queued...)
			c.keepSpare(queued)
			break
		}
		c.keepSpare(out)
	}
	if len(c.out) > 0 && !c.dead {
		c.mu.Unlock()
		go func() {
			c.mu.Lock()
			c.writeOutLocked()
		}()
		return
	}
	c.writing = false
	c.wfree.Broadcast()
	c.mu.Unlock()
}

// sharedSpareMax bounds the write buffer a shared connection keeps
// between batches. The event loop gathers every session's commands for a
// connection into one write per batch, so a shared connection's batch is
// as large as its clients' commands together (50 clients' 16 KB SETs:
// 800 KB); regrowing that from nothing for each batch cost more CPU than
// the write itself (docs/benchmarks.md, p1-16KB). Shared connections are
// few; a private one serves one client, whose batch is one read, and
// keeps steadyBuf.
const sharedSpareMax = 4 << 20

// keepSpare keeps b's array for the next batch when it is of a size a
// connection of its kind keeps; c.mu is held.
func (c *upConn) keepSpare(b []byte) {
	if cap(b) <= steadyBuf || (c.shared && cap(b) <= sharedSpareMax) {
		c.spare = b[:0]
		return
	}
	c.spare = nil
}

// writeNoWait writes what the socket takes now.
func (c *upConn) writeNoWait(b []byte) (int, error) { return c.rw.writeNoWait(b) }

// write writes b; a Redis that stops reading (it never should) cannot
// hang the writer past WriteTimeout.
func (c *upConn) write(b []byte) error {
	c.wdl.refresh(c.conn, c.srv.opts.WriteTimeout)
	_, err := c.conn.Write(b)
	return err
}

// holdWriter waits until no goroutine is writing and takes the writer's
// role, so that a command streamed in chunks is not interleaved with
// anything else: sendHeld queues its entry and first bytes, writeHeld
// the chunks that follow, and releaseWriter writes what others queued
// meanwhile.
func (c *upConn) holdWriter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.writing && !c.dead {
		c.wfree.Wait()
	}
	if c.dead {
		return false
	}
	c.writing = true
	return true
}

// sendHeld is send for the goroutine that holds the writer's role.
func (c *upConn) sendHeld(s *session, batch []entry, n int, data []byte) error {
	c.mu.Lock()
	err := c.queueLocked(s, batch, n)
	c.mu.Unlock()
	if err != nil || len(data) == 0 {
		return err
	}
	return c.writeHeld(data)
}

// queueLocked puts a batch's entries on the session's queue and, on a
// shared connection, its n replies on the FIFO; c.mu is held.
func (c *upConn) queueLocked(s *session, batch []entry, n int) error {
	if c.dead {
		return errConnDead
	}
	if !s.q.push(batch) {
		return errSessionClosed
	}
	if c.owner != nil || n == 0 {
		return nil
	}
	c.owed.Add(int64(n))
	c.pos += uint64(n)
	s.up = streamPos{c, c.pos}
	c.pushRun(s, n)
	return nil
}

// writeHeld writes for the goroutine that holds the writer's role.
func (c *upConn) writeHeld(b []byte) error {
	err := c.write(b)
	if err != nil {
		c.mu.Lock()
		c.failLocked(err)
		c.mu.Unlock()
	}
	return err
}

func (c *upConn) releaseWriter() {
	c.mu.Lock()
	c.writeOutLocked()
}

// failLocked marks the connection dead and closes it; the reader's read
// then fails too and reports the loss. c.mu is held.
func (c *upConn) failLocked(err error) {
	if c.dead {
		return
	}
	c.dead, c.err = true, fmt.Errorf("write: %w", err)
	_ = c.conn.Close()
}

// close closes the connection as the proxy's own decision: nobody is
// told of a loss.
func (c *upConn) close() {
	c.mu.Lock()
	if !c.dead {
		c.dead, c.err = true, net.ErrClosed
	}
	c.owner = nil
	c.mu.Unlock()
	_ = c.conn.Close()
}

// closeWrite tells Redis that no more commands come, as a client's own
// half close would: Redis answers what it has received, then closes. The
// writer's role is kept, so nothing is written after it.
func (c *upConn) closeWrite() {
	if !c.holdWriter() {
		return
	}
	if cw, ok := c.conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		return
	}
	c.close()
}

// setOwner makes the connection private to s, or, with nil, ownerless.
func (c *upConn) setOwner(s *session) {
	c.mu.Lock()
	c.owner = s
	c.mu.Unlock()
}
