package exstring

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// errClosed answers loads asked for after Close.
var errClosed = errors.New("exstring: load: extension closed")

// failureCooldown is how long a failed load answers later Reload calls
// without trying again, so that many sessions retrying against a Redis
// that is down do not hammer it. Successes are never cached (see Reload).
const failureCooldown = 100 * time.Millisecond

// loadCall is one load, shared by every Reload that waits for it.
type loadCall struct {
	done chan struct{}
	err  error
}

// loader coalesces loads. A Reload must see a load that *started after*
// it was called: a load already running may have found the library just
// before the FUNCTION FLUSH that made this caller fail. So a caller that
// finds a load running queues for the next one, and all callers arriving
// during that load share the same next one: a burst of N failing commands
// costs at most two loads, and no caller is answered by a stale one.
type loader struct {
	ext    *Extension
	addr   string // a Redis Cluster node; "" for Deps.Upstream
	client *redis.Client

	mu       sync.Mutex
	running  *loadCall
	next     *loadCall
	failedAt time.Time
	lastErr  error
	closed   bool

	// For tests: loads counts loads performed; queued counts callers that
	// joined a queued load; beforeLoad, when set, runs before each load.
	loads      int
	queued     int
	beforeLoad func()
}

func (l *loader) init(e *Extension) { l.initAt(e, "") }

// initAt prepares a loader for one node of a cluster (addr), or for the
// upstream (addr ""), with the upstream's credentials and TLS.
func (l *loader) initAt(e *Extension, addr string) {
	u := e.deps.Upstream
	network := u.Network
	if addr != "" {
		network = "tcp"
	} else {
		addr = u.Addr
	}
	l.ext = e
	if addr != u.Addr || e.deps.Upstream.Cluster {
		l.addr = addr
	}
	l.client = redis.NewClient(&redis.Options{
		Network:         network,
		Addr:            addr,
		TLSConfig:       u.TLS,
		Username:        u.Username,
		Password:        u.Password,
		DB:              u.DB,
		Protocol:        2, // the loads need nothing of RESP3, and RESP2 works on every Redis
		PoolSize:        2,
		DialTimeout:     e.deps.DialTimeout,
		ReadTimeout:     e.deps.DialTimeout,
		WriteTimeout:    e.deps.DialTimeout,
		DisableIdentity: true, // CLIENT SETINFO is unknown before 7.2
	})
}

// Start loads the library in the background, retrying with backoff (up to
// every 5 s, logging each failure) until it succeeds, ctx ends or the
// extension is closed. It never blocks or fails the proxy: a command
// arriving before the load triggers its own.
//
// In front of a Redis Cluster it loads nothing itself: the proxy names
// the primaries (SetNodes), and the library is loaded on each.
func (e *Extension) Start(ctx context.Context) {
	done := e.startDone
	if e.deps.Upstream.Cluster {
		if done != nil {
			close(done)
		}
		return
	}
	go e.loader.keepLoading(ctx, done)
}

// keepLoading loads the library until it succeeds, ctx ends or the
// extension is closed, backing off between attempts; done, if not nil,
// is closed at the end.
func (l *loader) keepLoading(ctx context.Context, done chan struct{}) {
	e := l.ext
	if done != nil {
		defer close(done)
	}
	backoff := 100 * time.Millisecond
	for {
		err := l.reload(ctx, false)
		if err == nil || ctx.Err() != nil || errors.Is(err, errClosed) {
			return
		}
		e.deps.Logger.Warn("exstring: loading the Lua library failed; retrying",
			zap.String("upstream", l.where()), zap.Duration("in", backoff), zap.Error(err))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// where names the Redis a loader loads into, for logs and errors.
func (l *loader) where() string {
	if l.addr != "" {
		return l.addr
	}
	return l.ext.deps.Upstream.String()
}

// Load loads the library now (FUNCTION LOAD, or SCRIPT LOAD in scripts
// mode), waiting for a load that starts after this call; in front of a
// cluster, on every primary the proxy has named.
func (e *Extension) Load(ctx context.Context) error {
	if e.deps.Upstream.Cluster {
		return e.eachNode(func(l *loader) error { return l.reload(ctx, false) })
	}
	return e.loader.reload(ctx, false)
}

// Reload is proxy.ReplyHandler's Reload: called before a command is
// resent because the library was missing. Unlike Load it answers at once
// with the last error while a recent load failed. In front of a cluster
// the proxy calls ReloadNode instead.
func (e *Extension) Reload(ctx context.Context) error {
	if e.deps.Upstream.Cluster {
		return e.eachNode(func(l *loader) error { return l.reload(ctx, true) })
	}
	return e.loader.reload(ctx, true)
}

// Close stops using the proxy's own connections to Redis.
func (e *Extension) Close() error {
	e.bgCancel()
	errs := []error{e.loader.close()}
	e.nmu.Lock()
	for _, l := range e.nodes {
		errs = append(errs, l.close())
	}
	e.nmu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("exstring: close: %w", err)
	}
	return nil
}

func (l *loader) close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return l.client.Close()
}

// Mode reports how commands are sent: "fcall" or "evalsha".
func (e *Extension) Mode() string {
	if e.mode.Load() == modeEVALSHA {
		return "evalsha"
	}
	return "fcall"
}

// switchToScripts moves every later rewrite to EVALSHA. It is one-way: a
// server without functions is not expected to grow them, and EVALSHA
// keeps working on one that has them.
func (e *Extension) switchToScripts(why string) {
	if e.mode.Swap(modeEVALSHA) != modeEVALSHA {
		e.deps.Logger.Warn("exstring: switching to SCRIPT LOAD/EVALSHA", zap.String("reason", why),
			zap.String("upstream", e.deps.Upstream.String()))
		if e.deps.Upstream.Cluster {
			// The scripts must be on every node before EVALSHA reaches
			// it.
			go func() { _ = e.Load(e.bg) }()
		}
	}
}

func (l *loader) reload(ctx context.Context, useCooldown bool) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return errClosed
	}
	if useCooldown && l.lastErr != nil && time.Since(l.failedAt) < failureCooldown {
		err := l.lastErr
		l.mu.Unlock()
		return err
	}
	var c *loadCall
	if l.running == nil {
		c = &loadCall{done: make(chan struct{})}
		l.running = c
		go l.run(c)
	} else {
		if l.next == nil {
			l.next = &loadCall{done: make(chan struct{})}
		}
		c = l.next
		l.queued++
	}
	l.mu.Unlock()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return fmt.Errorf("exstring: load: %w", ctx.Err())
	}
}

// run performs c and then the load queued behind it, if any. Loads use
// their own deadline, not a caller's context: one impatient caller must
// not fail the load the others wait for.
func (l *loader) run(c *loadCall) {
	for c != nil {
		l.mu.Lock()
		l.loads++
		hook := l.beforeLoad
		l.mu.Unlock()
		if hook != nil {
			hook()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*l.ext.deps.DialTimeout)
		err := l.load(ctx)
		cancel()
		l.mu.Lock()
		c.err = err
		if err != nil {
			l.lastErr, l.failedAt = err, time.Now()
		} else {
			l.lastErr = nil
		}
		close(c.done)
		c = l.next
		l.running, l.next = c, nil
		l.mu.Unlock()
	}
}

// load puts the library into Redis in the current mode.
func (l *loader) load(ctx context.Context) error {
	e := l.ext
	// PING first: an unauthenticated FUNCTION LOAD of a large library is
	// answered "Protocol error: unauthenticated bulk length", which hides
	// the real problem (NOAUTH, a wrong password) from the operator.
	if err := l.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("exstring: connect to %s: %w", l.where(), err)
	}
	if e.mode.Load() == modeFCALL {
		err := l.loadFunctions(ctx)
		if err == nil || !isUnknownCommand(err) {
			return err
		}
		// Redis < 7 (or FUNCTION renamed away).
		e.switchToScripts("FUNCTION is unknown to the server")
	}
	return l.loadScripts(ctx)
}

func (l *loader) loadFunctions(ctx context.Context) error {
	e := l.ext
	name, err := l.client.FunctionLoad(ctx, Library()).Result()
	switch {
	case err == nil:
		e.deps.Logger.Info("exstring: loaded the Lua library", zap.String("library", name),
			zap.String("upstream", l.where()))
		return nil
	case strings.Contains(err.Error(), "already exists"):
		// The version is in the library's name, so the same name means
		// the same body.
		return nil
	case strings.HasPrefix(err.Error(), "NOPERM"):
		return fmt.Errorf("exstring: FUNCTION LOAD on %s: the proxy's user needs +function (or set exstring scripts mode and grant +script): %w",
			l.where(), err)
	}
	return fmt.Errorf("exstring: FUNCTION LOAD on %s: %w", l.where(), err)
}

func (l *loader) loadScripts(ctx context.Context) error {
	e := l.ext
	pipe := l.client.Pipeline()
	var cmds []*redis.StringCmd
	var want []string
	for _, c := range e.cmds {
		if c.script != "" {
			cmds = append(cmds, pipe.ScriptLoad(ctx, c.script))
			want = append(want, c.sha)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("exstring: SCRIPT LOAD on %s: %w", l.where(), err)
	}
	for i, cmd := range cmds {
		if sha := cmd.Val(); sha != want[i] {
			// Cannot happen unless Redis hashes differently; EVALSHA
			// would then never find the scripts.
			return fmt.Errorf("exstring: SCRIPT LOAD on %s: got SHA %s, want %s", l.where(), sha, want[i])
		}
	}
	e.deps.Logger.Info("exstring: loaded the Lua scripts", zap.Int("scripts", len(cmds)),
		zap.String("upstream", l.where()))
	return nil
}

// isUnknownCommand reports whether err is Redis answering "ERR unknown
// command ..." (wrapped or not).
func isUnknownCommand(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.HasPrefix(rerr.Error(), "ERR unknown command")
}
