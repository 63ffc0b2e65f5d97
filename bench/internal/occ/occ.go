// Package occ measures optimistic read-modify-write increments under
// contention, the way applications write them with go-redis: a WATCH/MULTI
// retry loop, EXGET + EXSET VER, EXCAS, and a one-round-trip Lua script as
// the reference. Every run ends by checking that no increment was lost.
package occ

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/bench/internal/stats"
)

// Method is one way of doing an optimistic increment.
type Method string

// The methods, named as they appear in the report.
const (
	Watch Method = "watch"     // WATCH k; GET k; MULTI; SET k v+1; EXEC — retry on abort
	ExVer Method = "exset-ver" // EXGET k; EXSET k v+1 VER ver — retry on stale error
	ExCAS Method = "excas"     // EXCAS k v+1 ver — retry with the value/version CAS_FAILED returns
	Lua   Method = "lua"       // EVALSHA of a GET/SET script: one round trip, never retries
)

// NeedsProxy reports whether the method uses commands only exproxy
// provides (or its Lua library, loaded into Redis and called with FCALL:
// see Config.Func).
func (m Method) NeedsProxy() bool { return m == ExVer || m == ExCAS }

// Config is one measured run.
type Config struct {
	Addr     string
	Method   Method
	Clients  int
	Keys     int
	Duration time.Duration
	Prefix   string // key prefix, unique per run so runs never see each other's keys
	Protocol int    // RESP version go-redis negotiates (2 or 3)
	// CPU, when set, reads a process's CPU time (the proxy's); it is
	// sampled at the start and end of the measured window only, so setup
	// and verification are not counted.
	CPU func() time.Duration
	// RedisCPU, when set, reads Redis's CPU time, likewise.
	RedisCPU func() time.Duration
	// Func, when set, names the library function of a versioned-string
	// handler ("excas" -> "excas_<version>"): the EX commands are then
	// sent as FCALL <function> 1 <key> <args...>, straight to a Redis
	// that has the library loaded, with no proxy in between.
	Func func(handler string) string
}

// Result is what one run measured.
type Result struct {
	Commits    int64
	Attempts   int64
	RoundTrips int64
	Elapsed    time.Duration
	P50, P99   time.Duration // per committed increment, retries included
	CPU        time.Duration // Config.CPU's delta over the measured window
	RedisCPU   time.Duration // Config.RedisCPU's delta over the measured window
}

// CommitsPerSec is the committed-update throughput.
func (r Result) CommitsPerSec() float64 { return float64(r.Commits) / r.Elapsed.Seconds() }

// RetriesPerCommit counts failed attempts per committed update.
func (r Result) RetriesPerCommit() float64 {
	return float64(r.Attempts-r.Commits) / float64(r.Commits)
}

// RTPerCommit counts client round trips (go-redis commands or pipelines)
// per committed update.
func (r Result) RTPerCommit() float64 { return float64(r.RoundTrips) / float64(r.Commits) }

// ErrLostUpdate marks a failed final-value check; the harness must fail
// the whole run on it, however good the throughput looked.
var ErrLostUpdate = errors.New("LOST UPDATE")

// rtHook counts round trips: one per command or pipeline sent, which is
// what the client waits for.
type rtHook struct{ n *atomic.Int64 }

func (h rtHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h rtHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h rtHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// incrScript is the reference: the same read-modify-write, done inside
// Redis, so it can neither conflict nor retry.
var incrScript = redis.NewScript(`local v = tonumber(redis.call('GET', KEYS[1]) or '0') + 1
redis.call('SET', KEYS[1], v)
return v`)

// Run performs one measured run and verifies the final values.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Clients <= 0 || cfg.Keys <= 0 {
		return Result{}, fmt.Errorf("occ: clients and keys must be positive")
	}
	proto := cfg.Protocol
	if proto == 0 {
		proto = 3
	}

	rdb := redis.NewClient(&redis.Options{
		Addr:            cfg.Addr,
		PoolSize:        cfg.Clients,
		MinIdleConns:    cfg.Clients,
		Protocol:        proto,
		DisableIdentity: true,
		MaxRetries:      -1, // a silent client-side retry would hide proxy errors
		// The default 3 s read timeout fires on a heavily shared machine
		// without anything being wrong; a hung proxy still shows.
		ReadTimeout:  30 * time.Second,
		WriteTimeout: 30 * time.Second,
	})
	defer rdb.Close()

	keys := make([]string, cfg.Keys)
	for i := range keys {
		keys[i] = cfg.Prefix + ":" + strconv.Itoa(i)
	}
	if err := setup(ctx, rdb, exClient{rdb, cfg.Func}, cfg.Method, keys); err != nil {
		return Result{}, fmt.Errorf("occ %s setup on %s: %w", cfg.Method, cfg.Addr, err)
	}
	// Open the whole pool before the clock starts, so dials are not
	// counted as latency or round trips.
	var wg sync.WaitGroup
	for i := 0; i < cfg.Clients; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); _ = rdb.Ping(ctx).Err() }()
	}
	wg.Wait()

	var rt atomic.Int64
	rdb.AddHook(rtHook{&rt})

	perKey := make([]atomic.Int64, cfg.Keys)
	var attempts atomic.Int64
	lat := make([][]time.Duration, cfg.Clients)
	errs := make([]error, cfg.Clients)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	var cpu0, redis0 time.Duration
	if cfg.CPU != nil {
		cpu0 = cfg.CPU()
	}
	if cfg.RedisCPU != nil {
		redis0 = cfg.RedisCPU()
	}
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	for w := 0; w < cfg.Clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wk := &worker{rdb: rdb, ex: exClient{rdb, cfg.Func}, keys: keys, attempts: &attempts, cas: make([]casState, len(keys))}
			rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			for runCtx.Err() == nil && time.Now().Before(deadline) {
				k := 0
				if len(keys) > 1 {
					k = rng.IntN(len(keys))
				}
				t0 := time.Now()
				if err := wk.increment(runCtx, cfg.Method, k); err != nil {
					if runCtx.Err() == nil {
						errs[w] = fmt.Errorf("client %d, key %s: %w", w, keys[k], err)
						cancel()
					}
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
				perKey[k].Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var cpuUsed, redisUsed time.Duration
	if cfg.CPU != nil {
		cpuUsed = cfg.CPU() - cpu0
	}
	if cfg.RedisCPU != nil {
		redisUsed = cfg.RedisCPU() - redis0
	}
	for _, err := range errs {
		if err != nil {
			return Result{}, fmt.Errorf("occ %s on %s: %w", cfg.Method, cfg.Addr, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}

	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	res := Result{
		Commits:    int64(len(all)),
		Attempts:   attempts.Load(),
		RoundTrips: rt.Load(),
		Elapsed:    elapsed,
		P50:        stats.Percentile(all, 50),
		P99:        stats.Percentile(all, 99),
		CPU:        cpuUsed,
		RedisCPU:   redisUsed,
	}
	if res.Commits == 0 {
		return res, fmt.Errorf("occ %s on %s: no update committed in %v", cfg.Method, cfg.Addr, cfg.Duration)
	}
	if err := verify(ctx, rdb, exClient{rdb, cfg.Func}, cfg.Method, keys, perKey); err != nil {
		return res, fmt.Errorf("occ %s on %s: %w", cfg.Method, cfg.Addr, err)
	}
	cleanup(ctx, rdb, keys)
	return res, nil
}

func setup(ctx context.Context, rdb *redis.Client, ex exClient, m Method, keys []string) error {
	for _, k := range keys {
		if err := rdb.Del(ctx, k).Err(); err != nil {
			return err
		}
		switch m {
		case ExVer, ExCAS:
			// A created key has version 1; verify relies on that.
			if err := ex.do(ctx, "EXSET", k, "0").Err(); err != nil {
				return fmt.Errorf("EXSET %s 0: %w", k, err)
			}
		default:
			if err := rdb.Set(ctx, k, "0", 0).Err(); err != nil {
				return err
			}
		}
	}
	if m == Lua {
		if err := incrScript.Load(ctx, rdb).Err(); err != nil {
			return fmt.Errorf("SCRIPT LOAD: %w", err)
		}
	}
	return nil
}

func cleanup(ctx context.Context, rdb *redis.Client, keys []string) {
	for _, k := range keys {
		_ = rdb.Del(ctx, k).Err()
	}
}

// verify checks every key holds exactly the number of increments committed
// on it (and, for versioned strings, that each commit bumped the version
// once).
func verify(ctx context.Context, rdb *redis.Client, ex exClient, m Method, keys []string, perKey []atomic.Int64) error {
	var bad []string
	for i, k := range keys {
		want := perKey[i].Load()
		switch m {
		case ExVer, ExCAS:
			val, ver, err := exget(ctx, ex, k)
			if err != nil {
				return fmt.Errorf("verify %s: %w", k, err)
			}
			if val != want || ver != want+1 {
				bad = append(bad, fmt.Sprintf("%s: value %d version %d, want value %d version %d", k, val, ver, want, want+1))
			}
		default:
			got, err := rdb.Get(ctx, k).Int64()
			if err != nil {
				return fmt.Errorf("verify %s: %w", k, err)
			}
			if got != want {
				bad = append(bad, fmt.Sprintf("%s: value %d, want %d", k, got, want))
			}
		}
	}
	if len(bad) > 0 {
		if len(bad) > 5 {
			bad = append(bad[:5], fmt.Sprintf("... and %d more keys", len(bad)-5))
		}
		return fmt.Errorf("%w: %s", ErrLostUpdate, strings.Join(bad, "; "))
	}
	return nil
}

type casState struct {
	known    bool
	val, ver int64
}

// worker is one client goroutine's state.
type worker struct {
	rdb      *redis.Client
	ex       exClient
	keys     []string
	attempts *atomic.Int64
	cas      []casState // EXCAS: last value/version seen per key
}

// increment commits one +1 on keys[k], retrying conflicts.
func (w *worker) increment(ctx context.Context, m Method, k int) error {
	key := w.keys[k]
	switch m {
	case Watch:
		for {
			w.attempts.Add(1)
			err := w.rdb.Watch(ctx, func(tx *redis.Tx) error {
				n, err := tx.Get(ctx, key).Int64()
				if err != nil {
					return err
				}
				_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.Set(ctx, key, n+1, 0)
					return nil
				})
				return err
			}, key)
			if err == nil {
				return nil
			}
			if !errors.Is(err, redis.TxFailedErr) {
				return err
			}
		}
	case ExVer:
		for {
			w.attempts.Add(1)
			val, ver, err := exget(ctx, w.ex, key)
			if err != nil {
				return err
			}
			err = w.ex.do(ctx, "EXSET", key, strconv.FormatInt(val+1, 10), "VER", ver).Err()
			if err == nil {
				return nil
			}
			if !strings.Contains(err.Error(), "update version is stale") {
				return fmt.Errorf("EXSET VER: %w", err)
			}
		}
	case ExCAS:
		st := &w.cas[k]
		if !st.known {
			// First touch of this key by this client: one read. After
			// that the client always knows a value/version to try (its
			// own write, or what CAS_FAILED returned), so each attempt is
			// one round trip.
			val, ver, err := exget(ctx, w.ex, key)
			if err != nil {
				return err
			}
			*st = casState{known: true, val: val, ver: ver}
		}
		for {
			w.attempts.Add(1)
			reply, err := w.ex.do(ctx, "EXCAS", key, strconv.FormatInt(st.val+1, 10), st.ver).Result()
			if err != nil {
				return fmt.Errorf("EXCAS: %w", err)
			}
			arr, ok := reply.([]any)
			if !ok || len(arr) != 3 {
				return fmt.Errorf("EXCAS: unexpected reply %#v", reply)
			}
			status, _ := arr[0].(string)
			ver, okv := arr[2].(int64)
			if !okv {
				return fmt.Errorf("EXCAS: version element %#v", arr[2])
			}
			switch status {
			case "OK":
				st.val, st.ver = st.val+1, ver
				return nil
			case "CAS_FAILED":
				s, _ := arr[1].(string)
				v, err := strconv.ParseInt(s, 10, 64)
				if err != nil {
					return fmt.Errorf("EXCAS CAS_FAILED value %#v: %w", arr[1], err)
				}
				st.val, st.ver = v, ver
			default:
				return fmt.Errorf("EXCAS: unexpected reply %#v", reply)
			}
		}
	case Lua:
		w.attempts.Add(1)
		return incrScript.Run(ctx, w.rdb, []string{key}).Err()
	}
	return fmt.Errorf("unknown method %q", m)
}

// exClient sends versioned-string commands: by name through exproxy, or
// as FCALL of the library's function when fn is set.
type exClient struct {
	rdb *redis.Client
	fn  func(handler string) string
}

func (c exClient) do(ctx context.Context, cmd, key string, args ...any) *redis.Cmd {
	if c.fn == nil {
		return c.rdb.Do(ctx, append([]any{cmd, key}, args...)...)
	}
	return c.rdb.Do(ctx, append([]any{"FCALL", c.fn(strings.ToLower(cmd)), 1, key}, args...)...)
}

// exget reads a versioned string as (integer value, version).
func exget(ctx context.Context, ex exClient, key string) (int64, int64, error) {
	reply, err := ex.do(ctx, "EXGET", key).Result()
	if err != nil {
		return 0, 0, fmt.Errorf("EXGET: %w", err)
	}
	arr, ok := reply.([]any)
	if !ok || len(arr) < 2 {
		return 0, 0, fmt.Errorf("EXGET: unexpected reply %#v", reply)
	}
	s, _ := arr[0].(string)
	val, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("EXGET value %#v: %w", arr[0], err)
	}
	ver, ok := arr[1].(int64)
	if !ok {
		return 0, 0, fmt.Errorf("EXGET version %#v", arr[1])
	}
	return val, ver, nil
}
