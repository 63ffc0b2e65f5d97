package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/exproxy/exproxy/proxy/cluster"
	"github.com/exproxy/exproxy/proxy/resp"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("proxy: server closed")

// Server accepts client connections and gives each a session. Sessions
// reach Redis over upstream connections from its pools.
type Server struct {
	opts  Options
	log   *zap.Logger
	table table
	pools *pools
	loop  *eventLoop // reads the clients; nil: a goroutine per client
	// cluster is the slot map of a Redis Cluster upstream; nil for a
	// single Redis.
	cluster *clusterView
	// authRequired: Redis refuses commands before AUTH. Learned from a
	// connection of the proxy's own at start, and kept current from what
	// unauthenticated sessions are told; while it holds, an
	// unauthenticated session is read with Redis's pre-AUTH limits.
	authRequired atomic.Bool
	authKnown    atomic.Bool
	// epoch is a monotonic origin for times kept in atomics.
	epoch time.Time
	// commands is Redis's command table (commands.go), once read.
	commands      atomic.Pointer[cluster.Table]
	writeWatchers []WriteWatcher

	mu       sync.Mutex
	ln       net.Listener
	sessions map[*session]struct{}
	shutdown atomic.Bool
	wg       sync.WaitGroup
	nextID   atomic.Uint64

	stats struct {
		connected, total, rejected               atomic.Int64
		commands, upstreamErrors, protocolErrors atomic.Int64
		outputLimitClosed, lostCommands          atomic.Int64
		upstreamConns, sharedConns, readyConns   atomic.Int64
		pools, pinned, unpinned, handoffs        atomic.Int64
		retired, answeredByLeader                atomic.Int64
	}
}

// New checks opts and fills in defaults. It opens nothing.
func New(opts Options) (*Server, error) {
	if opts.Upstream.Cluster && opts.Upstream.Addr == "" && len(opts.Upstream.Seeds) > 0 {
		opts.Upstream.Addr = opts.Upstream.Seeds[0]
	}
	if opts.Upstream.Addr == "" {
		return nil, errors.New("proxy: no upstream address")
	}
	if opts.Upstream.Network == "" {
		opts.Upstream.Network = "tcp"
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 2 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 30 * time.Second
	}
	if opts.MaxClients <= 0 {
		opts.MaxClients = 10000
	}
	def := resp.DefaultLimits()
	if opts.Limits.MaxBulkLen <= 0 {
		opts.Limits.MaxBulkLen = def.MaxBulkLen
	}
	if opts.Limits.MaxInlineLen <= 0 {
		opts.Limits.MaxInlineLen = def.MaxInlineLen
	}
	if opts.Limits.MaxArgs <= 0 {
		opts.Limits.MaxArgs = def.MaxArgs
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 100000
	}
	if opts.ClientOutputLimit <= 0 {
		opts.ClientOutputLimit = 64 << 20
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.SharedConns <= 0 {
		opts.SharedConns = 1
	}
	if c := &opts.Cluster; opts.Upstream.Cluster {
		// Sessions reach each node through their pool there; a
		// connection of a session's own per node for its life is not
		// offered (docs/cluster.md).
		opts.Mode = SharedUpstream
		if opts.Upstream.Network != "tcp" {
			return nil, errors.New("proxy: a cluster upstream is reached over tcp")
		}
		if c.RefreshInterval <= 0 {
			c.RefreshInterval = 5 * time.Second
		}
		if c.MinRefreshInterval <= 0 {
			c.MinRefreshInterval = 100 * time.Millisecond
		}
		if c.FailoverWait <= 0 {
			c.FailoverWait = 5 * time.Second
		}
		if c.MaxRedirects <= 0 {
			c.MaxRedirects = 5
		}
	}
	switch {
	case opts.ReadyConns == 0:
		opts.ReadyConns = 2
	case opts.ReadyConns < 0:
		opts.ReadyConns = 0
	}
	srv := &Server{
		epoch:    time.Now(),
		opts:     opts,
		log:      opts.Logger,
		table:    newTable(opts.Rewriters, opts.Observers),
		sessions: map[*session]struct{}{},
	}
	for _, o := range opts.Observers {
		if w, ok := o.(WriteWatcher); ok {
			srv.writeWatchers = append(srv.writeWatchers, w)
		}
	}
	if opts.Upstream.Cluster {
		srv.cluster = newClusterView(srv)
	}
	srv.pools = newPools(srv)
	if opts.ClientIO != GoroutinePerClient {
		loop, err := newEventLoop(srv)
		if err != nil {
			if opts.ClientIO == EventLoop {
				return nil, fmt.Errorf("proxy: event loop: %w", err)
			}
			// Where there is no epoll, a goroutine per client.
		}
		srv.loop = loop
	}
	return srv, nil
}

// ListenAndServe listens on Options.Listen and serves until Shutdown.
func (s *Server) ListenAndServe() error {
	network, addr := "tcp", s.opts.Listen
	if strings.Contains(addr, "/") {
		network = "unix"
		_ = os.Remove(addr) // a stale socket from an earlier run
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		return fmt.Errorf("proxy: listen %s: %w", addr, err)
	}
	return s.Serve(l)
}

// Serve serves clients accepted on l until Shutdown; it then returns
// ErrServerClosed. The event loop accepts the clients of a
// *net.TCPListener (setting TCP_NODELAY, and off loopback Go's keepalive,
// on l for them to inherit) or a *net.UnixListener itself; other
// listeners are accepted here.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.shutdown.Load() {
		s.mu.Unlock()
		_ = l.Close()
		return ErrServerClosed
	}
	s.ln = l
	s.mu.Unlock()
	s.learnAuthOnce()
	if s.cluster != nil {
		s.cluster.start() // reads the command table too
	} else if len(s.writeWatchers) > 0 {
		go s.loadCommands()
	}
	s.pools.start()
	s.pools.refill()
	if s.loop != nil {
		s.loop.start()
		if done, ok := s.loop.listen(l); ok {
			// The loop accepts (loopaccept.go) until Shutdown.
			if err := <-done; err != nil && !s.shutdown.Load() {
				return fmt.Errorf("proxy: accept: %w", err)
			}
			return ErrServerClosed
		}
	}
	var backoff time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			if s.shutdown.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscallEMFILE) {
				// Out of file descriptors or similar: wait, don't spin.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept", zap.Error(err), zap.Duration("retry_in", backoff))
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("proxy: accept: %w", err)
		}
		backoff = 0
		s.admit(wrapConn(conn))
	}
}

// admit gives an accepted client a session, or turns it away.
func (s *Server) admit(c *clientConn) {
	if s.stats.connected.Load() >= int64(s.opts.MaxClients) {
		s.stats.rejected.Add(1)
		c.reject("-ERR max number of clients reached\r\n")
		return
	}
	s.stats.connected.Add(1)
	s.stats.total.Add(1)
	sess := newSession(s, c, s.nextID.Add(1))
	s.mu.Lock()
	if s.shutdown.Load() {
		s.mu.Unlock()
		s.stats.connected.Add(-1)
		c.close()
		return
	}
	s.sessions[sess] = struct{}{}
	s.wg.Add(1) // Done by the session's finishReading
	s.mu.Unlock()
	sess.start()
}

func (s *Server) forget(sess *session) {
	s.mu.Lock()
	if _, ok := s.sessions[sess]; ok {
		delete(s.sessions, sess)
		s.stats.connected.Add(-1)
	}
	s.mu.Unlock()
}

// Shutdown stops accepting, lets sessions finish replies already pending
// for up to ctx's deadline, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown.Store(true)
	if s.loop != nil {
		s.loop.unlisten() // before the close: see unlisten
	}
	if s.ln != nil {
		_ = s.ln.Close()
	}
	sessions := make([]*session, 0, len(s.sessions))
	for sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	for _, sess := range sessions {
		sess.draining.Store(true)
	}
	if s.loop != nil {
		// Every session it reads goes on on a goroutine of its own.
		s.loop.stop()
	}
	var wg sync.WaitGroup
	for _, sess := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sess.drain(ctx)
		}()
	}
	wg.Wait()
	s.pools.close()
	if s.cluster != nil {
		s.cluster.close()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// keepsAnon reports whether the anonymous pool of a node is kept while
// no session uses it: the one Redis's, and a cluster primary's.
func (s *Server) keepsAnon(node int32) bool {
	if node == 0 || s.cluster == nil {
		return true
	}
	st := s.cluster.state.Load()
	return st != nil && slices.Contains(st.primaries, node)
}

// dialFailed counts and logs a failed dial. A connection that Redis
// refused to set up (a wrong password, a database out of range) is the
// client's business, answered to it with Redis's own error; it is logged
// only for debugging.
func (s *Server) dialFailed(err error) {
	var ref *refusal
	if errors.As(err, &ref) {
		s.log.Debug("upstream refused a connection's setup", zap.String("reply", trimLine(ref.reply)))
		return
	}
	s.stats.upstreamErrors.Add(1)
	s.log.Warn("upstream unreachable", zap.String("upstream", s.opts.Upstream.String()), zap.Error(err))
}

// learnAuthOnce asks Redis, on a connection of the proxy's own and
// without credentials, whether it requires authentication: a PING that
// gets NOAUTH says it does. Until this has succeeded once it is retried
// whenever a dial succeeds; afterwards sessions keep it current.
func (s *Server) learnAuthOnce() {
	if s.authKnown.Load() {
		return
	}
	conn, err := s.dial(context.Background())
	if err != nil {
		return
	}
	defer conn.Close()
	err = handshake(conn, []byte("*1\r\n$4\r\nPING\r\n"), 1, s.opts.DialTimeout)
	var ref *refusal
	switch {
	case err == nil:
		s.authRequired.Store(false)
	case errors.As(err, &ref) && strings.HasPrefix(string(ref.reply), "-NOAUTH"):
		s.authRequired.Store(true)
	default:
		return
	}
	s.authKnown.Store(true)
}
