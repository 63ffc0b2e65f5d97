// Package contention counts optimistic-locking contention seen by the proxy:
// WATCH ... EXEC transactions that Redis aborts, versioned writes refused as
// stale, and CAS/CAD compare failures. Counts are kept per window, per key,
// per key pattern and per client, with bounded memory, and written as
// structured zap events that `exproxy contention` (package report) turns
// into a report. See docs/contention.md.
package contention

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/exproxy/exproxy/proxy"
)

// Log messages of the events the tracker writes.
const (
	MsgWindow  = "contention.window"
	MsgKey     = "contention.key"
	MsgPattern = "contention.pattern"
	MsgClient  = "contention.client"
	MsgAbort   = "contention.abort"
	MsgStale   = "contention.stale"
	// MsgInvalidator ranks, per window, the writers whose writes caused
	// conflicts (and OutsideLabel for those made outside this proxy).
	MsgInvalidator = "contention.invalidator"
)

// nShards spreads sessions over independent locks so that EXECs of many
// sessions do not serialise on one mutex. Each shard has its own tables;
// together they stay within the configured caps (see table).
const nShards = 8

// observed are the commands the tracker needs to see: the transaction
// commands, and the versioned and compare-and-set writes (Tair's command
// names), whose outcome the extension implementing them reports
// (proxy.Event.Outcome).
var observed = map[string]bool{
	"watch": true, "unwatch": true, "multi": true, "exec": true, "discard": true, "reset": true,
	"exset": true, "exincrby": true, "exincrbyfloat": true, "exappend": true, "exprepend": true,
	"excas": true, "excad": true, "cas": true, "cad": true,
	// Not counted, but they keep a key in the attribution set (a read of
	// a version, or a write that bumps it).
	"exget": true, "exgae": true, "exsetver": true,
}

// Tracker is the contention observer. Create it with New, hand it to the
// proxy as an Observer, and Close it after the proxy has shut down.
type Tracker struct {
	cfg Config
	log *zap.Logger
	pat *Patterner
	now func() time.Time

	shards [nShards]shard
	nextID atomic.Uint64 // spreads sessions over shards

	keys *keySet // the attribution set; nil when attribution is off
	pend pendingSet
	met  *metrics

	mu    sync.Mutex // serialises rotations; guards start and last
	start time.Time
	last  *Window

	aborts  chan abortEvent
	dropped atomic.Int64
	limMu   sync.Mutex
	tokens  float64
	limLast time.Time

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type shard struct {
	mu sync.Mutex
	w  *window
	_  [40]byte // keep shards' locks off one cache line
}

// window holds one shard's counters of the current window.
type window struct {
	totals       counts
	events       int64
	hist         hist
	keys         *table
	patterns     *table
	clients      *table
	invalidators *table
}

// New validates cfg, builds a tracker and starts its window timer. Close
// it after the proxy has shut down.
func New(cfg Config, deps Deps) (*Tracker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("contention: %w", err)
	}
	log := deps.Logger
	if log != nil && deps.Instance != "" {
		// Encoded once here, not per event.
		log = log.With(zap.String("instance", deps.Instance))
	}
	return newTracker(cfg, log, time.Now), nil
}

// newTracker builds a tracker on a clock of the caller's (tests). Pattern
// rules that cannot work (which Validate reports) are logged and skipped
// rather than fatal here.
func newTracker(cfg Config, log *zap.Logger, now func() time.Time) *Tracker {
	if log == nil {
		log = zap.NewNop()
	}
	var rules []PatternRule
	for _, r := range cfg.Patterns {
		if !r.Valid() {
			log.Error("contention: skipping invalid pattern rule", zap.String("match", r.Match), zap.String("pattern", r.Pattern))
			continue
		}
		rules = append(rules, r)
	}
	pat, _ := NewPatterner(rules) // each rule compiled above
	t := &Tracker{
		cfg:    cfg,
		log:    log,
		pat:    pat,
		now:    now,
		start:  now(),
		aborts: make(chan abortEvent, 256),
		tokens: cfg.AbortRateLimit,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if cfg.Attribution {
		t.keys = newKeySet(cfg.AttributionMaxKeys, cfg.AttributionTTL, pat.Pattern)
	}
	t.met = newMetrics(cfg.MetricsPatterns, t.keys)
	pools := t.newPools()
	for i := range t.shards {
		t.shards[i].w = t.newWindow(pools)
	}
	go t.run()
	return t
}

// Watching implements proxy.WriteWatcher: whether any key is in the
// attribution set. One atomic load; false when attribution is off.
func (t *Tracker) Watching() bool { return t.keys != nil && t.keys.watching() }

// Watched implements proxy.WriteWatcher: whether key is in the
// attribution set. It does not allocate.
func (t *Tracker) Watched(key []byte) bool { return t.keys != nil && t.keys.watched(key) }

// Arm implements proxy.WriteWatcher: the keys of a WATCH about to be
// sent join the attribution set now, not when Redis's +OK comes back, so
// that a write another session sends meanwhile — which Redis may run
// after the WATCH, aborting it — is recorded. Arm holds no watcher
// count: the WATCH's reply takes one (session.watch), and a WATCH that
// failed leaves its keys to expire after attribution-ttl like any
// unwatched key.
func (t *Tracker) Arm(keys [][]byte) {
	if t.keys == nil {
		return
	}
	now := t.now().UnixNano()
	for i, k := range keys {
		if i == maxWatchKeys {
			break // session.watch tracks no more of them either
		}
		t.keys.acquire(k, now, false)
	}
}

func (t *Tracker) newWindow(pools *windowPools) *window {
	// Each shard's reserve is half its fair share; the other half of the
	// cap is a pool any shard of the window may borrow from.
	reserve := func(n int) int { return max(n/(2*nShards), 1) }
	return &window{
		keys:         newTable(reserve(t.cfg.MaxKeys), &pools.keys),
		patterns:     newTable(reserve(t.cfg.MaxPatterns), &pools.patterns),
		clients:      newTable(reserve(t.cfg.MaxClients), &pools.clients),
		invalidators: newTable(reserve(t.cfg.MaxClients), &pools.invalidators),
	}
}

// windowPools is the spare capacity shared by one window's shards.
type windowPools struct {
	keys, patterns, clients, invalidators atomic.Int64
}

func (t *Tracker) newPools() *windowPools {
	p := &windowPools{}
	spare := func(n int) int64 { return int64(max(n-nShards*max(n/(2*nShards), 1), 0)) }
	p.keys.Store(spare(t.cfg.MaxKeys))
	p.patterns.Store(spare(t.cfg.MaxPatterns))
	p.clients.Store(spare(t.cfg.MaxClients))
	p.invalidators.Store(spare(t.cfg.MaxClients))
	return p
}

// Observes implements proxy.Observer.
func (t *Tracker) Observes(name string) bool { return observed[name] }

// Open implements proxy.Observer.
func (t *Tracker) Open(info *proxy.SessionInfo) proxy.SessionObserver {
	id := t.nextID.Add(1)
	return &session{t: t, sh: &t.shards[id%nShards], info: info}
}

func (t *Tracker) run() {
	defer close(t.done)
	tick := time.NewTicker(t.cfg.Window)
	defer tick.Stop()
	// Conflicts waiting for their write are given up on within a quarter
	// of the grace; the attribution set is swept every second.
	maint := time.NewTicker(attributionGrace / 4)
	defer maint.Stop()
	var lastSweep time.Time
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			t.rotate(false)
		case <-maint.C:
			now := t.now()
			t.expire(now.UnixNano(), false)
			if t.keys != nil && now.Sub(lastSweep) >= time.Second {
				t.keys.sweep(now.UnixNano())
				lastSweep = now
			}
		case ev := <-t.aborts:
			ev.write(t.log)
		}
	}
}

// maintain expires waiting conflicts and sweeps the attribution set at
// the tracker's clock (tests; the run loop does it on a timer).
func (t *Tracker) maintain() {
	now := t.now().UnixNano()
	t.expire(now, false)
	if t.keys != nil {
		t.keys.sweep(now)
	}
}

// Flush ends the current window now and logs it (when anything happened);
// the next window starts at once.
func (t *Tracker) Flush() { t.rotate(false) }

// Close stops the window timer, writes the per-abort events still queued
// and the current partial window, and syncs the logger, so nothing counted
// is lost. Call it after the proxy has stopped delivering events; it is safe
// to call more than once.
func (t *Tracker) Close() error {
	t.closeOnce.Do(func() {
		close(t.stop)
		<-t.done
		// No write can come any more: a conflict still waiting for one
		// was caused outside this proxy.
		t.expire(0, true)
		t.drainEvents()
		t.rotate(true)
		// Sync fails with EINVAL on a terminal or pipe on some systems;
		// that loses nothing, the lines were written.
		_ = t.log.Sync()
	})
	return nil
}

func (t *Tracker) drainEvents() {
	for {
		select {
		case ev := <-t.aborts:
			ev.write(t.log)
		default:
			return
		}
	}
}

// rotate swaps every shard's window for a fresh one, merges them and logs.
func (t *Tracker) rotate(final bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ws := make([]*window, 0, nShards)
	pools := t.newPools()
	for i := range t.shards {
		s := &t.shards[i]
		fresh := t.newWindow(pools)
		s.mu.Lock()
		ws = append(ws, s.w)
		s.w = fresh
		s.mu.Unlock()
	}
	end := t.now()
	w, events := t.summarize(ws, t.start, end, t.cfg.Top, int64(t.cfg.Threshold))
	w.AbortEventsDropped = t.dropped.Swap(0)
	if t.keys != nil {
		w.KeysUntracked = t.keys.full.Swap(0)
	}
	t.met.add(ws, end)
	t.start = end
	t.last = w
	if events > 0 || w.AbortEventsDropped > 0 {
		t.logWindow(w, final)
	}
}

// snapshot merges the shards' current windows without ending them.
func (t *Tracker) snapshot(top int) (cur, last *Window) {
	t.mu.Lock()
	start, last := t.start, t.last
	t.mu.Unlock()
	ws := make([]*window, 0, nShards)
	for i := range t.shards {
		s := &t.shards[i]
		c := &window{keys: newTable(1, nil), patterns: newTable(1, nil), clients: newTable(1, nil), invalidators: newTable(1, nil)}
		s.mu.Lock()
		copyWindow(c, s.w)
		s.mu.Unlock()
		ws = append(ws, c)
	}
	cur, _ = t.summarize(ws, start, t.now(), top, 0)
	cur.Partial = true
	return cur, last
}

func copyWindow(dst, src *window) {
	dst.totals = src.totals
	dst.events = src.events
	dst.hist = src.hist
	for _, p := range [][2]*table{{dst.keys, src.keys}, {dst.patterns, src.patterns}, {dst.clients, src.clients}, {dst.invalidators, src.invalidators}} {
		m := make(map[string]*entry, len(p[1].m))
		p[1].mergeInto(m)
		p[0].m = m
		p[0].other = p[1].other
		p[0].evicted = p[1].evicted
	}
}

func (t *Tracker) summarize(ws []*window, start, end time.Time, top int, minConflicts int64) (*Window, int64) {
	var tot counts
	var h hist
	var events int64
	keys := map[string]*entry{}
	pats := map[string]*entry{}
	clis := map[string]*entry{}
	invs := map[string]*entry{}
	// Empty lists, not nulls, for JSON consumers of the admin endpoint.
	out := &Window{Start: start.UTC(), End: end.UTC(), Keys: []Row{}, Patterns: []Row{}, Clients: []Row{}, Invalidators: []Row{}}
	for _, w := range ws {
		tot.add(&w.totals)
		h.merge(&w.hist)
		events += w.events
		w.keys.mergeInto(keys)
		w.patterns.mergeInto(pats)
		w.clients.mergeInto(clis)
		w.invalidators.mergeInto(invs)
		out.KeysEvicted += w.keys.evicted
		out.PatternsEvicted += w.patterns.evicted
		out.ClientsEvicted += w.clients.evicted
	}
	out.Totals = makeRow(&tot, &h)
	out.KeysTracked = len(keys)
	if t.keys != nil {
		out.KeysWatched = t.keys.n.Load()
	}
	for i, e := range rank(keys, top, minConflicts) {
		r := entryRow(e)
		r.Key, r.Pattern, r.Rank = e.name, e.pattern, i+1
		out.Keys = append(out.Keys, r)
	}
	for i, e := range rank(pats, top, minConflicts) {
		r := entryRow(e)
		r.Pattern, r.Rank = e.name, i+1
		out.Patterns = append(out.Patterns, r)
	}
	for i, e := range rank(clis, top, minConflicts) {
		r := entryRow(e)
		r.Client, r.Rank, r.Clients = e.name, i+1, nil
		out.Clients = append(out.Clients, r)
	}
	// Every invalidator has caused at least one conflict: the threshold
	// applies as to the others.
	for i, e := range rank(invs, top, max(minConflicts, 1)) {
		r := invalidatorRow(e)
		r.Rank = i + 1
		out.Invalidators = append(out.Invalidators, r)
	}
	return out, events
}

func (t *Tracker) logWindow(w *Window, final bool) {
	ws := zap.String("window_start", w.Start.Format(time.RFC3339Nano))
	we := zap.String("window_end", w.End.Format(time.RFC3339Nano))
	t.log.Info(MsgWindow, ws, we,
		zap.Int64("window_ms", w.End.Sub(w.Start).Milliseconds()),
		zap.Bool("final", final),
		zap.Inline(w.Totals),
		zap.Int("keys_tracked", w.KeysTracked),
		zap.Int64("keys_evicted", w.KeysEvicted),
		zap.Int64("patterns_evicted", w.PatternsEvicted),
		zap.Int64("clients_evicted", w.ClientsEvicted),
		zap.Int64("abort_events_dropped", w.AbortEventsDropped),
		zap.Int64("keys_watched", w.KeysWatched),
		zap.Int64("keys_untracked", w.KeysUntracked),
	)
	for _, r := range w.Keys {
		t.log.Info(MsgKey, ws, we, zap.Inline(r))
	}
	for _, r := range w.Patterns {
		t.log.Info(MsgPattern, ws, we, zap.Inline(r))
	}
	for _, r := range w.Clients {
		t.log.Info(MsgClient, ws, we, zap.Inline(r))
	}
	for _, r := range w.Invalidators {
		t.log.Info(MsgInvalidator, ws, we, zap.Inline(r))
	}
}

// apply adds one delta under the session's shard lock: to the totals, to
// each key, to each distinct pattern and to the client. This is the only
// place the hot path takes a lock, and only for EXEC, given-up watches and
// refused writes.
func (t *Tracker) apply(sh *shard, d *counts, keys, pats []string, dur time.Duration, timed bool, client string) {
	sh.mu.Lock()
	w := sh.w
	w.totals.add(d)
	w.events++
	if timed {
		w.hist.add(dur)
	}
	weight := weightOf(d)
	for i, k := range keys {
		w.keys.update(k, pats[i], d, weight, dur, timed, client)
	}
	for i, p := range pats {
		if !containsBefore(pats, i, p) {
			w.patterns.update(p, "", d, weight, dur, timed, client)
		}
	}
	w.clients.update(client, "", d, weight, dur, timed, "")
	sh.mu.Unlock()
}

func containsBefore(s []string, i int, v string) bool {
	for _, x := range s[:i] {
		if x == v {
			return true
		}
	}
	return false
}

var _ proxy.WriteWatcher = (*Tracker)(nil)
