package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Dial is how the proxy's own connections reach cluster nodes: the
// credentials and TLS of the upstream settings.
type Dial struct {
	Username, Password string
	TLS                *tls.Config // nil: plain TCP
	// Timeout bounds connecting and each command (default 2s).
	Timeout time.Duration
}

// Fetcher reads the topology and the command table from a cluster over
// connections of the proxy's own (go-redis, RESP2), one small client per
// node it has asked. It is safe for concurrent use.
type Fetcher struct {
	seeds []string
	dial  Dial

	mu      sync.Mutex
	clients map[string]*redis.Client
	closed  bool
}

// NewFetcher returns a Fetcher that starts from the seed addresses
// (host:port).
func NewFetcher(seeds []string, d Dial) *Fetcher {
	if d.Timeout <= 0 {
		d.Timeout = 2 * time.Second
	}
	return &Fetcher{seeds: append([]string(nil), seeds...), dial: d, clients: map[string]*redis.Client{}}
}

func (f *Fetcher) client(addr string) (*redis.Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errors.New("cluster: fetcher closed")
	}
	if c := f.clients[addr]; c != nil {
		return c, nil
	}
	var tlsCfg *tls.Config
	if f.dial.TLS != nil {
		tlsCfg = f.dial.TLS.Clone()
		if tlsCfg.ServerName == "" && !tlsCfg.InsecureSkipVerify {
			tlsCfg.ServerName = hostOf(addr)
		}
	}
	c := redis.NewClient(&redis.Options{
		Addr:      addr,
		Username:  f.dial.Username,
		Password:  f.dial.Password,
		TLSConfig: tlsCfg,
		// RESP2 and no CLIENT SETINFO or maintenance notifications:
		// nothing a Redis 7.0 (or 6.x) might refuse.
		Protocol:                 2,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		DialTimeout:              f.dial.Timeout,
		ReadTimeout:              f.dial.Timeout,
		WriteTimeout:             f.dial.Timeout,
		// The Fetcher tries the next node itself; a retry against a
		// dead node only delays that.
		MaxRetries: -1,
		PoolSize:   1,
	})
	f.clients[addr] = c
	return c, nil
}

func hostOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return strings.Trim(addr[:i], "[]")
	}
	return addr
}

// candidates lists the addresses to ask, each once: the nodes of last
// (primaries first: they know the slot map soonest after a change), then
// the seeds.
func (f *Fetcher) candidates(last *Topology) []string {
	seen := map[string]bool{}
	var out []string
	add := func(a string) {
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	if last != nil {
		for _, sh := range last.Shards() {
			if sh.Primary.Health != Failed {
				add(sh.Primary.Addr)
			}
		}
		for _, n := range last.Nodes() {
			if n.Health != Failed {
				add(n.Addr)
			}
		}
	}
	for _, s := range f.seeds {
		add(s)
	}
	return out
}

// Topology asks the nodes of last (when not nil) and then the seeds, one
// at a time, for CLUSTER SHARDS — CLUSTER SLOTS on a Redis without it —
// and returns the first reply that covers every slot. When none does
// (the cluster is down or resharding with a slot unassigned), it returns
// the reply covering the most slots; Covered tells. It fails only when
// no node answered.
func (f *Fetcher) Topology(ctx context.Context, last *Topology) (*Topology, error) {
	var best *Topology
	bestCovered := -1
	var errs []error
	addrs := f.candidates(last)
	for _, addr := range addrs {
		t, err := f.topologyFrom(ctx, addr)
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if t.Covered() {
			f.prune(t)
			return t, nil
		}
		if t.served > bestCovered {
			best, bestCovered = t, t.served
		}
	}
	if best != nil {
		f.prune(best)
		return best, nil
	}
	return nil, fmt.Errorf("cluster: no node of %d answered with the topology: %w", len(addrs), errors.Join(errs...))
}

func (f *Fetcher) topologyFrom(ctx context.Context, addr string) (*Topology, error) {
	c, err := f.client(addr)
	if err != nil {
		return nil, err
	}
	reply, err := c.Do(ctx, "CLUSTER", "SHARDS").Result()
	if err == nil {
		return ParseShards(reply, addr, f.dial.TLS != nil)
	}
	if !unknownSubcommand(err) {
		return nil, fmt.Errorf("%s: CLUSTER SHARDS: %w", addr, err)
	}
	reply, err = c.Do(ctx, "CLUSTER", "SLOTS").Result()
	if err != nil {
		return nil, fmt.Errorf("%s: CLUSTER SLOTS: %w", addr, err)
	}
	t, err := ParseSlots(reply, addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	return t, nil
}

// unknownSubcommand matches Redis 6's "ERR Unknown subcommand or wrong
// number of arguments for 'shards'..." and 7's "ERR unknown subcommand".
func unknownSubcommand(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.Contains(strings.ToLower(err.Error()), "unknown subcommand")
}

// prune closes the clients of nodes that are neither in t nor seeds.
func (f *Fetcher) prune(t *Topology) {
	keep := map[string]bool{}
	for _, a := range f.candidates(t) {
		keep[a] = true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for a, c := range f.clients {
		if !keep[a] {
			_ = c.Close()
			delete(f.clients, a)
		}
	}
}

// Table reads COMMAND from the first node of last (or the seeds) that
// answers and builds the key-position table from it.
func (f *Fetcher) Table(ctx context.Context, last *Topology) (*Table, error) {
	var errs []error
	for _, addr := range f.candidates(last) {
		c, err := f.client(addr)
		if err != nil {
			return nil, err
		}
		reply, err := c.Do(ctx, "COMMAND").Result()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: COMMAND: %w", addr, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		t, err := NewTable(reply)
		if err != nil {
			return nil, fmt.Errorf("cluster: %s: %w", addr, err)
		}
		return t, nil
	}
	return nil, fmt.Errorf("cluster: no node answered COMMAND: %w", errors.Join(errs...))
}

// Close closes every connection.
func (f *Fetcher) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	var errs []error
	for a, c := range f.clients {
		errs = append(errs, c.Close())
		delete(f.clients, a)
	}
	return errors.Join(errs...)
}
