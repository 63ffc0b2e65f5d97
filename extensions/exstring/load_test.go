package exstring

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
)

func newExt(tb testing.TB, cfg Config, deps Deps) *Extension {
	tb.Helper()
	e, err := New(cfg, deps)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { _ = e.Close() })
	return e
}

func ctxT(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), proxytest.IOTimeout)
	tb.Cleanup(cancel)
	return ctx
}

// dialAs opens a raw connection to Redis authenticated as user.
func dialAs(tb testing.TB, addr, user, password string) *proxytest.Conn {
	tb.Helper()
	rc := proxytest.Dial(tb, addr)
	if got := rc.Do("AUTH", user, password); got != "+OK\r\n" {
		tb.Fatalf("AUTH: %q", got)
	}
	return rc
}

// sendRewritten sends a command the way the proxy core does after a
// Rewrite: prefix (prefixArgs bulk strings) in place of the name, then the
// client's arguments args[1:]; it returns the raw reply.
func sendRewritten(rc *proxytest.Conn, prefix []byte, prefixArgs int, args ...string) string {
	rc.TB.Helper()
	b := append([]byte{'*'}, strconv.Itoa(prefixArgs+len(args)-1)...)
	b = append(b, "\r\n"...)
	b = append(b, prefix...)
	b = append(b, bulkStrings(args[1:]...)...)
	rc.Write(b)
	return rc.Read()
}

// rewriteAndSend runs args through the extension and sends the result.
func rewriteAndSend(tb testing.TB, e *Extension, rc *proxytest.Conn, args ...string) (string, proxy.ReplyHandler) {
	tb.Helper()
	rw, ok := e.Rewrite(argv(args...), len(args), &proxy.SessionInfo{})
	if !ok {
		tb.Fatalf("%v not rewritten", args)
	}
	return sendRewritten(rc, rw.Prefix, rw.PrefixArgs, args...), rw.Reply
}

func TestLoadFunctions(t *testing.T) {
	srv := redistest.Start(t)
	e := newExt(t, Config{}, Deps{Upstream: proxy.Upstream{Addr: srv.Addr}})
	ctx := ctxT(t)
	if err := e.Load(ctx); err != nil {
		t.Fatalf("Load: %v", err)
	}
	// A second load finds the library already there: fine.
	if err := e.Load(ctx); err != nil {
		t.Fatalf("second Load: %v", err)
	}
	libs, err := proxytest.NewGoRedis(t, srv.Addr, 2).FunctionList(ctx, redis.FunctionListQuery{LibraryNamePattern: "exstring_*"}).Result()
	if err != nil {
		t.Fatalf("FUNCTION LIST: %v", err)
	}
	if len(libs) != 1 || libs[0].Name != "exstring_"+Version() {
		t.Fatalf("libraries %+v, want exactly exstring_%s", libs, Version())
	}
	if e.Mode() != "fcall" {
		t.Errorf("mode %s, want fcall", e.Mode())
	}
	rc := proxytest.Dial(t, srv.Addr)
	if got, _ := rewriteAndSend(t, e, rc, "EXSET", "k", "v"); got != "+OK\r\n" {
		t.Errorf("EXSET through the rewrite: %q", got)
	}
	if got, _ := rewriteAndSend(t, e, rc, "exget", "k"); got != "*2\r\n$1\r\nv\r\n:1\r\n" {
		t.Errorf("EXGET through the rewrite: %q", got)
	}
	if got, _ := rewriteAndSend(t, e, rc, "TYPE", "k"); got != "+exstrtype\r\n" {
		t.Errorf("TYPE of a versioned string: %q", got)
	}
	if got := rc.Do("SET", "plain", "x"); got != "+OK\r\n" {
		t.Fatalf("SET: %q", got)
	}
	if got, _ := rewriteAndSend(t, e, rc, "type", "plain"); got != "+string\r\n" {
		t.Errorf("TYPE of a plain string: %q", got)
	}
}

// TestRecoverAfterFlush walks through what the core does on a Retry: the
// reply to the rewritten command says the library is gone, Check asks for a
// retry, Reload puts it back, and the resent command succeeds.
func TestRecoverAfterFlush(t *testing.T) {
	for _, tc := range []struct {
		name    string
		scripts bool
		flush   []string
		missing string
	}{
		{"function flush", false, []string{"FUNCTION", "FLUSH"}, "-ERR Function not found\r\n"},
		{"script flush", true, []string{"SCRIPT", "FLUSH"}, "-NOSCRIPT No matching script. Please use EVAL.\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			e := newExt(t, Config{Scripts: tc.scripts}, Deps{Upstream: proxy.Upstream{Addr: srv.Addr}})
			ctx := ctxT(t)
			if err := e.Load(ctx); err != nil {
				t.Fatalf("Load: %v", err)
			}
			rc := proxytest.Dial(t, srv.Addr)
			if got, _ := rewriteAndSend(t, e, rc, "EXSET", "k", "v1"); got != "+OK\r\n" {
				t.Fatalf("EXSET: %q", got)
			}
			if got := rc.Do(tc.flush...); got != "+OK\r\n" {
				t.Fatalf("%v: %q", tc.flush, got)
			}
			got, h := rewriteAndSend(t, e, rc, "EXSET", "k", "v2")
			if got != tc.missing {
				t.Fatalf("EXSET after flush: %q, want %q", got, tc.missing)
			}
			if act, _ := h.Check([]byte(got), 2); act != proxy.Retry {
				t.Fatalf("Check(%q) = %v, want Retry", got, act)
			}
			if err := h.Reload(ctx); err != nil {
				t.Fatalf("Reload: %v", err)
			}
			if got, _ := rewriteAndSend(t, e, rc, "EXSET", "k", "v2"); got != "+OK\r\n" {
				t.Fatalf("EXSET after reload: %q", got)
			}
			if got, _ := rewriteAndSend(t, e, rc, "EXGET", "k"); got != "*2\r\n$2\r\nv2\r\n:2\r\n" {
				t.Errorf("EXGET: %q", got)
			}
		})
	}
}

func TestScriptsMode(t *testing.T) {
	srv := redistest.Start(t)
	e := newExt(t, Config{Scripts: true}, Deps{Upstream: proxy.Upstream{Addr: srv.Addr}})
	ctx := ctxT(t)
	if err := e.Load(ctx); err != nil {
		t.Fatalf("Load: %v", err)
	}
	var shas []string
	for _, c := range e.cmds {
		if c.sha != "" {
			shas = append(shas, c.sha)
		}
	}
	rdb := proxytest.NewGoRedis(t, srv.Addr, 2)
	exists, err := rdb.ScriptExists(ctx, shas...).Result()
	if err != nil {
		t.Fatalf("SCRIPT EXISTS: %v", err)
	}
	for i, ok := range exists {
		if !ok {
			t.Errorf("script %s not loaded", shas[i])
		}
	}
	if n, err := rdb.Do(ctx, "FUNCTION", "LIST").Slice(); err != nil || len(n) != 0 {
		t.Errorf("FUNCTION LIST = %v, %v: scripts mode must not load the library", n, err)
	}
	rc := proxytest.Dial(t, srv.Addr)
	if got, _ := rewriteAndSend(t, e, rc, "EXSET", "k", "v"); got != "+OK\r\n" {
		t.Errorf("EXSET via EVALSHA: %q", got)
	}
	if got, _ := rewriteAndSend(t, e, rc, "EXGET", "k"); got != "*2\r\n$1\r\nv\r\n:1\r\n" {
		t.Errorf("EXGET via EVALSHA: %q", got)
	}
}

// TestRedisWithoutFunctions simulates Redis 6 by renaming FUNCTION and FCALL
// away: the server then answers them as unknown commands, as 6.x does.
func TestRedisWithoutFunctions(t *testing.T) {
	srv := redistest.Start(t,
		redistest.WithConfig("rename-command", "FUNCTION", ""),
		redistest.WithConfig("rename-command", "FCALL", ""))
	ctx := ctxT(t)

	t.Run("load switches", func(t *testing.T) {
		e := newExt(t, Config{}, Deps{Upstream: proxy.Upstream{Addr: srv.Addr}})
		if err := e.Load(ctx); err != nil {
			t.Fatalf("Load: %v", err)
		}
		if e.Mode() != "evalsha" {
			t.Fatalf("mode %s after loading into a server without FUNCTION, want evalsha", e.Mode())
		}
		rc := proxytest.Dial(t, srv.Addr)
		if got, _ := rewriteAndSend(t, e, rc, "EXSET", "k", "v"); got != "+OK\r\n" {
			t.Errorf("EXSET: %q", got)
		}
	})
	t.Run("FCALL reply switches", func(t *testing.T) {
		// A command rewritten before any load goes out as FCALL.
		e := newExt(t, Config{}, Deps{Upstream: proxy.Upstream{Addr: srv.Addr}})
		rc := proxytest.Dial(t, srv.Addr)
		got, h := rewriteAndSend(t, e, rc, "EXSET", "k2", "v")
		if !strings.HasPrefix(got, "-ERR unknown command 'FCALL'") {
			t.Fatalf("FCALL on a server without it: %q", got)
		}
		if act, _ := h.Check([]byte(got), 2); act != proxy.Retry {
			t.Fatalf("Check = %v, want Retry", act)
		}
		if err := h.Reload(ctx); err != nil {
			t.Fatalf("Reload: %v", err)
		}
		if got, _ := rewriteAndSend(t, e, rc, "EXSET", "k2", "v"); got != "+OK\r\n" {
			t.Errorf("resent EXSET: %q", got)
		}
	})
}

func TestLoadOverUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "redis.sock")
	srv := redistest.Start(t, redistest.WithConfig("unixsocket", sock), redistest.WithConfig("unixsocketperm", "700"))
	e := newExt(t, Config{}, Deps{Upstream: proxy.Upstream{Network: "unix", Addr: sock}})
	if err := e.Load(ctxT(t)); err != nil {
		t.Fatalf("Load over %s: %v", sock, err)
	}
	libs, err := proxytest.NewGoRedis(t, srv.Addr, 2).FunctionList(ctxT(t), redis.FunctionListQuery{}).Result()
	if err != nil || len(libs) != 1 || libs[0].Name != LibraryName() {
		t.Fatalf("FUNCTION LIST = %+v, %v", libs, err)
	}
}

func TestLoadWithPasswordAndACLUser(t *testing.T) {
	srv := redistest.Start(t, redistest.WithConfig("requirepass", "s3cret"))
	ctx := ctxT(t)
	admin := proxytest.NewGoRedis(t, srv.Addr, 2, func(o *redis.Options) { o.Password = "s3cret" })
	if err := admin.Do(ctx, "ACL", "SETUSER", "loader", "on", ">lpw", "~*", "+@all").Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	tests := []struct {
		name     string
		up       proxy.Upstream
		wantErr  string
		database int
	}{
		{"password", proxy.Upstream{Addr: srv.Addr, Password: "s3cret", DB: 3}, "", 3},
		{"acl user", proxy.Upstream{Addr: srv.Addr, Username: "loader", Password: "lpw"}, "", 0},
		{"no password", proxy.Upstream{Addr: srv.Addr}, "NOAUTH", 0},
		{"wrong password", proxy.Upstream{Addr: srv.Addr, Password: "nope"}, "WRONGPASS", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_ = admin.FunctionFlush(ctx).Err()
			e := newExt(t, Config{}, Deps{Upstream: tt.up})
			err := e.Load(ctx)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if n, err := admin.FunctionList(ctx, redis.FunctionListQuery{}).Result(); err != nil || len(n) != 1 {
				t.Fatalf("FUNCTION LIST = %v, %v", n, err)
			}
		})
	}
}

func TestACLUserWithoutFCALL(t *testing.T) {
	srv := redistest.Start(t)
	ctx := ctxT(t)
	admin := proxytest.NewGoRedis(t, srv.Addr, 2)
	for _, u := range [][]string{
		{"nofcall", "on", ">pw", "~*", "+@all", "-fcall", "-evalsha"},
		{"somekeys", "on", ">pw", "~a*", "+@all"},
		{"nohash", "on", ">pw", "~*", "+@all", "-@hash"},
	} {
		if err := admin.Do(ctx, append([]any{"ACL", "SETUSER"}, toAny(u)...)...).Err(); err != nil {
			t.Fatalf("ACL SETUSER %v: %v", u, err)
		}
	}
	for _, scripts := range []bool{false, true} {
		e := newExt(t, Config{Scripts: scripts}, Deps{Upstream: proxy.Upstream{Addr: srv.Addr}})
		if err := e.Load(ctx); err != nil {
			t.Fatalf("Load: %v", err)
		}
		call := map[bool]string{false: "FCALL", true: "EVALSHA"}[scripts]
		t.Run(call, func(t *testing.T) {
			rc := dialAs(t, srv.Addr, "nofcall", "pw")
			got, h := rewriteAndSend(t, e, rc, "EXSET", "k", "v")
			want := "-NOPERM this user has no permissions to run the '" + strings.ToLower(call) + "' command\r\n"
			if got != want {
				t.Fatalf("Redis replied %q, want %q", got, want)
			}
			act, repl := h.Check([]byte(got), 2)
			wantRepl := "-NOPERM this user has no permissions to run the 'exset' command (exproxy implements it with " +
				call + ": grant +" + strings.ToLower(call) + ", or +@scripting)\r\n"
			if act != proxy.Replace || string(repl) != wantRepl {
				t.Errorf("Check = %v %q, want Replace %q", act, repl, wantRepl)
			}

			// Key permissions are the client's business: passed through.
			rc = dialAs(t, srv.Addr, "somekeys", "pw")
			got, h = rewriteAndSend(t, e, rc, "EXSET", "k", "v")
			if got != "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n" {
				t.Fatalf("key outside the user's patterns: %q", got)
			}
			if act, _ := h.Check([]byte(got), 2); act != proxy.Forward {
				t.Errorf("Check(key NOPERM) = %v, want Forward", act)
			}
			if got, _ := rewriteAndSend(t, e, rc, "EXSET", "a1", "v"); got != "+OK\r\n" {
				t.Errorf("EXSET on a permitted key: %q", got)
			}

			// Allowed to call the Lua, not the commands it runs.
			rc = dialAs(t, srv.Addr, "nohash", "pw")
			got, h = rewriteAndSend(t, e, rc, "EXSET", "k", "v")
			if !strings.HasPrefix(got, "-ERR The user executing the script can't run this command or subcommand") {
				t.Fatalf("user without hash commands: %q", got)
			}
			if act, repl := h.Check([]byte(got), 2); act != proxy.Replace || !strings.HasPrefix(string(repl), "-NOPERM this user has no permissions to run the 'exset' command (exproxy implements it in Lua") {
				t.Errorf("Check(%q) = %v %q", got, act, repl)
			}
		})
	}
}

func toAny(ss []string) []any {
	a := make([]any, len(ss))
	for i, s := range ss {
		a[i] = s
	}
	return a
}

// TestReloadCoalesces holds the first load until 49 more callers have
// queued: they must all be served by one second load, which started after
// they asked.
func TestReloadCoalesces(t *testing.T) {
	srv := redistest.Start(t)
	e := newExt(t, Config{}, Deps{Upstream: proxy.Upstream{Addr: srv.Addr}})
	ctx := ctxT(t)
	release := make(chan struct{})
	first := true
	e.loader.mu.Lock()
	e.loader.beforeLoad = func() {
		if first {
			first = false
			<-release
		}
	}
	e.loader.mu.Unlock()

	const callers = 50
	errs := make(chan error, callers)
	go func() { errs <- e.Reload(ctx) }()
	for started := false; !started; { // wait until the first load runs
		e.loader.mu.Lock()
		started = e.loader.loads == 1
		e.loader.mu.Unlock()
		runtime.Gosched()
	}
	var wg sync.WaitGroup
	for i := 1; i < callers; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- e.Reload(ctx) }()
	}
	for queued := 0; queued < callers-1; {
		e.loader.mu.Lock()
		queued = e.loader.queued
		e.loader.mu.Unlock()
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	for i := 0; i < callers; i++ {
		if err := <-errs; err != nil {
			t.Errorf("Reload: %v", err)
		}
	}
	e.loader.mu.Lock()
	loads := e.loader.loads
	e.loader.mu.Unlock()
	if loads != 2 {
		t.Errorf("%d callers caused %d loads, want 2", callers, loads)
	}
}

func TestReloadWhileRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	e := newExt(t, Config{}, Deps{Upstream: proxy.Upstream{Addr: srv.Addr}, DialTimeout: time.Second})
	ctx := ctxT(t)
	srv.Stop()
	err := e.Reload(ctx)
	if err == nil {
		t.Fatal("Reload with Redis down succeeded")
	}
	// Within the cooldown the failure is answered without dialling again.
	e.loader.mu.Lock()
	loads := e.loader.loads
	e.loader.mu.Unlock()
	err2 := e.Reload(ctx)
	e.loader.mu.Lock()
	after := e.loader.loads
	failedAt := e.loader.failedAt
	e.loader.mu.Unlock()
	if time.Since(failedAt) < failureCooldown && (after != loads || !errors.Is(err2, err) && err2.Error() != err.Error()) {
		t.Errorf("second Reload within the cooldown loaded again (%d -> %d) or changed error: %v", loads, after, err2)
	}
	// Load ignores the cooldown and succeeds once Redis is back. The
	// client may keep answering its last dial error for a moment after
	// Redis is back (go-redis redials in the background), so try until ctx
	// ends rather than assert about timing.
	srv.StartAgain()
	for {
		err := e.Load(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("Load after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := e.Reload(ctx); err != nil {
		t.Fatalf("Reload after a successful load: %v", err)
	}
}

// TestStartStopsOnClose: Start's retry loop against a Redis that is down
// must end when the extension is closed, even though ctx never ends.
func TestStartStopsOnClose(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	e, err := New(Config{}, Deps{Upstream: proxy.Upstream{Addr: srv.Addr}, DialTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	e.startDone = done
	e.Start(context.Background())
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	<-done // a leak shows as this test hanging
}

func TestStartLoadsInBackground(t *testing.T) {
	srv := redistest.Start(t)
	e := newExt(t, Config{}, Deps{Upstream: proxy.Upstream{Addr: srv.Addr}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.Start(ctx)
	rdb := proxytest.NewGoRedis(t, srv.Addr, 2)
	waitCtx := ctxT(t)
	for {
		libs, err := rdb.FunctionList(waitCtx, redis.FunctionListQuery{}).Result()
		if err != nil {
			t.Fatalf("FUNCTION LIST: %v", err)
		}
		if len(libs) == 1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}
