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
	backoff := 100 * time.Millisecond
	for !s.shutdown.Load() {
		t, err := s.fetchCommands()
		if err == nil {
			s.commands.Store(t)
			return
		}
		s.log.Debug("reading Redis's command table", zap.Error(err))
		time.Sleep(backoff)
		backoff = min(2*backoff, 5*time.Second)
	}
}

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

// watchWrites notes in e the keys a write command writes that a
// WriteWatcher watches now; called only while one is watching.
func (s *session) watchWrites(e *entry, args [][]byte) {
	t := s.srv.commands.Load()
	if t == nil {
		return
	}
	c := t.Lookup(args)
	if c == nil || c.Flags&cluster.FlagWrite == 0 {
		return
	}
	var idx [8]int
	var keys [][]byte
	for _, i := range c.Keys(args, idx[:0]) {
		for _, w := range s.srv.writeWatchers {
			if w.Watched(args[i]) {
				keys = append(keys, s.arena.copyBytes(args[i]))
				break
			}
		}
	}
	if keys == nil {
		return
	}
	if e.obs == nil {
		e.obs = s.arena.newObserved()
		e.obs.sent = time.Now()
	}
	e.obs.writes, e.obs.writeName = keys, c.Name
}
