package proxy

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/zap"

	"github.com/exproxy/exproxy/proxy/cluster"
)

// Redis's own command table — key positions and flags from its COMMAND
// reply — read once on a connection of the proxy's own, so that new and
// module commands are known without a table edit here. The core needs it
// to tell writes and their keys (for WriteWatchers) and, in front of a
// Redis Cluster, to route by key.

// loadCommands reads COMMAND until it has it, backing off while Redis
// cannot be reached, and publishes the table.
func (s *Server) loadCommands() {
	start := time.Now()
	backoff := 100 * time.Millisecond
	for !s.shutdown.Load() {
		t, err := s.fetchCommands()
		if err == nil {
			s.commands.Store(t)
			// Until now WriteWatchers heard of no write: say when that
			// ended, for whoever reads their numbers.
			s.log.Info("read Redis's command table: writes to watched keys are reported from now on",
				zap.Int("commands", len(t.Commands())), zap.Duration("after", time.Since(start)))
			return
		}
		s.log.Debug("reading Redis's command table", zap.Error(err))
		time.Sleep(backoff)
		backoff = min(2*backoff, 5*time.Second)
	}
}

// CommandsLoaded reports whether the core has read Redis's command table
// (shortly after Start, once Redis answers COMMAND). Before that it cannot
// tell writes, so WriteWatchers hear of none, and it cannot route by key.
func (s *Server) CommandsLoaded() bool { return s.commands.Load() != nil }

func (s *Server) fetchCommands() (*cluster.Table, error) {
	u := s.opts.Upstream
	c := redis.NewClient(&redis.Options{
		Network: u.Network, Addr: u.Addr, Username: u.Username, Password: u.Password, DB: u.DB,
		TLSConfig:   u.TLS,
		Protocol:    2,
		DialTimeout: s.opts.DialTimeout, ReadTimeout: s.opts.DialTimeout, WriteTimeout: s.opts.DialTimeout,
		PoolSize: 1, MaxRetries: -1,
		// The proxy's own connection sends COMMAND and nothing a Redis
		// 7.0 might refuse.
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*s.opts.DialTimeout)
	defer cancel()
	reply, err := c.Do(ctx, "COMMAND").Result()
	if err != nil {
		return nil, err
	}
	return cluster.NewTable(reply)
}

// writeScratch is the read loop's reusable room for finding a write's
// watched keys, so that a watched write allocates nothing of its own (the
// copies it keeps come from the session's arena).
type writeScratch struct {
	idx  []int    // key positions, from the command table
	keys [][]byte // the watched keys among them, still in the read buffer
}

// watchWrites notes in e the keys a write command writes that a
// WriteWatcher watches now; called only while one is watching. Before
// the command table is loaded (commandsLoaded) no write is seen.
func (s *session) watchWrites(e *entry, args [][]byte) {
	t := s.srv.commands.Load()
	if t == nil {
		return
	}
	c := t.Lookup(args)
	if c == nil || c.Flags&cluster.FlagWrite == 0 {
		return
	}
	sc := &s.wscratch
	sc.idx = c.Keys(args, sc.idx[:0])
	sc.keys = sc.keys[:0]
	for _, i := range sc.idx {
		for _, w := range s.srv.writeWatchers {
			if w.Watched(args[i]) {
				sc.keys = append(sc.keys, args[i])
				break
			}
		}
	}
	if len(sc.keys) == 0 {
		return
	}
	if e.obs == nil {
		e.obs = s.arena.newObserved()
		e.obs.sent = time.Now()
	}
	e.obs.writes, e.obs.writeName = s.arena.copyArgs(sc.keys), c.Name
	// The scratch must not keep a read buffer the session may drop.
	clear(sc.keys)
}

// armWatch tells the WriteWatchers of the keys of a WATCH about to be
// sent, so that writes other sessions send from now on are noted even
// before Redis has answered the WATCH.
func (s *session) armWatch(args [][]byte) {
	if len(args) < 2 {
		return
	}
	for _, w := range s.srv.writeWatchers {
		w.Arm(args[1:])
	}
}
