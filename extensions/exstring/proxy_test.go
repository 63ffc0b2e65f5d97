package exstring

// End-to-end tests: a real redis-server, the proxy core in front of it with
// this extension as its only Rewriter, and clients speaking RESP2 and RESP3
// (go-redis, and raw bytes where exact reply bytes matter).

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zapcore"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
)

// e2e is a Redis, this extension, and the proxy in front of Redis with the
// extension as its only Rewriter.
type e2e struct {
	*proxytest.Harness
	ext *Extension
}

type e2eConfig struct {
	redisOpts []redistest.Option
	ext       Config
	deps      Deps // Upstream.Addr and Logger are filled in
	noPreload bool // leave loading to the first command's Retry
}

func startE2E(t *testing.T, c e2eConfig) *e2e {
	t.Helper()
	srv := redistest.Start(t, c.redisOpts...)
	deps := c.deps
	deps.Upstream.Addr = srv.Addr
	deps.Logger, _ = proxytest.NewLogger(t, zapcore.DebugLevel)
	ext := newExt(t, c.ext, deps)
	if !c.noPreload {
		if err := ext.Load(ctxT(t)); err != nil {
			t.Fatalf("Load: %v", err)
		}
	}
	return &e2e{Harness: proxytest.StartFor(t, srv, proxytest.WithRewriters(ext)), ext: ext}
}

// rawClient is a raw connection to the proxy, in RESP3 after HELLO 3.
func (x *e2e) rawClient(t *testing.T, proto int) *proxytest.Conn {
	rc := x.ProxyRaw(t)
	if proto == 3 {
		if got := rc.Do("HELLO", "3"); !strings.HasPrefix(got, "%") {
			t.Fatalf("HELLO 3: %q", got)
		}
	}
	return rc
}

// target is what the byte-exact cases need of a proxy with this
// extension, in front of one Redis or of a Redis Cluster, so that the
// same cases run on both (cluster_test.go).
type target struct {
	addr string
	// raw is a raw connection to the proxy, in RESP3 after HELLO 3.
	raw func(t *testing.T, proto int) *proxytest.Conn
	// client is a go-redis client of the proxy.
	client func(tb testing.TB, proto int, mods ...func(*redis.Options)) *redis.Client
	// direct is a raw connection straight to the Redis that holds key.
	direct func(t *testing.T, key string) *proxytest.Conn
	// flushLibrary runs FUNCTION FLUSH on every Redis behind the proxy's
	// back.
	flushLibrary func(t *testing.T)
}

func (x *e2e) target() *target {
	return &target{
		addr:   x.Addr,
		raw:    x.rawClient,
		client: x.Client,
		direct: func(t *testing.T, _ string) *proxytest.Conn { return x.DirectRaw(t) },
		flushLibrary: func(t *testing.T) {
			if err := proxytest.NewGoRedis(t, x.Redis.Addr, 2).FunctionFlush(ctxT(t)).Err(); err != nil {
				t.Fatal(err)
			}
		},
	}
}

// TestProxySpecExamples checks exact reply bytes through the proxy for the
// spec's examples, in both protocols. The Lua engineer's tests cover the
// semantics exhaustively; these prove the rewrite carries them unchanged.
func TestProxySpecExamples(t *testing.T) {
	x := startE2E(t, e2eConfig{})
	runSpecExamples(t, x.rawClient, func(t *testing.T) {
		if err := proxytest.NewGoRedis(t, x.Redis.Addr, 2).FlushAll(ctxT(t)).Err(); err != nil {
			t.Fatal(err)
		}
	})
}

func arity(c string) string { return "-ERR wrong number of arguments for '" + c + "' command\r\n" }

const wrongType = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"

// specStep is one command of the spec's examples and its exact reply.
type specStep struct {
	cmd   string
	want  string
	want3 string // when RESP3 differs
}

var specSteps = []specStep{
	{"EXSET a v1", "+OK\r\n", ""},
	{"EXGET a", "*2\r\n$2\r\nv1\r\n:1\r\n", ""},
	{"exset a v2 VER 1", "+OK\r\n", ""},
	{"EXSET a v3 VER 1", "-ERR update version is stale\r\n", ""},
	{"EXSET a v3 NX", "$-1\r\n", "_\r\n"},
	{"EXSET a v3 WITHVERSION", ":3\r\n", ""},
	{"EXGET a WITHFLAGS", "*3\r\n$2\r\nv3\r\n:3\r\n:0\r\n", ""},
	{"EXGET nosuch", "$-1\r\n", "_\r\n"},
	{"EXCAS a v4 3", "*3\r\n+OK\r\n+\r\n:4\r\n", ""},
	{"EXCAS a v5 3", "*3\r\n+CAS_FAILED\r\n$2\r\nv4\r\n:4\r\n", ""},
	{"EXCAS nosuch v 1", ":-1\r\n", ""},
	{"EXCAS a v5 x", "-ERR version should be integer\r\n", ""},
	{"EXCAD a 3", ":0\r\n", ""},
	{"EXCAD a 4", ":1\r\n", ""},
	{"EXCAD a 4", ":-1\r\n", ""},
	{"EXINCRBY n 5", ":5\r\n", ""},
	{"EXINCRBY n 1 WITHVERSION", "*2\r\n:6\r\n:2\r\n", ""},
	{"EXINCRBY n 1 MAX 6", "-ERR increment or decrement would overflow\r\n", ""},
	{"EXINCRBYFLOAT f 0.1", "$3\r\n0.1\r\n", ""},
	{"EXINCRBYFLOAT f 0.2", "$3\r\n0.3\r\n", ""},
	{"EXSETVER n 10", ":1\r\n", ""},
	{"EXGET n", "*2\r\n$1\r\n6\r\n:10\r\n", ""},
	{"EXSETVER nosuch abc", ":0\r\n", ""},
	{"EXAPPEND s abc", ":1\r\n", ""},
	{"EXPREPEND s x", ":2\r\n", ""},
	{"EXGAE s EX 100", "*3\r\n$4\r\nxabc\r\n:2\r\n:0\r\n", ""},
	{"TYPE s", "+exstrtype\r\n", ""},
	{"GET s", wrongType, ""},
	{"SET p hello", "+OK\r\n", ""},
	{"TYPE p", "+string\r\n", ""},
	{"type nosuch", "+none\r\n", ""},
	{"TYPE", arity("type"), ""},
	{"EXSET p v", wrongType, ""},
	{"CAS p hello world", ":1\r\n", ""},
	{"CAS p hello x", ":0\r\n", ""},
	{"CAS s xabc y", wrongType, ""},
	{"CAD p world", ":1\r\n", ""},
	{"CAD p world", ":-1\r\n", ""},
	{"EXSET k", arity("exset"), ""},
	{"EXGET", arity("exget"), ""},
	{"ExCaS", arity("excas"), ""},
	{"EXSET k v EX 0", "-ERR syntax error\r\n", ""},
	// Integers a double cannot hold arrive as integers (FixBigInts).
	{"EXSET big v ABS 9007199254740992", "+OK\r\n", ""},
	{"EXSET big v WITHVERSION", ":9007199254740993\r\n", ""},
	{"EXGET big", "*2\r\n$1\r\nv\r\n:9007199254740993\r\n", ""},
	{"EXCAS big w 1", "*3\r\n+CAS_FAILED\r\n$1\r\nv\r\n:9007199254740993\r\n", ""},
	{"EXINCRBY bi 9223372036854775807 WITHVERSION", "*2\r\n:9223372036854775807\r\n:1\r\n", ""},
	{"EXSET wrap v ABS 9223372036854775807", "+OK\r\n", ""},
	{"EXSET wrap v WITHVERSION", ":-9223372036854775808\r\n", ""},
}

// runSpecExamples sends the spec's examples through the proxy, in both
// protocols, from an empty dataset (flush), checking every reply's bytes.
func runSpecExamples(t *testing.T, raw func(*testing.T, int) *proxytest.Conn, flush func(*testing.T)) {
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			flush(t)
			rc := raw(t, proto)
			for _, s := range specSteps {
				want := s.want
				if proto == 3 && s.want3 != "" {
					want = s.want3
				}
				if got := rc.Do(strings.Fields(s.cmd)...); got != want {
					t.Errorf("%s = %q, want %q", s.cmd, got, want)
				}
			}
		})
	}
}

func TestProxyMultiExec(t *testing.T) {
	runMultiExec(t, startE2E(t, e2eConfig{}).target())
}

func runMultiExec(t *testing.T, x *target) {
	for _, proto := range []int{2, 3} {
		rc := x.raw(t, proto)
		for _, s := range []struct{ cmd, want string }{
			{"MULTI", "+OK\r\n"},
			{"EXSET m" + strconv.Itoa(proto) + " v", "+QUEUED\r\n"},
			{"EXSET", "+QUEUED\r\n"}, // module arity errors are EXEC elements, not EXECABORT
			{"EXGET m" + strconv.Itoa(proto), "+QUEUED\r\n"},
			{"EXEC", "*3\r\n+OK\r\n-ERR wrong number of arguments for 'exset' command\r\n*2\r\n$1\r\nv\r\n:1\r\n"},
		} {
			if got := rc.Do(strings.Fields(s.cmd)...); got != s.want {
				t.Errorf("RESP%d %s = %q, want %q", proto, s.cmd, got, s.want)
			}
		}
	}
}

// TestProxyPipelineAcrossFlush sends 100 mixed commands in one pipeline
// with a flush of the library in the middle: every reply must come back,
// correct and in order, the ex commands after the flush included. Several
// retries are outstanding at once here (every ex command already sent when
// the flush lands fails), which is what distinguishes it from a single
// retry: a timeout means the core lost a held-back reply.
func TestProxyPipelineAcrossFlush(t *testing.T) {
	tests := []struct {
		name  string
		cfg   e2eConfig
		flush []any
	}{
		{"FUNCTION FLUSH", e2eConfig{}, []any{"FUNCTION", "FLUSH"}},
		{"SCRIPT FLUSH", e2eConfig{ext: Config{Scripts: true}}, []any{"SCRIPT", "FLUSH"}},
		{"never loaded", e2eConfig{noPreload: true}, []any{"FUNCTION", "FLUSH"}},
	}
	for _, tt := range tests {
		for _, proto := range []int{2, 3} {
			t.Run(fmt.Sprintf("%s/RESP%d", tt.name, proto), func(t *testing.T) {
				x := startE2E(t, tt.cfg)
				ctx := ctxT(t)
				rdb := x.Client(t, proto)
				cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
					for i := 0; i < 100; i++ {
						switch {
						case i == 50:
							p.Do(ctx, tt.flush...)
						case i%4 == 0:
							p.Do(ctx, "EXSET", "k"+strconv.Itoa(i), "v"+strconv.Itoa(i))
						case i%4 == 1:
							p.Do(ctx, "EXGET", "k"+strconv.Itoa(i-1))
						case i%4 == 2:
							p.Do(ctx, "EXINCRBY", "cnt", "1")
						default:
							p.Do(ctx, "INCR", "plain")
						}
					}
					return nil
				})
				if err != nil {
					t.Fatalf("pipeline: %v", err)
				}
				if len(cmds) != 100 {
					t.Fatalf("%d replies, want 100", len(cmds))
				}
				var incr, exincr int64
				for i, c := range cmds {
					v, err := c.(*redis.Cmd).Result()
					if err != nil {
						t.Errorf("command %d %v: %v", i, c.Args(), err)
						continue
					}
					var want any
					switch {
					case i == 50:
						want = "OK"
					case i%4 == 0:
						want = "OK"
					case i%4 == 1:
						want = fmt.Sprint([]any{"v" + strconv.Itoa(i-1), int64(1)})
						v = fmt.Sprint(v)
					case i%4 == 2:
						exincr++
						want = exincr
					default:
						incr++
						want = incr
					}
					if v != want {
						t.Errorf("reply %d to %v = %#v, want %#v", i, c.Args(), v, want)
					}
				}
			})
		}
	}
}

// casIncrement runs workers × perWorker increments of key through fn and
// returns nothing; fn must retry until its increment lands.
func concurrently(t *testing.T, workers, perWorker int, fn func(ctx context.Context) error) {
	t.Helper()
	// No deadline: under contention this is hundreds of thousands of round
	// trips on a slow machine, and go-redis's own read timeout already
	// guards each one against a hang.
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				if err := fn(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestProxyConcurrentIncrements: 32 clients × 500 increments of one key by
// optimistic locking through the proxy; no update may be lost. With 32
// contenders each increment costs about 32 attempts, so RESP3, whose path
// through the proxy is the same, runs 100 per client to keep the suite short.
func TestProxyConcurrentIncrements(t *testing.T) {
	const workers = 32
	x := startE2E(t, e2eConfig{ext: Config{AnswerStale: true}}) // doomed EXCAS answered in the proxy (shared mode), as by default
	for _, proto := range []int{2, 3} {
		per := 500
		if proto == 3 || testing.Short() {
			per = 100
		}
		total := workers * per
		// A generous read timeout: 32 busy clients under -race on a small
		// machine can stall one reply for seconds; it guards a hang only.
		rdb := x.Client(t, proto, func(o *redis.Options) { o.PoolSize = workers })
		check := func(t *testing.T, key string, wantValue string, wantVersion int64) {
			got, err := rdb.Do(ctxT(t), "EXGET", key).Slice()
			if err != nil {
				t.Fatalf("EXGET: %v", err)
			}
			if got[0] != wantValue || got[1] != wantVersion {
				t.Errorf("%s = %v, want [%s %d]", key, got, wantValue, wantVersion)
			}
		}
		t.Run(fmt.Sprintf("EXCAS/RESP%d", proto), func(t *testing.T) {
			key := "excas" + strconv.Itoa(proto)
			if err := rdb.Do(ctxT(t), "EXSET", key, "0").Err(); err != nil {
				t.Fatal(err)
			}
			concurrently(t, workers, per, func(ctx context.Context) error {
				cur, err := rdb.Do(ctx, "EXGET", key).Slice()
				if err != nil {
					return fmt.Errorf("EXGET: %w", err)
				}
				for {
					n, _ := strconv.ParseInt(cur[0].(string), 10, 64)
					r, err := rdb.Do(ctx, "EXCAS", key, strconv.FormatInt(n+1, 10), cur[1]).Slice()
					if err != nil {
						return fmt.Errorf("EXCAS: %w", err)
					}
					if r[0] == "OK" {
						return nil
					}
					if r[0] != "CAS_FAILED" {
						return fmt.Errorf("EXCAS replied %v", r)
					}
					cur = r[1:] // the failure carries the current value and version
				}
			})
			check(t, key, strconv.Itoa(total), int64(total)+1)
		})
		t.Run(fmt.Sprintf("EXSET VER/RESP%d", proto), func(t *testing.T) {
			key := "exsetver" + strconv.Itoa(proto)
			if err := rdb.Do(ctxT(t), "EXSET", key, "0").Err(); err != nil {
				t.Fatal(err)
			}
			concurrently(t, workers, per, func(ctx context.Context) error {
				for {
					cur, err := rdb.Do(ctx, "EXGET", key).Slice()
					if err != nil {
						return fmt.Errorf("EXGET: %w", err)
					}
					n, _ := strconv.ParseInt(cur[0].(string), 10, 64)
					err = rdb.Do(ctx, "EXSET", key, strconv.FormatInt(n+1, 10), "VER", cur[1]).Err()
					if err == nil {
						return nil
					}
					if err.Error() != "ERR update version is stale" {
						return fmt.Errorf("EXSET VER: %w", err)
					}
				}
			})
			check(t, key, strconv.Itoa(total), int64(total)+1)
		})
		t.Run(fmt.Sprintf("EXINCRBY/RESP%d", proto), func(t *testing.T) {
			key := "exincrby" + strconv.Itoa(proto)
			concurrently(t, workers, per, func(ctx context.Context) error {
				return rdb.Do(ctx, "EXINCRBY", key, "1").Err()
			})
			check(t, key, strconv.Itoa(total), int64(total))
		})
	}
}

func TestProxyPasswordAndACL(t *testing.T) {
	x := startE2E(t, e2eConfig{
		redisOpts: []redistest.Option{redistest.WithConfig("requirepass", "s3cret")},
		deps:      Deps{Upstream: proxy.Upstream{Password: "s3cret"}},
	})
	ctx := ctxT(t)
	admin := proxytest.NewGoRedis(t, x.Redis.Addr, 2, func(o *redis.Options) { o.Password = "s3cret" })
	for _, u := range [][]string{
		{"app", "on", ">apw", "~*", "+@all"},
		{"noscripts", "on", ">npw", "~*", "+@all", "-@scripting"},
		{"somekeys", "on", ">spw", "~a*", "+@all"},
		{"nohash", "on", ">hpw", "~*", "+@all", "-@hash"},
	} {
		if err := admin.Do(ctx, append([]any{"ACL", "SETUSER"}, toAny(u)...)...).Err(); err != nil {
			t.Fatalf("ACL SETUSER: %v", err)
		}
	}
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			app := x.Client(t, proto, func(o *redis.Options) { o.Username = "app"; o.Password = "apw" })
			if v, err := app.Do(ctx, "EXSET", "k", "v", "WITHVERSION").Int64(); err != nil || v < 1 {
				t.Fatalf("app EXSET = %v, %v", v, err)
			}
			def := x.Client(t, proto, func(o *redis.Options) { o.Password = "s3cret" })
			if got, err := def.Do(ctx, "TYPE", "k").Text(); err != nil || got != "exstrtype" {
				t.Errorf("default user TYPE = %q, %v", got, err)
			}
			anon := x.Client(t, proto)
			if err := anon.Do(ctx, "EXGET", "k").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
				t.Errorf("unauthenticated EXGET: %v, want NOAUTH", err)
			}
			ns := x.Client(t, proto, func(o *redis.Options) { o.Username = "noscripts"; o.Password = "npw" })
			err := ns.Do(ctx, "EXGET", "k").Err()
			want := "NOPERM this user has no permissions to run the 'exget' command (exproxy implements it with FCALL: grant +fcall, or +@scripting)"
			if err == nil || err.Error() != want {
				t.Errorf("user without +fcall: %v, want %q", err, want)
			}
			if v, err := ns.Get(ctx, "plain").Result(); !errors.Is(err, redis.Nil) {
				t.Errorf("user without +fcall, GET = %q, %v: plain commands must still work", v, err)
			}
			sk := x.Client(t, proto, func(o *redis.Options) { o.Username = "somekeys"; o.Password = "spw" })
			if err := sk.Do(ctx, "EXSET", "k", "v").Err(); err == nil || err.Error() != "NOPERM this user has no permissions to access one of the keys used as arguments" {
				t.Errorf("key outside the user's patterns: %v", err)
			}
			if err := sk.Do(ctx, "EXSET", "a1", "v").Err(); err != nil {
				t.Errorf("key inside the user's patterns: %v", err)
			}
			nh := x.Client(t, proto, func(o *redis.Options) { o.Username = "nohash"; o.Password = "hpw" })
			if err := nh.Do(ctx, "EXGET", "k").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM this user has no permissions to run the 'exget' command (exproxy implements it in Lua, which runs "+luaCalls) {
				t.Errorf("user without hash commands: %v", err)
			}
		})
	}
}

// TestProxyCommandIntrospection asks through the proxy the way clients
// that route by key do.
func TestProxyCommandIntrospection(t *testing.T) {
	runCommandIntrospection(t, startE2E(t, e2eConfig{}).target())
}

func runCommandIntrospection(t *testing.T, x *target) {
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			ctx := ctxT(t)
			rdb := x.client(t, proto)
			cmds, err := rdb.Command(ctx).Result()
			if err != nil {
				t.Fatalf("COMMAND: %v", err)
			}
			for _, s := range specs {
				c := cmds[s.name]
				if c == nil {
					t.Errorf("COMMAND lacks %s", s.name)
					continue
				}
				if c.FirstKeyPos != 1 || c.LastKeyPos != 1 || c.StepCount != 1 || c.Arity != int8(s.arity) {
					t.Errorf("%s: %+v", s.name, c)
				}
				if c.ReadOnly != (s.name == "exget") {
					t.Errorf("%s: ReadOnly = %v", s.name, c.ReadOnly)
				}
			}
			if cmds["set"] == nil || cmds["get"].FirstKeyPos != 1 {
				t.Errorf("native entries lost: set=%v get=%v", cmds["set"], cmds["get"])
			}
			n, err := rdb.Do(ctx, "COMMAND", "COUNT").Int()
			if err != nil || n != len(cmds) {
				t.Errorf("COMMAND COUNT = %d, %v; COMMAND lists %d", n, err, len(cmds))
			}
			list, err := rdb.CommandList(ctx, &redis.FilterBy{Pattern: "ex*"}).Result()
			if err != nil || !containsAll(list, exNamesForTest()[:10]) {
				t.Errorf("COMMAND LIST FILTERBY PATTERN ex* = %v, %v", list, err)
			}
			keys, err := rdb.CommandGetKeys(ctx, "EXCAS", "the-key", "v", "3").Result()
			if err != nil || len(keys) != 1 || keys[0] != "the-key" {
				t.Errorf("COMMAND GETKEYS EXCAS = %v, %v", keys, err)
			}
			kf, err := rdb.CommandGetKeysAndFlags(ctx, "EXGET", "kk").Result()
			if err != nil || len(kf) != 1 || kf[0].Key != "kk" || strings.Join(kf[0].Flags, ",") != "RO,access" {
				t.Errorf("COMMAND GETKEYSANDFLAGS EXGET = %+v, %v", kf, err)
			}
			info, err := rdb.Do(ctx, "COMMAND", "INFO", "exset", "nosuch").Slice()
			if err != nil || len(info) != 2 || info[1] != nil {
				t.Fatalf("COMMAND INFO exset nosuch = %v, %v", info, err)
			}
			if e, ok := info[0].([]any); !ok || e[0] != "exset" || e[3] != int64(1) {
				t.Errorf("COMMAND INFO exset = %v", info[0])
			}
			docs, err := rdb.Do(ctx, "COMMAND", "DOCS", "excas").Result()
			if err != nil || !strings.Contains(fmt.Sprint(docs), "excas") || !strings.Contains(fmt.Sprint(docs), "if its version matches") {
				t.Errorf("COMMAND DOCS excas = %v, %v", docs, err)
			}
		})
	}
}

// TestProxyRedisWithoutFunctions: a Redis that does not know FUNCTION (6.x,
// simulated by renaming it away) gets EVALSHA once the load has found out.
func TestProxyRedisWithoutFunctions(t *testing.T) {
	x := startE2E(t, e2eConfig{redisOpts: []redistest.Option{
		redistest.WithConfig("rename-command", "FUNCTION", ""),
		redistest.WithConfig("rename-command", "FCALL", ""),
	}})
	if x.ext.Mode() != "evalsha" {
		t.Fatalf("mode %s, want evalsha", x.ext.Mode())
	}
	ctx := ctxT(t)
	for _, proto := range []int{2, 3} {
		rdb := x.Client(t, proto)
		key := "k" + strconv.Itoa(proto)
		if err := rdb.Do(ctx, "EXSET", key, "v").Err(); err != nil {
			t.Fatalf("EXSET: %v", err)
		}
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if got, err := rdb.Do(ctx, "EXGET", key).Slice(); err != nil || fmt.Sprint(got) != "[v 1]" {
			t.Errorf("EXGET after SCRIPT FLUSH = %v, %v", got, err)
		}
	}
}

func exNamesForTest() []string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.name
	}
	return names
}

func containsAll(list, want []string) bool {
	have := map[string]bool{}
	for _, s := range list {
		have[s] = true
	}
	for _, s := range want {
		if !have[s] {
			return false
		}
	}
	return true
}

// TestProxyDiscoversMissingFunctions: nothing was loaded before the first
// command, so it goes out as FCALL; Redis answers it as an unknown command,
// and the command must still succeed (sent again as EVALSHA).
func TestProxyDiscoversMissingFunctions(t *testing.T) {
	x := startE2E(t, e2eConfig{noPreload: true, redisOpts: []redistest.Option{
		redistest.WithConfig("rename-command", "FUNCTION", ""),
		redistest.WithConfig("rename-command", "FCALL", ""),
	}})
	ctx := ctxT(t)
	rdb := x.Client(t, 2)
	if err := rdb.Do(ctx, "EXSET", "k", "v").Err(); err != nil {
		t.Fatalf("first EXSET: %v", err)
	}
	if x.ext.Mode() != "evalsha" {
		t.Errorf("mode %s, want evalsha", x.ext.Mode())
	}
	if got, err := rdb.Do(ctx, "EXGET", "k").Slice(); err != nil || fmt.Sprint(got) != "[v 1]" {
		t.Errorf("EXGET = %v, %v", got, err)
	}
}

// cli runs redis-cli against addr and returns its output (non-tty form).
func cli(t *testing.T, addr string, args ...string) string {
	t.Helper()
	out, err := proxytest.RedisCLI(t, addr, nil, args...)
	if err != nil {
		t.Fatalf("redis-cli %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(out)
}

// TestRedisCLI: the README's recipes — through the proxy, and the library
// loaded by hand with no proxy at all.
func TestRedisCLI(t *testing.T) {
	t.Run("through the proxy", func(t *testing.T) {
		runRedisCLI(t, startE2E(t, e2eConfig{}).target())
	})
	t.Run("without the proxy", func(t *testing.T) {
		srv := redistest.Start(t)
		if got := cli(t, srv.Addr, "FUNCTION", "LOAD", Library()); got != LibraryName() {
			t.Fatalf("FUNCTION LOAD = %q, want %q", got, LibraryName())
		}
		v := Version()
		for _, s := range []struct {
			args []string
			want string
		}{
			{[]string{"FCALL", "exset_" + v, "1", "mykey", "hello"}, "OK"},
			{[]string{"FCALL", "exget_" + v, "1", "mykey"}, "hello\n1"},
			{[]string{"FCALL", "excas_" + v, "1", "mykey", "bye", "1"}, "OK\n\n2"},
			{[]string{"FCALL_RO", "exget_" + v, "1", "mykey"}, "bye\n2"},
			{[]string{"FCALL", "extype_" + v, "1", "mykey"}, "exstrtype"},
		} {
			if got := cli(t, srv.Addr, s.args...); got != s.want {
				t.Errorf("redis-cli %v = %q, want %q", s.args, got, s.want)
			}
		}
	})
}

func runRedisCLI(t *testing.T, x *target) {
	for _, s := range []struct{ cmd, want string }{
		{"EXSET stock:42 10", "OK"},
		{"EXGET stock:42", "10\n1"},
		{"EXCAS stock:42 9 1", "OK\n\n2"},
		{"EXCAS stock:42 8 1", "CAS_FAILED\n9\n2"},
		{"TYPE stock:42", "exstrtype"},
	} {
		if got := cli(t, x.addr, strings.Fields(s.cmd)...); got != s.want {
			t.Errorf("redis-cli %s = %q, want %q", s.cmd, got, s.want)
		}
	}
}

// TestProxyRetryMinimal is the smallest case of several retries in flight:
// one write carrying EXSET, FUNCTION FLUSH, EXSET, EXGET, PING. Both ex
// commands after the flush fail at Redis and must be resent, in order,
// with PING's reply held behind them.
func TestProxyRetryMinimal(t *testing.T) {
	runRetryMinimal(t, startE2E(t, e2eConfig{}).target())
}

func runRetryMinimal(t *testing.T, x *target) {
	for _, proto := range []int{2, 3} {
		rc := x.raw(t, proto)
		key := "min" + strconv.Itoa(proto)
		cmds := [][]string{{"EXSET", key, "1"}, {"FUNCTION", "FLUSH"}, {"EXSET", key, "2"}, {"EXGET", key}, {"PING"}}
		var b []byte
		for _, c := range cmds {
			b = append(b, "*"+strconv.Itoa(len(c))+"\r\n"+bulkStrings(c...)...)
		}
		rc.Write(b)
		want := []string{"+OK\r\n", "+OK\r\n", "+OK\r\n", "*2\r\n$1\r\n2\r\n:2\r\n", "+PONG\r\n"}
		for i, w := range want {
			if got := rc.Read(); got != w {
				t.Errorf("RESP%d reply %d to %v = %q, want %q", proto, i, cmds[i], got, w)
			}
		}
	}
}

// TestProxyFlushInsideTransaction pins down the documented limitation: a
// flush between MULTI and EXEC fails that EXEC's ex elements with Redis's
// error (they cannot be resent outside the transaction), and the next
// attempt — a transaction too — succeeds.
func TestProxyFlushInsideTransaction(t *testing.T) {
	runFlushInsideTransaction(t, startE2E(t, e2eConfig{}).target())
}

func runFlushInsideTransaction(t *testing.T, x *target) {
	for _, proto := range []int{2, 3} {
		rc := x.raw(t, proto)
		key := "{tx" + strconv.Itoa(proto) + "}" // the retried transaction's key is in its slot
		nilReply := map[int]string{2: "$-1\r\n", 3: "_\r\n"}[proto]
		if got := rc.Do("MULTI"); got != "+OK\r\n" {
			t.Fatalf("MULTI: %q", got)
		}
		if got := rc.Do("EXSET", key, "v"); got != "+QUEUED\r\n" {
			t.Fatalf("EXSET in MULTI: %q", got)
		}
		x.flushLibrary(t)
		if got := rc.Do("EXEC"); got != "*1\r\n-ERR Function not found\r\n" {
			t.Errorf("RESP%d EXEC after a flush = %q", proto, got)
		}
		// The proxy reloaded the library before forwarding that EXEC's
		// reply, so a retried transaction succeeds at once.
		for _, step := range [][2]string{{"MULTI", "+OK\r\n"}, {"EXSET " + key + "x v", "+QUEUED\r\n"}, {"EXEC", "*1\r\n+OK\r\n"}} {
			if got := rc.Do(strings.Fields(step[0])...); got != step[1] {
				t.Errorf("RESP%d retried transaction: %s = %q, want %q", proto, step[0], got, step[1])
			}
		}
		if got := rc.Do("EXGET", key); got != nilReply {
			t.Errorf("RESP%d EXGET after the failed EXEC = %q, want %q", proto, got, nilReply)
		}
		if got := rc.Do("EXSET", key, "w"); got != "+OK\r\n" {
			t.Errorf("RESP%d EXSET after recovery = %q", proto, got)
		}
	}
}

// TestProxyRedisRestart: Redis restarts empty (no persistence), so the
// library is gone; the first ex command on a new connection reloads it
// through the loader's own connection, which must get past its dead one.
func TestProxyRedisRestart(t *testing.T) {
	x := startE2E(t, e2eConfig{})
	ctx := ctxT(t)
	for _, proto := range []int{2, 3} {
		rdb := x.Client(t, proto)
		if err := rdb.Do(ctx, "EXSET", "k", "v1").Err(); err != nil {
			t.Fatalf("EXSET before restart: %v", err)
		}
		x.Redis.Restart()
		rdb = x.Client(t, proto) // the old connection died with Redis
		if got, err := rdb.Do(ctx, "EXSET", "k", "v2", "WITHVERSION").Int64(); err != nil || got != 1 {
			t.Errorf("RESP%d EXSET after restart = %d, %v; want version 1 (the data went with the restart)", proto, got, err)
		}
	}
}

const maxInt64 = "9223372036854775807"

// TestExecElementsGoThroughReplyHandlers: inside MULTI, the replies of
// rewritten commands arrive as elements of EXEC's reply; they must come
// out exactly as they would outside MULTI. exstring's Lua can return
// integers beyond 2^53 only as strings, and its ReplyHandler turns them
// back into the module's integer replies — in EXEC's elements too.
func TestExecElementsGoThroughReplyHandlers(t *testing.T) {
	runExecElements(t, startE2E(t, e2eConfig{}).target())
}

func runExecElements(t *testing.T, x *target) {
	for _, proto := range []string{"2", "3"} {
		c := x.raw(t, 2)
		if got := c.Do("HELLO", proto); got[0] != '%' && got[0] != '*' {
			t.Fatalf("HELLO %s: %q", proto, got)
		}
		key := "{big" + proto + "}" // one slot with the counter: one node of a cluster
		steps := [][2]string{
			{"MULTI", "+OK\r\n"},
			{"EXSET " + key + " v ABS " + maxInt64 + " WITHVERSION", "+QUEUED\r\n"},
			{"EXINCRBY " + key + "n 0 DEF " + maxInt64, "+QUEUED\r\n"},
			{"EXGET " + key, "+QUEUED\r\n"},
			{"EXEC", "*3\r\n:" + maxInt64 + "\r\n:" + maxInt64 + "\r\n*2\r\n$1\r\nv\r\n:" + maxInt64 + "\r\n"},
		}
		for _, s := range steps {
			if got := c.Do(strings.Fields(s[0])...); got != s[1] {
				t.Errorf("RESP%s %s = %q, want %q", proto, s[0], got, s[1])
			}
		}
	}
}

// TestLongReplyIntegersExact: a reply longer than what Check sees (a long
// value before the version) is buffered and fixed whole.
func TestLongReplyIntegersExact(t *testing.T) {
	runLongReplyIntegers(t, startE2E(t, e2eConfig{}).target())
}

func runLongReplyIntegers(t *testing.T, x *target) {
	c := x.raw(t, 2)
	val := strings.Repeat("x", 1000)
	if got := c.Do("EXSET", "k", val, "ABS", maxInt64); got != "+OK\r\n" {
		t.Fatalf("EXSET = %q", got)
	}
	if got, want := c.Do("EXGET", "k"), "*2\r\n$1000\r\n"+val+"\r\n:"+maxInt64+"\r\n"; got != want {
		t.Fatalf("EXGET of a long value = %q, want %q", got, want)
	}
}

// TestProxySubscribedContext: a RESP2 client in subscribed mode may run
// only (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PING, QUIT and RESET. Redis
// refuses anything else by name; with the module loaded it names the ex
// command the client sent, never the FCALL or EVALSHA the proxy runs. The
// expected text is Redis's own refusal of GET in the same state, with the
// name changed. In RESP3 there is no such restriction: the commands run.
func TestProxySubscribedContext(t *testing.T) {
	for _, mode := range []struct {
		name string
		cfg  e2eConfig
	}{{"fcall", e2eConfig{}}, {"evalsha", e2eConfig{ext: Config{Scripts: true}}}} {
		t.Run(mode.name, func(t *testing.T) {
			runSubscribedContext(t, startE2E(t, mode.cfg).target())
		})
	}
}

func runSubscribedContext(t *testing.T, x *target) {
	d := x.direct(t, "k")
	d.Do("SUBSCRIBE", "ch")
	refusal := d.Do("GET", "k")
	if !strings.HasPrefix(refusal, "-ERR Can't execute 'get': ") {
		t.Fatalf("Redis's own refusal: %q", refusal)
	}
	want := func(name string) string { return strings.Replace(refusal, "'get'", "'"+name+"'", 1) }

	t.Run("RESP2", func(t *testing.T) {
		rc := x.raw(t, 2)
		if got := rc.Do("EXSET", "k", "v"); got != "+OK\r\n" {
			t.Fatalf("EXSET before subscribing: %q", got)
		}
		if got := rc.Do("SUBSCRIBE", "ch"); got != "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n" {
			t.Fatalf("SUBSCRIBE: %q", got)
		}
		for _, cmd := range [][]string{
			{"EXGET", "k"}, {"EXSET", "k", "w"}, {"exincrby", "n", "1"}, {"CAS", "k", "a", "b"},
			{"TYPE", "k"}, {"EXGET"},
		} {
			if got := rc.Do(cmd...); got != want(strings.ToLower(cmd[0])) {
				t.Errorf("%v in subscribed mode:\n got %q\nwant %q", cmd, got, want(strings.ToLower(cmd[0])))
			}
		}
		if got := rc.Do("UNSUBSCRIBE"); got != "*3\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n:0\r\n" {
			t.Fatalf("UNSUBSCRIBE: %q", got)
		}
		// Refused means not run: the value is still v.
		if got := rc.Do("EXGET", "k"); got != "*2\r\n$1\r\nv\r\n:1\r\n" {
			t.Fatalf("EXGET after unsubscribing: %q", got)
		}
	})
	t.Run("RESP3", func(t *testing.T) {
		rc := x.raw(t, 3)
		if got := rc.Do("SUBSCRIBE", "ch3"); got != ">3\r\n$9\r\nsubscribe\r\n$3\r\nch3\r\n:1\r\n" {
			t.Fatalf("SUBSCRIBE: %q", got)
		}
		for _, s := range []struct {
			cmd  []string
			want string
		}{
			{[]string{"EXSET", "k3", "v"}, "+OK\r\n"},
			{[]string{"EXGET", "k3"}, "*2\r\n$1\r\nv\r\n:1\r\n"},
			{[]string{"TYPE", "k3"}, "+exstrtype\r\n"},
			{[]string{"EXGET"}, "-ERR wrong number of arguments for 'exget' command\r\n"},
		} {
			if got := rc.Do(s.cmd...); got != s.want {
				t.Errorf("RESP3 subscribed %v = %q, want %q", s.cmd, got, s.want)
			}
		}
	})
}

// TestProxyLenientLineEnds: Redis ends a multibulk header line at its
// '\r' and skips the byte after it unseen, so "*2\r\n$5\r\xeaEXGET..." is an
// EXGET to Redis (with the module) and must be one through the proxy too.
func TestProxyLenientLineEnds(t *testing.T) {
	runLenientLineEnds(t, startE2E(t, e2eConfig{}).target())
}

func runLenientLineEnds(t *testing.T, x *target) {
	rc := x.raw(t, 2)
	if got := rc.Do("EXSET", "fz:e", "v"); got != "+OK\r\n" {
		t.Fatalf("EXSET: %q", got)
	}
	const want = "*2\r\n$1\r\nv\r\n:1\r\n"
	for _, in := range []string{
		"*2\r\n$5\r\xeaEXGET\r\n$4\r\nfz:e\r\n",
		"*2\r\xea$5\r\nEXGET\r\n$4\r\nfz:e\r\n",
		"*2\r\r$5\r\rEXGET\r\r$4\r\rfz:e\r\r",
		"*2\r\n$5\r\nEXGETxy$4\r\nfz:e\r\n",
	} {
		c := x.raw(t, 2)
		c.WriteString(in)
		got := c.Read()
		if got == want {
			continue
		}
		t.Errorf("%q = %q, want %q", in, got, want)
	}
}
