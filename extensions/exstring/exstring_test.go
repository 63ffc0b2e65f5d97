package exstring

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/exproxy/exproxy/proxy"
)

// newOffline builds an extension whose upstream is never dialled.
func newOffline(tb testing.TB, scripts bool) *Extension {
	tb.Helper()
	e, err := New(Config{Scripts: scripts}, Deps{Upstream: proxy.Upstream{Addr: "127.0.0.1:1"}})
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { _ = e.Close() })
	return e
}

func argv(ss ...string) [][]byte {
	a := make([][]byte, len(ss))
	for i, s := range ss {
		a[i] = []byte(s)
	}
	return a
}

func bulkStrings(ss ...string) string {
	var b strings.Builder
	for _, s := range ss {
		b.WriteString("$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n")
	}
	return b.String()
}

func TestRewritePrefixes(t *testing.T) {
	fcall, evalsha := newOffline(t, false), newOffline(t, true)
	tests := []struct {
		name    string
		ext     *Extension
		args    []string
		argc    int // 0: len(args)
		ok      bool
		want    string // expected prefix
		wantArg int
	}{
		{"exset", fcall, []string{"EXSET", "k", "v"}, 0, true, bulkStrings("FCALL", FunctionName("exset"), "1"), 3},
		{"lower case", fcall, []string{"exset", "k", "v"}, 0, true, bulkStrings("FCALL", FunctionName("exset"), "1"), 3},
		{"mixed case", fcall, []string{"ExIncrByFloat", "k", "1.5"}, 0, true, bulkStrings("FCALL", FunctionName("exincrbyfloat"), "1"), 3},
		{"no key: numkeys 0", fcall, []string{"EXGET"}, 0, true, bulkStrings("FCALL", FunctionName("exget"), "0"), 3},
		{"cas", fcall, []string{"CAS", "k", "a", "b"}, 0, true, bulkStrings("FCALL", FunctionName("cas"), "1"), 3},
		{"cad", fcall, []string{"cad", "k", "a"}, 0, true, bulkStrings("FCALL", FunctionName("cad"), "1"), 3},
		{"type one key", fcall, []string{"TYPE", "k"}, 0, true, bulkStrings("FCALL", FunctionName("extype"), "1"), 3},
		{"type no key passes", fcall, []string{"TYPE"}, 0, false, "", 0},
		{"type two keys passes", fcall, []string{"TYPE", "a", "b"}, 0, false, "", 0},
		{"not ours", fcall, []string{"GET", "k"}, 0, false, "", 0},
		{"long name not ours", fcall, []string{"exincrbyfloatxxxxxxxxxx", "k"}, 0, false, "", 0},
		{"large command: only argc counts", fcall, []string{"EXSET"}, 3, true, bulkStrings("FCALL", FunctionName("exset"), "1"), 3},
		{"evalsha", evalsha, []string{"EXCAS", "k", "v", "1"}, 0, true, bulkStrings("EVALSHA", evalsha.byName["excas"].sha, "1"), 3},
		{"evalsha no key", evalsha, []string{"excad"}, 0, true, bulkStrings("EVALSHA", evalsha.byName["excad"].sha, "0"), 3},
		{"evalsha type", evalsha, []string{"type", "k"}, 0, true, bulkStrings("EVALSHA", evalsha.byName["type"].sha, "1"), 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			argc := tt.argc
			if argc == 0 {
				argc = len(tt.args)
			}
			rw, ok := tt.ext.Rewrite(argv(tt.args...), argc, &proxy.SessionInfo{})
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if string(rw.Prefix) != tt.want || rw.PrefixArgs != tt.wantArg {
				t.Errorf("prefix = %q (%d args), want %q (%d)", rw.Prefix, rw.PrefixArgs, tt.want, tt.wantArg)
			}
			if rw.Reply == nil || rw.Local != nil {
				t.Errorf("Reply = %v, Local = %q: want a reply handler and no local reply", rw.Reply, rw.Local)
			}
		})
	}
}

func TestCommandsListsEverything(t *testing.T) {
	e := newOffline(t, false)
	got := strings.Join(e.Commands(), " ")
	want := "exset exget exsetver exincrby exincrbyfloat excas excad exappend exprepend exgae cas cad type command"
	if got != want {
		t.Errorf("Commands() = %q, want %q", got, want)
	}
	for _, name := range e.Commands() {
		if name != strings.ToLower(name) {
			t.Errorf("command %q is not lower-case", name)
		}
	}
}

func TestModeSwitchTakesEffectOnNextRewrite(t *testing.T) {
	e := newOffline(t, false)
	args := argv("EXSET", "k", "v")
	rw, _ := e.Rewrite(args, 3, &proxy.SessionInfo{})
	if !bytes.HasPrefix(rw.Prefix, []byte("$5\r\nFCALL\r\n")) {
		t.Fatalf("prefix %q, want FCALL", rw.Prefix)
	}
	act, _ := rw.Reply.Check([]byte("-ERR unknown command 'FCALL', with args beginning with: 'exset_1' '1' 'k' 'v' \r\n"), 2)
	if act != proxy.Retry {
		t.Fatalf("Check(unknown FCALL) = %v, want Retry", act)
	}
	if e.Mode() != "evalsha" {
		t.Fatalf("mode = %s, want evalsha", e.Mode())
	}
	rw, _ = e.Rewrite(args, 3, &proxy.SessionInfo{})
	if want := bulkStrings("EVALSHA", e.byName["exset"].sha, "1"); string(rw.Prefix) != want {
		t.Errorf("after switch prefix = %q, want %q", rw.Prefix, want)
	}
}

func TestCheck(t *testing.T) {
	e := newOffline(t, false)
	rw, _ := e.Rewrite(argv("EXSET", "k", "v"), 3, &proxy.SessionInfo{})
	h := rw.Reply
	tests := []struct {
		name string
		head string
		want proxy.ReplyAction
		repl string
	}{
		{"ok", "+OK\r\n", proxy.Forward, ""},
		{"integer", ":3\r\n", proxy.Forward, ""},
		{"spec error passes", "-ERR syntax error\r\n", proxy.Forward, ""},
		{"stale passes", "-ERR update version is stale\r\n", proxy.Forward, ""},
		{"wrongtype passes", "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n", proxy.Forward, ""},
		{"function flushed", "-ERR Function not found\r\n", proxy.Retry, ""},
		{"script flushed", "-NOSCRIPT No matching script. Please use EVAL.\r\n", proxy.Retry, ""},
		{"no fcall permission", "-NOPERM this user has no permissions to run the 'fcall' command\r\n", proxy.Replace,
			"-NOPERM this user has no permissions to run the 'exset' command (exproxy implements it with FCALL: grant +fcall, or +@scripting)\r\n"},
		{"no evalsha permission", "-NOPERM this user has no permissions to run the 'evalsha' command\r\n", proxy.Replace,
			"-NOPERM this user has no permissions to run the 'exset' command (exproxy implements it with EVALSHA: grant +evalsha, or +@scripting)\r\n"},
		{"ACL refusal inside the Lua", "-ERR The user executing the script can't run this command or subcommand script: exset_be55ff87, on @user_function:487.\r\n", proxy.Replace,
			"-NOPERM this user has no permissions to run the 'exset' command (exproxy implements it in Lua, which runs " + luaCalls + " as this user: grant them, e.g. +@hash +@string +@keyspace +time)\r\n"},
		{"subscribed context, fcall", "-ERR Can't execute 'fcall': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n", proxy.Replace,
			"-ERR Can't execute 'exset': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"},
		{"subscribed context, evalsha", "-ERR Can't execute 'evalsha': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n", proxy.Replace,
			"-ERR Can't execute 'exset': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"},
		{"subscribed context, other command passes", "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n", proxy.Forward, ""},
		{"subscribed context, cut off", "-ERR Can't execute 'fcall': only (P|S)SUB", proxy.Forward, ""},
		{"key permission passes", "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n", proxy.Forward, ""},
		{"unknown other command passes", "-ERR unknown command 'FCALLX', with args beginning with: \r\n", proxy.Forward, ""},
		{"empty", "", proxy.Forward, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, proto := range []int{2, 3} {
				act, repl := h.Check([]byte(tt.head), proto)
				if act != tt.want || string(repl) != tt.repl {
					t.Errorf("proto %d: Check = %v %q, want %v %q", proto, act, repl, tt.want, tt.repl)
				}
				if bytes.Count(repl, []byte("\r\n")) > 1 {
					t.Errorf("replacement is not a single line: %q", repl)
				}
			}
		})
	}
	if e.Mode() != "fcall" {
		t.Errorf("mode changed to %s by replies that do not call for it", e.Mode())
	}
	// The 6.x spelling of an unknown command switches too.
	if act, _ := h.Check([]byte("-ERR unknown command `FCALL`, with args beginning with: `exset_1`, \r\n"), 2); act != proxy.Retry || e.Mode() != "evalsha" {
		t.Errorf("6.x unknown FCALL: action %v mode %s, want Retry evalsha", act, e.Mode())
	}
}

func TestNewRejectsBadDeps(t *testing.T) {
	tests := []struct {
		name string
		deps Deps
		want string
	}{
		{"no address", Deps{}, "address is empty"},
		{"bad network", Deps{Upstream: proxy.Upstream{Network: "udp", Addr: "x"}}, "want tcp or unix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(DefaultConfig(), tt.deps)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestReloadAfterCloseFails(t *testing.T) {
	e := newOffline(t, false)
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := e.Reload(context.Background()); !errors.Is(err, errClosed) {
		t.Errorf("Reload after Close = %v, want errClosed", err)
	}
}

func BenchmarkRewrite(b *testing.B) {
	e := newOffline(b, false)
	args := argv("EXCAS", "counter:42", "17", "16")
	s := &proxy.SessionInfo{}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := e.Rewrite(args, len(args), s); !ok {
			b.Fatal("not rewritten")
		}
	}
}

func TestCheckFixesBigIntegers(t *testing.T) {
	e := newOffline(t, false)
	long := strings.Repeat("x", 300)
	tests := []struct {
		cmd   []string
		reply string
		act   proxy.ReplyAction
		want  string
	}{
		{[]string{"EXGET", "k"}, "*2\r\n$1\r\nv\r\n$16\r\n9007199254740993\r\n", proxy.Replace, "*2\r\n$1\r\nv\r\n:9007199254740993\r\n"},
		{[]string{"EXGET", "k"}, "*2\r\n$1\r\nv\r\n:9007199254740992\r\n", proxy.Forward, ""},
		{[]string{"EXSET", "k", "v", "WITHVERSION"}, "$16\r\n9007199254740993\r\n", proxy.Replace, ":9007199254740993\r\n"},
		{[]string{"EXINCRBY", "k", "1"}, "$19\r\n9223372036854775807\r\n", proxy.Replace, ":9223372036854775807\r\n"},
		{[]string{"EXCAS", "k", "v", "1"}, "*3\r\n+CAS_FAILED\r\n$2\r\n12\r\n$16\r\n9007199254740993\r\n", proxy.Replace, "*3\r\n+CAS_FAILED\r\n$2\r\n12\r\n:9007199254740993\r\n"},
		{[]string{"EXINCRBYFLOAT", "k", "1"}, "$3\r\n1.5\r\n", proxy.Forward, ""}, // a float is a bulk string by right
		{[]string{"CAS", "k", "a", "b"}, ":1\r\n", proxy.Forward, ""},
		// A reply larger than what Check sees is asked for whole (Buffer)
		// and fixed by Transform.
		{[]string{"EXGET", "k"}, ("*2\r\n$300\r\n" + long + "\r\n$16\r\n9007199254740993\r\n")[:proxy.HeadSize], proxy.Buffer, ""},
	}
	for _, tt := range tests {
		rw, _ := e.Rewrite(argv(tt.cmd...), len(tt.cmd), &proxy.SessionInfo{})
		for _, proto := range []int{2, 3} {
			act, repl := rw.Reply.Check([]byte(tt.reply), proto)
			if act != tt.act || string(repl) != tt.want {
				t.Errorf("%v: Check(%q) = %v %q, want %v %q", tt.cmd, tt.reply, act, repl, tt.act, tt.want)
			}
		}
	}
	rw, _ := e.Rewrite(argv("EXGET", "k"), 2, &proxy.SessionInfo{})
	whole := "*2\r\n$300\r\n" + long + "\r\n$16\r\n9007199254740993\r\n"
	want := "*2\r\n$300\r\n" + long + "\r\n:9007199254740993\r\n"
	if got := rw.Reply.(proxy.ReplyTransformer).Transform([]byte(whole), 2); string(got) != want {
		t.Errorf("Transform of a long EXGET reply = %q, want %q", got, want)
	}
}

func BenchmarkCheck(b *testing.B) {
	e := newOffline(b, false)
	rw, _ := e.Rewrite(argv("EXGET", "k"), 2, &proxy.SessionInfo{})
	head := []byte("*2\r\n$5\r\nvalue\r\n:2\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if act, _ := rw.Reply.Check(head, 2); act != proxy.Forward {
			b.Fatal(act)
		}
	}
}

func TestRewriteAllocatesNothing(t *testing.T) {
	e := newOffline(t, false)
	args := argv("ExSet", "k", "v", "WITHVERSION")
	s := &proxy.SessionInfo{}
	if n := testing.AllocsPerRun(1000, func() { e.Rewrite(args, len(args), s) }); n != 0 {
		t.Errorf("Rewrite allocates %.1f times per call, want 0", n)
	}
}

// TestLuaCallsListed keeps the permission hint in step with the Lua: every
// command exstring.lua runs must be named in luaCalls.
func TestLuaCallsListed(t *testing.T) {
	listed := map[string]bool{}
	for _, c := range strings.Split(luaCalls, ", ") {
		listed[c] = true
	}
	found := 0
	for _, call := range []string{"redis.call('", "redis.pcall('"} {
		for rest := luaBody; ; {
			i := strings.Index(rest, call)
			if i < 0 {
				break
			}
			rest = rest[i+len(call):]
			name := strings.ToUpper(rest[:strings.IndexByte(rest, '\'')])
			found++
			if !listed[name] {
				t.Errorf("exstring.lua runs %s, which luaCalls does not name", name)
			}
		}
	}
	if found == 0 {
		t.Fatal("found no redis.call in exstring.lua: the test no longer reads it right")
	}
}
