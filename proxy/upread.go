package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/exproxy/exproxy/proxy/resp"
	"go.uber.org/zap"
)

// readLoop frames replies and hands each to the session it belongs to:
// on a private connection its owner, on a shared one the session that is
// next in the FIFO. Consecutive replies of one session are delivered
// under one hold of its lock and go to the client in one write.
func (c *upConn) readLoop() {
	defer close(c.done)
	var rb readBuf
	if c.shared {
		rb.init(16 << 10)
	} else {
		rb.init(minBuf)
	}
	var f resp.Framer
	f.Limits = replyLimits(c.srv.opts.Limits)
	var local []waiter     // FIFO entries taken from c.fifo, reader-owned
	var localBuf []waiter  // local's array: refilled from its start, no allocation once grown
	var tl []tagWaiter     // likewise from c.tfifo, on a cluster connection
	var tlBuf []tagWaiter  // tl's array, as localBuf
	var tr tagRead         // the reply being read on a cluster connection
	var fa followerAnswers // groups' followers, answered in their turn
	var held *session      // whose lock is held while its replies are delivered
	release := func() {
		if held != nil {
			held.flushLocked()
			held.mu.Unlock()
			held = nil
		}
	}
	hold := func(s *session) {
		if s != held {
			release()
			s.mu.Lock()
			held = s
		}
	}
	var err error
	for err == nil {
		if rb.settle() {
			rb.makeRoom(0)
		}
		var n int
		n, err = c.read(rb.free())
		rb.added(n)
		c.mu.Lock()
		owner := c.owner
		tagged := c.node != 0 && !c.ordered
		c.mu.Unlock()
		for rb.r < rb.w {
			if owner != nil && !tagged {
				hold(owner)
				if owner.relaying() {
					owner.relayLocked(rb.data())
					rb.r = rb.w
					break
				}
			}
			m, done, ferr := f.Next(rb.data())
			if ferr != nil {
				err = fmt.Errorf("malformed reply: %w", ferr)
				break
			}
			if m == 0 && !done {
				break // a partial header line: wait for the rest
			}
			chunk := rb.b[rb.r : rb.r+m]
			rb.r += m
			if tagged {
				s := tr.s
				if !tr.on {
					if len(tl) == 0 {
						tl = c.takeTFIFO(tlBuf)
						tlBuf = tl[:0]
					}
					s = tr.start(c, tl, owner, f.Kind())
				}
				if s == nil {
					if done {
						c.srv.log.Debug("upstream: dropping a reply nobody waits for")
						tr.reset()
					}
					continue
				}
				hold(s)
				g := tr.w.grp
				if g != nil && !tr.push {
					g.keep(chunk)
				}
				if done && !tr.push {
					c.replies.Add(1)
					c.owed.Add(-1)
					tl[0] = tagWaiter{}
					tl = tl[1:]
				}
				s.deliverTaggedLocked(&tr, chunk, done)
				if done && !tr.push && g != nil {
					fa.leaderDone(g)
				}
				// A follower's turn comes right after the reply before it.
				for done && fa.owed > 0 {
					if len(tl) == 0 {
						tl = c.takeTFIFO(tlBuf)
						tlBuf = tl[:0]
					}
					if len(tl) == 0 || !tl[0].follows {
						break
					}
					fs := tl[0].s
					hold(fs)
					fa.tr.on, fa.tr.s, fa.tr.w = true, fs, tl[0]
					answer := fa.answer(tl[0].grp)
					fa.tr.kind = answer[0]
					tl[0] = tagWaiter{}
					tl = tl[1:]
					fs.deliverTaggedLocked(&fa.tr, answer, true)
				}
				continue
			}
			if owner != nil {
				owner.deliverLocked(chunk, done, f.Kind())
				continue
			}
			if len(local) == 0 {
				local = c.takeFIFO(localBuf)
				localBuf = local[:0]
			}
			if len(local) == 0 {
				if !c.shared {
					// A connection no session has taken yet (a ready
					// one) that Redis speaks on unasked was refused
					// ("max number of clients reached") and is being
					// closed: it is dead now, so no session takes it,
					// and the one that dials next gets Redis's refusal
					// as the reply to its command, as from Redis.
					err = fmt.Errorf("unsolicited reply: %s", trimLine(chunk))
					break
				}
				// Nothing comes unasked on a shared connection: whatever
				// subscribes or tracks has a connection of its own.
				if done {
					c.srv.log.Debug("upstream: dropping a reply nobody waits for")
				}
				continue
			}
			s := local[0].s
			hold(s)
			push := f.Kind() == '>'
			s.deliverLocked(chunk, done, f.Kind())
			g := local[0].grp
			if g != nil && !push {
				g.keep(chunk)
			}
			if done && !push {
				c.replies.Add(1)
				c.owed.Add(-1)
				local[0].n--
				if local[0].n == 0 {
					local[0] = waiter{}
					local = local[1:]
					if g != nil {
						fa.leaderDone(g)
					}
				}
				// A follower's turn comes right after the reply before it.
				for fa.owed > 0 {
					if len(local) == 0 {
						local = c.takeFIFO(localBuf)
						localBuf = local[:0]
					}
					if len(local) == 0 || !local[0].follows {
						break
					}
					fs := local[0].s
					hold(fs)
					answer := fa.answer(local[0].grp)
					fs.deliverLocked(answer, true, answer[0])
					local[0] = waiter{}
					local = local[1:]
				}
			}
		}
		if c.retired.Load() && c.owed.Load() == 0 {
			release()
			c.close() // it has served what it owed
			break
		}
		release()
	}
	c.lost(err, local, tl)
}

// takeTFIFO is takeFIFO for a cluster connection's tagged waiters.
func (c *upConn) takeTFIFO(buf []tagWaiter) []tagWaiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	tl := append(buf[:0], c.tfifo...)
	clear(c.tfifo)
	c.tfifo = c.tfifo[:0]
	return tl
}

// takeFIFO moves the FIFO's waiters into buf's array, for the reader:
// one hold of the lock per run of replies, and no allocation once the
// array has grown.
func (c *upConn) takeFIFO(buf []waiter) []waiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	local := append(buf[:0], c.fifo...)
	clear(c.fifo)
	c.fifo = c.fifo[:0]
	return local
}

// read reads what Redis sent, waiting for it in Go's netpoller; the read
// itself is a raw one (rawio.go) where the connection has a descriptor.
func (c *upConn) read(b []byte) (n int, err error) {
	if c.raw == nil {
		// No way to tell an empty socket from a starved reader: count
		// the whole read as waiting.
		c.markEmpty()
		n, err = c.conn.Read(b)
		c.emptySince.Store(0)
		return n, err
	}
	return c.rr.read(b)
}

// rawReader is the reader goroutine's raw read, its RawConn.Read
// callback bound once (a closure per read would allocate per read).
type rawReader struct {
	c   *upConn
	fn  func(fd uintptr) bool
	b   []byte
	n   int
	err error
}

func (r *rawReader) init(c *upConn) {
	r.c = c
	r.fn = r.readNow
}

func (r *rawReader) readNow(fd uintptr) bool {
	for {
		m, e := rawRead(int(fd), r.b)
		switch e {
		case 0:
			r.n = m
			if m == 0 {
				r.err = io.EOF
			}
			r.c.emptySince.Store(0)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			r.c.markEmpty()
			return false
		}
		r.err = os.NewSyscallError("read", e)
		return true
	}
}

func (r *rawReader) read(b []byte) (int, error) {
	r.b, r.n, r.err = b, 0, nil
	rerr := r.c.raw.Read(r.fn)
	n, err := r.n, r.err
	r.b, r.err = nil, nil
	if err == nil {
		err = rerr
	}
	return n, err
}

// markEmpty records that the reader waits for Redis, once per wait.
func (c *upConn) markEmpty() {
	if c.emptySince.Load() == 0 {
		c.emptySince.Store(int64(time.Since(c.srv.epoch)) | 1)
	}
}

// starvedFor is how long the reader has been waiting on an empty socket.
func (c *upConn) starvedFor() time.Duration {
	since := c.emptySince.Load()
	if since == 0 {
		return 0
	}
	return time.Since(c.srv.epoch) - time.Duration(since)
}

// lost ends the connection after its reader stopped, and tells the
// sessions that needed it. A session that had commands in flight on it
// is closed without replies to them, as Redis going away would close it:
// their outcome is unknown, and a client library reconnects and retries
// by its own rules only when it sees the connection drop. A private
// connection's owner is closed even with nothing in flight: the state
// Redis kept for it is gone.
func (c *upConn) lost(err error, local []waiter, tl []tagWaiter) {
	c.mu.Lock()
	expected := c.dead && errors.Is(c.err, net.ErrClosed) // closed by the proxy
	if !c.dead {
		c.dead, c.err = true, fmt.Errorf("read: %w", err)
		_ = c.conn.Close()
	}
	cause := c.err
	local = append(local, c.fifo...)
	c.fifo = nil
	// A cluster connection's waiters count as those of a shared one: each
	// of their sessions had a command in flight.
	for _, w := range append(tl, c.tfifo...) {
		if w.s != nil && !w.drop {
			if k := len(local); k > 0 && local[k-1].s == w.s {
				local[k-1].n++
			} else {
				local = append(local, waiter{s: w.s, n: 1})
			}
		}
	}
	c.tfifo = nil
	owner := c.owner
	c.wfree.Broadcast()
	c.mu.Unlock()
	c.srv.stats.upstreamConns.Add(-1)
	if nd := c.srv.clusterNode(c.node); nd != nil {
		nd.conns.Add(-1)
		if !expected {
			nd.errors.Add(1)
			c.srv.cluster.kick()
		}
	}
	if c.shared {
		c.srv.pools.forgetShared(c)
	}
	if owner != nil {
		owner.privateLost(cause)
		return
	}
	if expected && len(local) == 0 {
		return
	}
	commands, sessions := 0, 0
	for i, w := range local {
		commands += w.n
		if i == 0 || local[i-1].s != w.s {
			sessions++
		}
	}
	if !expected && c.shared {
		c.srv.stats.upstreamErrors.Add(1)
	}
	if commands > 0 {
		c.srv.stats.lostCommands.Add(int64(commands))
		c.srv.log.Warn("upstream connection lost; closing the clients that had commands in flight on it",
			zap.String("upstream", c.srv.opts.Upstream.String()), zap.Error(cause),
			zap.Int("commands_in_flight", commands), zap.Int("clients", sessions))
	} else if !expected && c.shared {
		c.srv.log.Warn("shared upstream connection lost", zap.String("upstream", c.srv.opts.Upstream.String()), zap.Error(cause))
	} else if !expected {
		c.srv.log.Debug("idle upstream connection lost", zap.String("upstream", c.srv.opts.Upstream.String()), zap.Error(cause))
	}
	for _, w := range local {
		w.s.sharedLost()
	}
}

// replyLimits are the framer's limits for what Redis sends: Redis is
// trusted to send valid RESP, and a reply of any size streams through, so
// only the lines that must be held whole are bounded.
func replyLimits(client resp.Limits) resp.Limits {
	return resp.Limits{
		MaxBulkLen:   1 << 62,
		MaxInlineLen: max(client.MaxInlineLen, 64<<10),
		MaxArgs:      client.MaxArgs,
	}
}
