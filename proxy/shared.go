package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/exproxy/exproxy/proxy/resp"
)

// Shared upstream mode: sessions that have run nothing stateful send their
// commands over a few connections shared with other sessions of the same
// protocol. One writer per connection sends every session's commands in
// one write; one reader frames the replies and hands each to the session
// that is next in the connection's FIFO, whose replySide treats it
// exactly as its own reply loop would. A session's first stateful command
// (docs/proxy-core.md lists them) moves it to a connection of its own,
// once its shared replies are all in.

// errSharedDead reports a send to a connection that has already failed.
var errSharedDead = errors.New("shared upstream connection closed")

// errQueueClosed: the session ended while sending.
var errQueueClosed = errors.New("session closed")

// sharedPool holds the shared connections, per protocol.
type sharedPool struct {
	srv    *Server
	mu     sync.Mutex
	slots  [2][]sharedSlot // [proto-2][i]; empty or dead slots are dialled on demand
	closed bool
}

// sharedSlot is one shared connection, or the dial that will give it.
type sharedSlot struct {
	c       *sharedConn
	dialing chan struct{} // closed when the dial in progress ends
	err     error         // how the last dial failed
}

func newSharedPool(srv *Server) *sharedPool {
	p := &sharedPool{srv: srv}
	for i := range p.slots {
		p.slots[i] = make([]sharedSlot, srv.opts.SharedConns)
	}
	return p
}

// get returns a live shared connection of protocol proto for the session
// with the given id, dialling one if needed. Sessions that need the same
// connection meanwhile wait for that one dial, so an unreachable Redis
// costs each of them one dial timeout, not one per session before it.
func (p *sharedPool) get(proto int, id uint64) (*sharedConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	slots := p.slots[proto-2]
	sl := &slots[int(id%uint64(len(slots)))]
	waited := false
	for {
		if p.closed {
			return nil, ErrServerClosed
		}
		if sl.c != nil && !sl.c.isDead() {
			return sl.c, nil
		}
		if waited {
			if sl.err == nil {
				return nil, errSharedDead // dialled, and lost already
			}
			return nil, sl.err
		}
		if sl.dialing != nil {
			ch := sl.dialing
			p.mu.Unlock()
			<-ch
			p.mu.Lock()
			waited = true
			continue
		}
		ch := make(chan struct{})
		sl.dialing = ch
		p.mu.Unlock()
		c, err := p.dial(proto)
		p.mu.Lock()
		sl.dialing, sl.err = nil, err
		close(ch)
		if err != nil {
			return nil, err
		}
		if p.closed {
			_ = c.conn.Close()
			p.srv.stats.sharedConns.Add(-1)
			return nil, ErrServerClosed
		}
		sl.c = c
		go c.writer()
		go c.reader()
		return c, nil
	}
}

func (p *sharedPool) dial(proto int) (*sharedConn, error) {
	conn, err := p.srv.dialUpstream(context.Background())
	if err == nil && proto == 3 {
		err = hello3(conn, p.srv.opts.DialTimeout)
		if err != nil {
			_ = conn.Close()
		}
	}
	if err != nil {
		p.srv.stats.upstreamErrors.Add(1)
		p.srv.log.Warn("upstream unreachable", zap.String("upstream", p.srv.opts.Upstream.String()), zap.Error(err))
		return nil, err
	}
	p.srv.stats.sharedConns.Add(1)
	return &sharedConn{srv: p.srv, conn: conn, kick: make(chan struct{}, 1)}, nil
}

func (p *sharedPool) close() {
	p.mu.Lock()
	p.closed = true
	var all []*sharedConn
	for _, slots := range p.slots {
		for _, sl := range slots {
			if sl.c != nil {
				all = append(all, sl.c)
			}
		}
	}
	p.mu.Unlock()
	for _, c := range all {
		_ = c.conn.Close()
	}
}

// hello3 switches a fresh connection to RESP3 and reads the reply.
func hello3(conn net.Conn, timeout time.Duration) error {
	_ = conn.SetDeadline(time.Now().Add(timeout))
	defer conn.SetDeadline(time.Time{})
	if _, err := conn.Write([]byte("*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")); err != nil {
		return fmt.Errorf("HELLO 3: %w", err)
	}
	var f resp.Framer
	buf := make([]byte, 4096)
	w := 0
	first := byte(0)
	for {
		if w == len(buf) {
			return errors.New("HELLO 3: reply too long")
		}
		n, err := conn.Read(buf[w:])
		w += n
		if n > 0 && first == 0 {
			first = buf[0]
		}
		r := 0
		for r < w {
			m, done, ferr := f.Next(buf[r:w])
			if ferr != nil {
				return fmt.Errorf("HELLO 3: %w", ferr)
			}
			r += m
			if done {
				if first != '%' {
					return fmt.Errorf("HELLO 3: %s", trimLine(buf[:w]))
				}
				return nil
			}
			if m == 0 {
				break
			}
		}
		w = copy(buf, buf[r:w])
		if err != nil {
			return fmt.Errorf("HELLO 3: %w", err)
		}
	}
}

func trimLine(b []byte) string {
	for i, c := range b {
		if c == '\r' || c == '\n' {
			return string(b[1:i])
		}
	}
	return string(b)
}

// sharedWaiter is one session's run of commands in a connection's FIFO:
// the next n replies are its.
type sharedWaiter struct {
	s *session
	n int
}

// sharedConn is one upstream connection shared by many sessions.
type sharedConn struct {
	srv  *Server
	conn net.Conn

	mu       sync.Mutex
	dead     bool
	err      error // why it died
	out      []byte
	spare    []byte
	writing  bool // the writer has been kicked and not yet drained out
	fifo     []sharedWaiter
	kick     chan struct{}
	deadline time.Time // writer-owned
}

func (c *sharedConn) isDead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

// send queues a session's batch: its entries on the session's queue, n
// replies expected on the FIFO, and the bytes for the writer. On
// errSharedDead nothing was queued and another connection may be tried.
func (c *sharedConn) send(s *session, batch []entry, n int, data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return errSharedDead
	}
	if !s.q.push(batch) {
		return errQueueClosed
	}
	if n == 0 {
		return nil
	}
	if k := len(c.fifo); k > 0 && c.fifo[k-1].s == s {
		c.fifo[k-1].n += n
	} else {
		c.fifo = append(c.fifo, sharedWaiter{s: s, n: n})
	}
	s.inflight.Add(int64(n))
	c.out = append(c.out, data...)
	if !c.writing {
		c.writing = true
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// writer sends what sessions queued. It yields once before each write so
// that every session made runnable by the same network poll appends its
// commands first: one write then carries many sessions' commands, which
// is what makes a shared connection cheaper than one per client.
func (c *sharedConn) writer() {
	for range c.kick {
		runtime.Gosched()
		c.mu.Lock()
		for len(c.out) > 0 && !c.dead {
			out := c.out
			c.out = c.spare[:0]
			c.mu.Unlock()
			err := c.write(out)
			c.mu.Lock()
			if cap(out) <= steadyBuf {
				c.spare = out[:0]
			} else {
				c.spare = nil
			}
			if err != nil {
				c.failLocked(fmt.Errorf("write: %w", err))
			}
		}
		c.writing = false
		dead := c.dead
		c.mu.Unlock()
		if dead {
			return
		}
	}
}

func (c *sharedConn) write(b []byte) error {
	now := time.Now()
	if c.deadline.Sub(now) < c.srv.opts.WriteTimeout/2 {
		c.deadline = now.Add(c.srv.opts.WriteTimeout)
		_ = c.conn.SetWriteDeadline(c.deadline)
	}
	_, err := c.conn.Write(b)
	return err
}

// failLocked marks the connection dead and closes it; the reader then
// answers every session still waiting. c.mu is held.
func (c *sharedConn) failLocked(err error) {
	if c.dead {
		return
	}
	c.dead, c.err = true, err
	_ = c.conn.Close()
}

// reader frames replies and delivers each to the session that is next in
// the FIFO.
func (c *sharedConn) reader() {
	buf := make([]byte, 16<<10)
	var f resp.Framer
	f.Limits = c.srv.opts.Limits
	f.Limits.MaxInlineLen = max(f.Limits.MaxInlineLen, 64<<10)
	r, w := 0, 0
	var local []sharedWaiter // FIFO entries taken from c.fifo, reader-owned
	// held is the session whose replies are being delivered, with its
	// rsMu held: consecutive replies of one session (a pipeline) take the
	// lock once and go out in one write.
	var held *session
	release := func() {
		if held != nil {
			held.flushSharedLocked()
			held.rsMu.Unlock()
			held = nil
		}
	}
	var err error
	for err == nil {
		if w == len(buf) {
			if r > 0 {
				w = copy(buf, buf[r:w])
				r = 0
			} else {
				nb := make([]byte, 2*len(buf))
				w = copy(nb, buf[:w])
				buf = nb
			}
		}
		var n int
		n, err = c.conn.Read(buf[w:])
		w += n
		for r < w {
			m, done, ferr := f.Next(buf[r:w])
			if ferr != nil {
				err = fmt.Errorf("malformed reply: %w", ferr)
				break
			}
			if m == 0 && !done {
				break
			}
			chunk := buf[r : r+m]
			r += m
			if len(local) == 0 {
				c.mu.Lock()
				local = append(local, c.fifo...)
				clear(c.fifo)
				c.fifo = c.fifo[:0]
				c.mu.Unlock()
			}
			if len(local) == 0 {
				// Nothing comes unasked on a shared connection: whatever
				// subscribes or tracks has a connection of its own.
				if done {
					c.srv.log.Debug("shared upstream: dropping a reply nobody waits for")
				}
				continue
			}
			s := local[0].s
			if s != held {
				release()
				s.rsMu.Lock()
				held = s
			}
			push := f.Kind() == '>'
			s.deliverLocked(chunk, done, f.Kind(), push)
			if done && !push {
				local[0].n--
				if local[0].n == 0 {
					local[0].s = nil
					local = local[1:]
				}
			}
		}
		release()
		if r == w {
			r, w = 0, 0
			if len(buf) > 64<<10 {
				buf = make([]byte, 16<<10)
			}
		}
	}
	c.mu.Lock()
	if !c.dead {
		c.dead, c.err = true, fmt.Errorf("read: %w", err)
		_ = c.conn.Close()
	}
	cause := c.err
	local = append(local, c.fifo...)
	c.fifo = nil
	c.mu.Unlock()
	close(c.kick)
	c.srv.stats.sharedConns.Add(-1)
	if !errors.Is(err, net.ErrClosed) {
		c.srv.stats.upstreamErrors.Add(1)
		c.srv.log.Warn("shared upstream connection lost", zap.String("upstream", c.srv.opts.Upstream.String()), zap.Error(cause))
	}
	for _, w := range local {
		w.s.sharedLost(w.n, cause)
	}
}

// deliverLocked hands one chunk of a reply to the session, as its reply
// loop would; rsMu is held. The reader flushes the session's output when
// it moves on to another session's replies.
//
// A push (a RESP3 '>' a command made Redis send before its reply, such
// as DEBUG PROTOCOL push) goes to the session whose reply is next, and
// answers none of its commands.
func (s *session) deliverLocked(chunk []byte, done bool, kind byte, push bool) {
	r := &s.rs
	if !r.dead {
		if !r.active {
			if !r.emitHead() {
				r.dead = true
			} else {
				r.begin()
			}
		}
		if !r.dead && !r.take(chunk, done, kind) {
			r.dead = true // a resend could not be sent
			_ = s.client.Close()
		}
		if len(r.out.buf) >= flushAt {
			s.flushOrDrop()
		}
	}
	if done {
		r.active = false
		if push {
			return
		}
		if !r.dead && !r.emitHead() {
			r.dead = true
		}
		s.sharedDone(1)
	}
}

// sharedDone counts n replies received (or given up on); rsMu is held.
func (s *session) sharedDone(n int) {
	if s.inflight.Load() == int64(n) {
		// The last reply awaited: out it goes before the read loop may
		// move the session to its own connection and reply loop.
		s.flushOrDrop()
	}
	if s.inflight.Add(-int64(n)) > 0 {
		return
	}
	s.idle.Broadcast()
	if s.readDone {
		s.endShared()
	}
}

// flushSharedLocked writes what the shared reader collected for the
// session; rsMu is held.
func (s *session) flushSharedLocked() {
	if s.rs.shared { // else it has moved to a reply loop of its own, which flushes
		s.flushOrDrop()
	}
}

// flushOrDrop flushes the session's output without waiting; a client
// that cannot take it (gone, or past its output limit) is closed, and
// what comes for it afterwards is dropped. rsMu is held.
func (s *session) flushOrDrop() {
	r := &s.rs
	if !r.dead && r.flushShared() != nil {
		r.dead = true
		_ = s.client.Close()
	}
}

// sharedLost answers the session's n commands still waiting on a shared
// connection that died. The session lives on: nothing it did through the
// shared connection left state there. A reply cut off part way cannot be
// completed, though, and closes the client.
func (s *session) sharedLost(n int, cause error) {
	s.rsMu.Lock()
	defer s.rsMu.Unlock()
	r := &s.rs
	if !r.dead {
		if r.active && r.wrote {
			// Part of a reply is out: nothing that follows would parse.
			r.dead = true
			_ = s.client.Close()
		} else {
			msg := resp.AppendError(nil, fmt.Sprintf("ERR exproxy: lost connection to upstream %s (%v); the outcome of this command is unknown", s.srv.opts.Upstream, cause))
			if r.active && r.e != nil {
				r.write(msg)
				r.completeFailed()
			}
			// Every entry queued belongs to this connection: a session
			// moves to another only once nothing is outstanding.
			for e := s.q.head(); e != nil; e = s.q.head() {
				r.resolve(e)
				switch {
				case e.local != nil:
					r.emitLocal(e.local)
				case e.replies > 0 && e.slot != nil:
					e.slot.data, e.slot.ready = msg, true
				case e.replies > 0:
					r.emitLocal(msg)
				}
				s.q.pop()
			}
			for _, f := range r.failed {
				f.slot.data, f.slot.ready = msg, true
			}
			r.failed = nil
			for _, sl := range r.reorder {
				if !sl.ready {
					sl.data, sl.ready = msg, true
				}
			}
			r.releaseSlots()
			if r.retrying {
				r.retrying = false
				s.resume()
			}
			s.flushOrDrop()
		}
	}
	r.active = false
	s.sharedDone(n)
}

// endShared ends a session whose client has stopped sending and whose
// shared replies are all in; rsMu is held. The final flush and the wait
// for a slow client run apart, so a shared reader never waits for them.
func (s *session) endShared() {
	if s.finished {
		return
	}
	s.finished = true
	r := &s.rs
	if !r.dead {
		_ = r.flushShared()
	}
	go func() {
		r.out.drain(time.Second)
		r.finish()
	}()
}

// waitShared blocks until every reply the session awaits on a shared
// connection has been delivered.
func (s *session) waitShared() {
	s.rsMu.Lock()
	for s.inflight.Load() > 0 {
		s.idle.Wait()
	}
	s.rsMu.Unlock()
}

// shareable reports whether a command may run on a shared connection.
// Everything that blocks, or leaves state on the connection (db, user,
// transactions, subscriptions, tracking, reply mode, name, replication),
// needs a connection of the session's own.
func shareable(cmd *command, args [][]byte) bool {
	if cmd == nil {
		return true
	}
	if cmd.pins {
		return false
	}
	if cmd.blockArg {
		for _, a := range args[1:] {
			if equalFold(a, "block") {
				return false
			}
		}
		return true
	}
	switch cmd.kind {
	case kindPlain:
		return true
	case kindClient:
		// CLIENT SETINFO only labels the connection in CLIENT LIST (and
		// does not exist before Redis 7.2). go-redis sends both it and
		// CLIENT MAINT_NOTIFICATIONS on every new RESP3 connection; the
		// latter is an unknown subcommand to open-source Redis, which
		// answers it with an error and changes nothing.
		return len(args) >= 2 && (equalFold(args[1], "setinfo") || equalFold(args[1], "maint_notifications"))
	}
	return false
}

// helloProto is the protocol a plain HELLO 2 / HELLO 3 asks for, or 0.
func helloProto(cmd *command, args [][]byte) int {
	if cmd == nil || cmd.kind != kindHello || len(args) != 2 || len(args[1]) != 1 {
		return 0
	}
	switch args[1][0] {
	case '2':
		return 2
	case '3':
		return 3
	}
	return 0
}

// routeShared handles, for a session on shared connections, a command
// that cannot simply join the batch there. done reports that it did; ok
// false then ends the read loop.
func (s *session) routeShared(cmd *command, raw []byte, args [][]byte) (done, ok bool) {
	if shareable(cmd, args) {
		return false, true
	}
	if cmd != nil && cmd.kind == kindQuit {
		// QUIT would close the shared connection: answer it here, as
		// Redis would, and stop reading.
		s.srv.stats.commands.Add(1)
		s.batch = append(s.batch, entry{cmd: cmd, local: []byte("+OK\r\n"), closeAfter: true, replies: 1})
		s.hasLocal = true
		s.send()
		return true, false
	}
	if p := helloProto(cmd, args); p != 0 {
		// The session moves to the shared connections of protocol p, and
		// HELLO runs on one of them (a no-op there) for Redis's reply;
		// whether it took is read from that reply.
		if !s.send() {
			return true, false
		}
		s.waitShared()
		if _, err := s.srv.pool.get(p, s.rinfo.ID); err != nil {
			s.pin(args[0])
			return false, true
		}
		old := s.proto
		s.setShared(p)
		s.route(cmd, raw, args, len(args), false)
		if !s.send() {
			return true, false
		}
		s.waitShared()
		s.rsMu.Lock()
		now := s.rs.info.Proto
		s.rsMu.Unlock()
		if now != p {
			s.setShared(old)
		}
		return true, true
	}
	if !s.send() {
		return true, false
	}
	s.pin(args[0])
	return false, true
}

func (s *session) setShared(proto int) {
	s.upMu.Lock()
	s.proto, s.sc = proto, nil
	s.upMu.Unlock()
}

// pin moves the session to a connection of its own, with the protocol
// it had negotiated, once its shared replies are all in.
func (s *session) pin(why []byte) {
	s.log.Debug("session moves to an upstream connection of its own", zap.ByteString("command", why))
	s.waitShared()
	s.rsMu.Lock()
	s.rs.shared = false
	s.pinProto = s.rs.info.Proto
	s.rsMu.Unlock()
	s.sharedMode = false
	s.upMu.Lock()
	s.sc = nil
	s.upMu.Unlock()
	s.srv.stats.pinned.Add(1)
	s.dial()
	go s.rs.loop()
}

// sendShared is send for a session on shared connections.
func (s *session) sendShared() bool {
	s.q.waitSpace()
	n := 0
	for i := range s.batch {
		if s.batch[i].local == nil {
			n++
		}
	}
	s.upMu.Lock()
	for s.paused {
		s.resumed.Wait()
	}
	var err error
	for attempt := 0; n > 0 && attempt < 2; attempt++ {
		if s.sc == nil || s.sc.isDead() {
			c, gerr := s.srv.pool.get(s.proto, s.rinfo.ID)
			if gerr != nil {
				s.failBatch(gerr)
				n = 0
				break
			}
			s.sc = c
		}
		if err = s.sc.send(s, s.batch, n, s.upbuf); err != errSharedDead {
			break
		}
		s.sc = nil
	}
	if err == errSharedDead {
		s.failBatch(err)
		n = 0
	}
	if n == 0 {
		err = nil
		if !s.q.push(s.batch) {
			err = errQueueClosed
		}
	}
	s.upMu.Unlock()
	if s.hasLocal {
		s.hasLocal = false
		s.emitLocalShared()
	}
	return err == nil
}

// emitLocalShared emits locally answered entries when no shared reply is
// ahead of them; otherwise the reader emits them after those replies.
func (s *session) emitLocalShared() {
	s.rsMu.Lock()
	defer s.rsMu.Unlock()
	r := &s.rs
	if !r.shared || s.inflight.Load() > 0 || r.active || r.dead {
		return
	}
	if !r.emitHead() {
		r.dead = true
		return
	}
	s.flushOrDrop()
}
