package proxy

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/exproxy/exproxy/proxy/resp"
)

// session is one client connection. Its read loop (clientread.go) frames
// the client's commands, routes them (route.go) and sends them on an
// upstream connection (send.go): a shared one of its pool, or one of its
// own while it holds connection state. Whichever connection's reader has
// its replies drives its reply side (replies.go) under mu. So fields are
// owned by one of three parties, as marked: the read loop, the send lock,
// or the reply lock.
type session struct {
	srv    *Server
	log    sessionLog
	client *clientConn
	rinfo  SessionInfo // ID and Addr only: what the read side may show a Rewriter

	q          *queue
	draining   atomic.Bool   // server shutdown: stop reading the client
	syncing    atomic.Bool   // a SYNC/PSYNC was sent: the link may turn into a replication stream
	replyEnded chan struct{} // closed when the reply side has ended
	done       chan struct{} // closed when the session has ended

	// Under sendMu: where commands go, and what holds them back. The
	// read loop sends under it; so does a resend from the reply side.
	sendMu  sync.Mutex
	paused  bool      // the reply side is resending; send nothing new
	holds   int       // cluster retries waiting to be sent: send nothing new
	resumed sync.Cond // on sendMu: paused ended
	conn    *upConn   // where commands go now: shared or private; nil until chosen

	// Read side only: the goroutine that reads the client (the event
	// loop's runner, or the session's own).
	loop        *eventLoop // the loop that reads the client, while it does
	fd          int        // the client's descriptor, for the loop
	readOver    bool       // the client is read no more: finishReading runs or ran
	peerClosed  bool       // the client closed its end (EOF); set before readDone
	in          readBuf
	rdl         lazyDeadline
	parser      resp.ResumableParser
	argv        [][]byte
	inline      []byte
	batch       []entry
	upbuf       []byte
	cands       []groupCand // the batch's commands offered for a group (follow.go)
	groupIDs    []byte      // their groups' names
	up          streamPos   // where its latest command runs on its shared connection (follow.go)
	hasLocal    bool        // the batch holds a locally answered entry
	kick        bool        // the batch holds entries that may be answered without a reply
	batchFailed bool        // the last batch could not reach upstream
	ignoreRest  bool        // after QUIT or malformed input: Redis reads nothing more
	readStart   uint64      // sequence number of the first command of the current read
	tx          txState
	conns       sessionConns
	arena       arena           // what entries keep: resend copies, observed arguments
	wscratch    writeScratch    // watchWrites' room, reused
	cl          *sessionCluster // in front of a Redis Cluster; nil otherwise

	// Under mu: the reply side.
	mu       sync.Mutex
	idle     sync.Cond // on mu: the queue emptied
	waiting  bool      // a read loop waits on idle
	readDone bool      // no more commands will come from the client
	// endReading's: the end's work is left to it (endLeft) rather than
	// to a goroutine of its own, which may wait when endHereMayWait.
	endHere, endHereMayWait bool
	endLeft                 endWork
	endLeftSet              bool
	ended                   bool   // end ran: nothing more goes to the client
	aborted                 uint64 // 1 + seq of a streamed command cut short by malformed input
	rs                      replySide
}

// txState is what the read loop knows of MULTI and WATCH from the
// commands it sends; the reply side knows how Redis took them.
type txState struct {
	inMulti  bool
	watching bool
	queued   []string // names queued since MULTI, for observers
}

func newSession(srv *Server, client *clientConn, id uint64) *session {
	s := &session{
		srv:        srv,
		client:     client,
		q:          newQueue(srv.opts.MaxPending),
		replyEnded: make(chan struct{}),
		done:       make(chan struct{}),
		parser:     resp.ResumableParser{CommandParser: resp.CommandParser{Limits: srv.opts.Limits}},
	}
	s.resumed.L = &s.sendMu
	s.idle.L = &s.mu
	s.fd = client.fd
	s.rinfo = SessionInfo{ID: id, Addr: client.addr}
	s.log = sessionLog{base: srv.log, id: id, addr: s.rinfo.Addr}
	s.conns.key = anonymous
	if srv.cluster != nil {
		s.cl = newSessionCluster(s)
	}
	s.rs.init(s)
	return s
}

// start serves the session: its client is read by the server's event
// loop, or, without one, by a goroutine of its own (run).
func (s *session) start() {
	s.log.Debug("client connected")
	l := s.srv.loop
	if l == nil || s.fd < 0 {
		go s.run()
		return
	}
	if s.srv.opts.Mode == PinnedUpstream {
		// The eager connect may have to dial; the accept loop does not
		// wait for it.
		go func() {
			s.pinEagerly()
			s.in.init(minBuf)
			if l.attach(s) != nil {
				s.run()
			}
		}()
		return
	}
	s.in.init(minBuf)
	if l.attach(s) != nil {
		go s.run()
	}
}

// run serves the session on a goroutine of its own until it ends.
func (s *session) run() {
	s.pinEagerly()
	s.readLoop()
	s.finishReading()
}

// pinEagerly gives a session of upstream-mode pinned its connection when
// the client connects, so the first command does not wait for one; a
// failure is answered per command, and the next send tries again.
func (s *session) pinEagerly() {
	if s.srv.opts.Mode == PinnedUpstream && s.conns.own == nil {
		s.conns.sticky = true
		_ = s.takeOwn(nil)
	}
}

// privateLost is told by the reader of the session's own connection that
// the connection is gone. After QUIT, or after the client stopped
// sending, that is expected. Otherwise Redis
// went away with the session's state (and maybe commands in flight):
// the client connection is closed, as Redis's own closing would close
// it, with no reply invented for the commands whose outcome is unknown.
func (s *session) privateLost(cause error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	if s.rs.quit || s.readDone {
		// Expected: Redis closed after QUIT, or after the client had
		// gone (its half close made Redis drop what it had not answered,
		// such as a blocked BLPOP nobody would read).
		s.endLocked(true)
		return
	}
	n := s.q.unpopped()
	s.srv.stats.upstreamErrors.Add(1)
	s.srv.stats.lostCommands.Add(int64(n))
	s.log.Warn("upstream connection lost; closing the client", zap.String("upstream", s.srv.opts.Upstream.String()),
		zap.Error(cause), zap.Int("commands_in_flight", n))
	s.endLocked(true)
}

// sharedLost is told that a shared connection on which the session had
// commands in flight is gone. Their outcome is unknown; the client is
// closed without replies to them, as when Redis goes away. The
// connection's reader has logged it once for all its sessions.
func (s *session) sharedLost() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked(true)
}

// drain stops reading the client and waits for pending replies until
// ctx ends, then closes the session.
func (s *session) drain(ctx context.Context) {
	s.draining.Store(true)
	s.client.interruptReads()
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
	s.mu.Lock()
	s.endLocked(true)
	s.mu.Unlock()
	<-s.done
}

// waitIdle blocks until every entry the session queued is done: answered
// by Redis or locally. It reports false when the session ended instead.
func (s *session) waitIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loop != nil && !s.ended && (s.rs.active || s.q.unpopped() > 0 || s.rs.resending > 0) {
		s.mu.Unlock()
		s.mayBlock()
		s.mu.Lock()
	}
	for !s.ended && (s.rs.active || s.q.unpopped() > 0 || s.rs.resending > 0) {
		s.waiting = true
		s.idle.Wait()
	}
	s.waiting = false
	return !s.ended
}

// pause stops the read loop from sending anything new, and returns the
// sequence number the next command sent will get.
func (s *session) pause() uint64 {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.paused = true
	return s.q.total()
}

// resume lets the read loop send again.
func (s *session) resume() {
	s.sendMu.Lock()
	s.paused = false
	s.resumed.Broadcast()
	s.sendMu.Unlock()
}
