package exstring

// Direct tests of the Lua library against a real redis-server: every
// example, rule and error string of spec/exstring.md, compared as raw reply
// bytes on the wire, in RESP2 and RESP3, through FCALL and through EVALSHA.

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
)

// Reply builders, so expected values read like the spec.
const (
	rOK       = "+OK\r\n"
	rNil      = "$-1\r\n"
	eSyntax   = "-ERR syntax error\r\n"
	eStale    = "-ERR update version is stale\r\n"
	eNoInt    = "-ERR value is not an integer\r\n"
	eNoFloat  = "-ERR value is not a float\r\n"
	eOverflow = "-ERR increment or decrement would overflow\r\n"
	eMinMax   = "-ERR min or max is specified, but not valid\r\n"
	eVerInt   = "-ERR version should be integer\r\n"
	eWrong    = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
)

func rInt(n int64) string { return ":" + strconv.FormatInt(n, 10) + "\r\n" }
func rBulk(s string) string {
	return "$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n"
}
func rArr(elems ...string) string {
	return "*" + strconv.Itoa(len(elems)) + "\r\n" + strings.Join(elems, "")
}
func eArity(cmd string) string {
	return "-ERR wrong number of arguments for '" + cmd + "' command\r\n"
}

// toRESP3 is the RESP3 form of the replies these tests expect: only the
// null differs.
func toRESP3(s string) string { return strings.ReplaceAll(s, "$-1\r\n", "_\r\n") }

// luaCheck is a command run after the case's command, with its expected
// reply (RESP2 form), or "~a:b" for an integer reply within [a, b].
type luaCheck struct {
	cmd  []string
	want string
}

type luaCase struct {
	name  string
	setup [][]string // commands run first; must not fail
	cmd   []string   // the client's command, as it would send it
	want  string     // expected reply, RESP2 form
	after []luaCheck
}

// cl is one command line.
func cl(args ...string) []string { return args }

func chk(want string, args ...string) luaCheck { return luaCheck{cmd: args, want: want} }

// luaPath turns a client command into the call the proxy makes.
type luaPath func(args []string) []string

func fcallPath(args []string) []string {
	return calls("FCALL", FunctionName(args[0]), args)
}

func evalshaPath(args []string) []string {
	return calls("EVALSHA", ScriptSHA(args[0]), args)
}

func calls(call, fn string, args []string) []string {
	if fn == "" {
		panic("no handler for " + args[0])
	}
	if len(args) == 1 {
		return []string{call, fn, "0"}
	}
	return append([]string{call, fn, "1"}, args[1:]...)
}

// translate maps ex commands (and EXTYPE, the TYPE handler) to library
// calls; anything else (SET, TTL, native TYPE, ...) is sent as is.
func translate(path luaPath, args []string) []string {
	name := strings.ToLower(args[0])
	for _, h := range Handlers {
		if h == name {
			return path(args)
		}
	}
	return args
}

// luaServer starts Redis, loads the library and the scripts, and returns
// its address.
func luaServer(t *testing.T) string {
	t.Helper()
	srv := redistest.Start(t)
	lc := proxytest.Dial(t, srv.Addr)
	if got := lc.Do("FUNCTION", "LOAD", Library()); got != rBulk(LibraryName()) {
		t.Fatalf("FUNCTION LOAD = %q", got)
	}
	for _, h := range Handlers {
		if got, want := lc.Do("SCRIPT", "LOAD", Script(h)), rBulk(ScriptSHA(h)); got != want {
			t.Fatalf("SCRIPT LOAD %s = %q, want %q", h, got, want)
		}
	}
	return srv.Addr
}

func runLuaCases(t *testing.T, cases []luaCase) {
	t.Helper()
	addr := luaServer(t)
	parent := t
	paths := []struct {
		name string
		path luaPath
	}{{"fcall", fcallPath}, {"evalsha", evalshaPath}}
	for _, p := range paths {
		for _, proto := range []int{2, 3} {
			lc := proxytest.Dial(t, addr)
			if proto == 3 {
				if got := lc.Do("HELLO", "3"); !strings.HasPrefix(got, "%") {
					t.Fatalf("HELLO 3 = %q", got)
				}
			}
			for _, tc := range cases {
				t.Run(fmt.Sprintf("%s/resp%d/%s", p.name, proto, tc.name), func(t *testing.T) {
					lc.TB = t
					defer func() { lc.TB = parent }()
					lc.Do("FLUSHALL")
					for _, s := range tc.setup {
						if got := lc.Do(translate(p.path, s)...); strings.HasPrefix(got, "-") {
							t.Fatalf("setup %q: %q", s, got)
						}
					}
					want := tc.want
					if proto == 3 {
						want = toRESP3(want)
					}
					if got := lc.Do(translate(p.path, tc.cmd)...); got != want {
						t.Errorf("%q\n got %q\nwant %q", tc.cmd, got, want)
					}
					for _, a := range tc.after {
						got := lc.Do(translate(p.path, a.cmd)...)
						if !matchReply(got, a.want, proto) {
							t.Errorf("after %q: got %q, want %q", a.cmd, got, a.want)
						}
					}
				})
			}
		}
	}
}

func matchReply(got, want string, proto int) bool {
	if rng, ok := strings.CutPrefix(want, "~"); ok {
		lo, hi, _ := strings.Cut(rng, ":")
		if !strings.HasPrefix(got, ":") {
			return false
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(got[1:], "\r\n"), 10, 64)
		l, err1 := strconv.ParseInt(lo, 10, 64)
		h, err2 := strconv.ParseInt(hi, 10, 64)
		return err == nil && err1 == nil && err2 == nil && n >= l && n <= h
	}
	if proto == 3 {
		want = toRESP3(want)
	}
	return got == want
}

const (
	i64max = "9223372036854775807"
	i64min = "-9223372036854775808"
)

func TestLuaEXSET(t *testing.T) {
	exv := func(v string, ver int64) luaCheck { return chk(rArr(rBulk(v), rInt(ver)), "EXGET", "k") }
	exvf := func(v string, ver, flags int64) luaCheck {
		return chk(rArr(rBulk(v), rInt(ver), rInt(flags)), "EXGET", "k", "WITHFLAGS")
	}
	noTTL := chk(rInt(-1), "PTTL", "k")
	runLuaCases(t, []luaCase{
		{name: "create", cmd: cl("EXSET", "k", "v"), want: rOK, after: []luaCheck{exvf("v", 1, 0), noTTL}},
		{name: "update bumps version", setup: [][]string{cl("EXSET", "k", "v")}, cmd: cl("EXSET", "k", "w"), want: rOK, after: []luaCheck{exv("w", 2)}},
		{name: "withversion create", cmd: cl("EXSET", "k", "v", "WITHVERSION"), want: rInt(1)},
		{name: "withversion update", setup: [][]string{cl("EXSET", "k", "v"), cl("EXSET", "k", "v")}, cmd: cl("EXSET", "k", "v", "WITHVERSION"), want: rInt(3)},
		{name: "empty and binary value", cmd: cl("EXSET", "k", "a\r\n\x00b"), want: rOK, after: []luaCheck{exv("a\r\n\x00b", 1)}},
		{name: "empty value", cmd: cl("EXSET", "k", ""), want: rOK, after: []luaCheck{exv("", 1)}},
		{name: "xx missing", cmd: cl("EXSET", "k", "v", "XX"), want: rNil, after: []luaCheck{chk(rInt(0), "EXISTS", "k")}},
		{name: "xx existing", setup: [][]string{cl("EXSET", "k", "v")}, cmd: cl("EXSET", "k", "w", "XX"), want: rOK, after: []luaCheck{exv("w", 2)}},
		{name: "nx existing", setup: [][]string{cl("EXSET", "k", "v")}, cmd: cl("EXSET", "k", "w", "NX"), want: rNil, after: []luaCheck{exv("v", 1)}},
		{name: "nx missing", cmd: cl("EXSET", "k", "v", "NX"), want: rOK},
		{name: "nx nx accepted", cmd: cl("EXSET", "k", "v", "NX", "NX"), want: rOK},
		{name: "xx xx accepted", setup: [][]string{cl("EXSET", "k", "v")}, cmd: cl("EXSET", "k", "v", "XX", "XX"), want: rOK},
		{name: "keepttl keepttl accepted", cmd: cl("EXSET", "k", "v", "KEEPTTL", "KEEPTTL"), want: rOK},
		{name: "withversion twice accepted", cmd: cl("EXSET", "k", "v", "WITHVERSION", "WITHVERSION"), want: rInt(1)},
		{name: "nx xx", cmd: cl("EXSET", "k", "v", "NX", "XX"), want: eSyntax},
		{name: "xx nx", cmd: cl("EXSET", "k", "v", "XX", "NX"), want: eSyntax},
		{name: "options any case and order", cmd: cl("EXSET", "k", "v", "withVersion", "ex", "100", "Nx", "flags", "3"), want: rInt(1),
			after: []luaCheck{exvf("v", 1, 3), chk("~1:100", "TTL", "k")}},
		{name: "ex", cmd: cl("EXSET", "k", "v", "EX", "100"), want: rOK, after: []luaCheck{chk("~1:100", "TTL", "k")}},
		{name: "px", cmd: cl("EXSET", "k", "v", "PX", "100000"), want: rOK, after: []luaCheck{chk("~1:100000", "PTTL", "k")}},
		{name: "exat", cmd: cl("EXSET", "k", "v", "EXAT", "4102444800"), want: rOK, after: []luaCheck{chk("~1000000000:4102444800", "TTL", "k")}},
		{name: "pxat", cmd: cl("EXSET", "k", "v", "PXAT", "4102444800000"), want: rOK, after: []luaCheck{chk("~1000000000:4102444800", "TTL", "k")}},
		{name: "exat in the past is no error", cmd: cl("EXSET", "k", "v", "EXAT", "1"), want: rOK, after: []luaCheck{chk(rInt(0), "EXISTS", "k")}},
		{name: "pxat in the past keeps withversion", setup: [][]string{cl("EXSET", "k", "v")}, cmd: cl("EXSET", "k", "v", "PXAT", "1", "WITHVERSION"), want: rInt(2), after: []luaCheck{chk(rInt(0), "EXISTS", "k")}},
		{name: "pxat max", cmd: cl("EXSET", "k", "v", "PXAT", i64max), want: rOK, after: []luaCheck{chk("~9000000000000000000:"+i64max, "PTTL", "k")}},
		{name: "ex 0", cmd: cl("EXSET", "k", "v", "EX", "0"), want: eSyntax, after: []luaCheck{chk(rInt(0), "EXISTS", "k")}},
		{name: "ex negative", cmd: cl("EXSET", "k", "v", "EX", "-1"), want: eSyntax},
		{name: "px 0", cmd: cl("EXSET", "k", "v", "PX", "0"), want: eSyntax},
		{name: "exat 0", cmd: cl("EXSET", "k", "v", "EXAT", "0"), want: eSyntax},
		{name: "pxat negative", cmd: cl("EXSET", "k", "v", "PXAT", "-5"), want: eSyntax},
		{name: "ex not integer", cmd: cl("EXSET", "k", "v", "EX", "1.5"), want: eSyntax},
		{name: "ex leading zero", cmd: cl("EXSET", "k", "v", "EX", "010"), want: eSyntax},
		{name: "ex plus sign", cmd: cl("EXSET", "k", "v", "EX", "+10"), want: eSyntax},
		{name: "ex consumes next token", cmd: cl("EXSET", "k", "v", "EX", "NX"), want: eSyntax},
		{name: "ex without value", cmd: cl("EXSET", "k", "v", "EX"), want: eSyntax},
		{name: "ver without value", cmd: cl("EXSET", "k", "v", "VER"), want: eSyntax},
		{name: "ex twice", cmd: cl("EXSET", "k", "v", "EX", "10", "EX", "10"), want: eSyntax},
		{name: "ex and px", cmd: cl("EXSET", "k", "v", "EX", "10", "PX", "10"), want: eSyntax},
		{name: "exat and pxat", cmd: cl("EXSET", "k", "v", "EXAT", "4102444800", "PXAT", "4102444800000"), want: eSyntax},
		{name: "ex then keepttl", cmd: cl("EXSET", "k", "v", "EX", "10", "KEEPTTL"), want: eSyntax},
		{name: "keepttl then px", cmd: cl("EXSET", "k", "v", "KEEPTTL", "PX", "10"), want: eSyntax},
		// Overflow territory (spec §2): the module is nondeterministic there;
		// exproxy answers a syntax error and changes nothing.
		{name: "ex overflows on *1000", setup: [][]string{cl("EXSET", "k", "v")}, cmd: cl("EXSET", "k", "w", "EX", "9223372036854776"), want: eSyntax, after: []luaCheck{exv("v", 1)}},
		{name: "ex overflows on +now", cmd: cl("EXSET", "k", "v", "EX", "9223372036854775"), want: eSyntax},
		{name: "px overflows on +now", cmd: cl("EXSET", "k", "v", "PX", i64max), want: eSyntax},
		{name: "exat overflows on *1000", cmd: cl("EXSET", "k", "v", "EXAT", i64max), want: eSyntax},
		{name: "ex above int64", cmd: cl("EXSET", "k", "v", "EX", "9223372036854775808"), want: eSyntax},
		{name: "ttl removed on update", setup: [][]string{cl("EXSET", "k", "v", "EX", "100")}, cmd: cl("EXSET", "k", "w"), want: rOK, after: []luaCheck{noTTL}},
		{name: "ttl kept with keepttl", setup: [][]string{cl("EXSET", "k", "v", "EX", "100")}, cmd: cl("EXSET", "k", "w", "KEEPTTL"), want: rOK, after: []luaCheck{chk("~1:100", "TTL", "k")}},
		{name: "ttl replaced", setup: [][]string{cl("EXSET", "k", "v", "EX", "100")}, cmd: cl("EXSET", "k", "w", "EX", "5000"), want: rOK, after: []luaCheck{chk("~4900:5000", "TTL", "k")}},
		{name: "ver matches", setup: [][]string{cl("EXSET", "k", "v")}, cmd: cl("EXSET", "k", "w", "VER", "1", "WITHVERSION"), want: rInt(2)},
		{name: "ver stale", setup: [][]string{cl("EXSET", "k", "v", "EX", "100")}, cmd: cl("EXSET", "k", "w", "VER", "5"), want: eStale,
			after: []luaCheck{exv("v", 1), chk("~1:100", "TTL", "k")}},
		{name: "ver 0 is no check", setup: [][]string{cl("EXSET", "k", "v", "ABS", "7")}, cmd: cl("EXSET", "k", "w", "VER", "0", "WITHVERSION"), want: rInt(8)},
		{name: "ver ignored on missing key", cmd: cl("EXSET", "k", "v", "VER", "5", "WITHVERSION"), want: rInt(1)},
		{name: "abs on create", cmd: cl("EXSET", "k", "v", "ABS", "100", "WITHVERSION"), want: rInt(100)},
		{name: "abs lowers", setup: [][]string{cl("EXSET", "k", "v", "ABS", "100")}, cmd: cl("EXSET", "k", "v", "ABS", "3"), want: rOK, after: []luaCheck{exv("v", 3)}},
		{name: "abs 0", cmd: cl("EXSET", "k", "v", "ABS", "0", "WITHVERSION"), want: rInt(0), after: []luaCheck{exv("v", 0)}},
		{name: "abs negative", cmd: cl("EXSET", "k", "v", "ABS", "-1"), want: eSyntax},
		{name: "ver negative", cmd: cl("EXSET", "k", "v", "VER", "-1"), want: eSyntax},
		{name: "ver not integer", cmd: cl("EXSET", "k", "v", "VER", "x"), want: eSyntax},
		{name: "ver above int64", cmd: cl("EXSET", "k", "v", "ABS", "9223372036854775808"), want: eSyntax},
		{name: "ver then abs", cmd: cl("EXSET", "k", "v", "VER", "1", "ABS", "2"), want: eSyntax},
		{name: "ver twice", cmd: cl("EXSET", "k", "v", "VER", "1", "VER", "1"), want: eSyntax},
		{name: "abs twice", cmd: cl("EXSET", "k", "v", "ABS", "1", "ABS", "1"), want: eSyntax},
		{name: "flags max", cmd: cl("EXSET", "k", "v", "FLAGS", "4294967295"), want: rOK, after: []luaCheck{exvf("v", 1, 4294967295)}},
		{name: "flags too big", cmd: cl("EXSET", "k", "v", "FLAGS", "4294967296"), want: eSyntax},
		{name: "flags negative", cmd: cl("EXSET", "k", "v", "FLAGS", "-1"), want: eSyntax},
		{name: "flags not integer", cmd: cl("EXSET", "k", "v", "FLAGS", "a"), want: eSyntax},
		{name: "flags twice", cmd: cl("EXSET", "k", "v", "FLAGS", "1", "FLAGS", "2"), want: eSyntax},
		{name: "flags kept without FLAGS", setup: [][]string{cl("EXSET", "k", "v", "FLAGS", "9")}, cmd: cl("EXSET", "k", "w"), want: rOK, after: []luaCheck{exvf("w", 2, 9)}},
		{name: "flags replaced", setup: [][]string{cl("EXSET", "k", "v", "FLAGS", "9")}, cmd: cl("EXSET", "k", "w", "FLAGS", "0"), want: rOK, after: []luaCheck{exvf("w", 2, 0)}},
		{name: "unknown option", cmd: cl("EXSET", "k", "v", "BOGUS"), want: eSyntax},
		{name: "def not supported", cmd: cl("EXSET", "k", "v", "DEF", "1"), want: eSyntax},
		{name: "min not supported", cmd: cl("EXSET", "k", "v", "MIN", "1"), want: eSyntax},
		{name: "nonegative not supported", cmd: cl("EXSET", "k", "v", "NONEGATIVE"), want: eSyntax},
		{name: "unsupported option after valid ones", cmd: cl("EXSET", "k", "v", "EX", "10", "NONEGATIVE"), want: eSyntax},
		{name: "plain string", setup: [][]string{cl("SET", "k", "x")}, cmd: cl("EXSET", "k", "v"), want: eWrong, after: []luaCheck{chk(rBulk("x"), "GET", "k")}},
		{name: "plain string NX: type first", setup: [][]string{cl("SET", "k", "x")}, cmd: cl("EXSET", "k", "v", "NX"), want: eWrong},
		{name: "plain string XX", setup: [][]string{cl("SET", "k", "x")}, cmd: cl("EXSET", "k", "v", "XX"), want: eWrong},
		{name: "list", setup: [][]string{cl("RPUSH", "k", "x")}, cmd: cl("EXSET", "k", "v"), want: eWrong},
		{name: "syntax before type", setup: [][]string{cl("SET", "k", "x")}, cmd: cl("EXSET", "k", "v", "BOGUS"), want: eSyntax},
		{name: "arity no key", cmd: cl("EXSET"), want: eArity("exset")},
		{name: "arity no value", cmd: cl("EXSET", "k"), want: eArity("exset")},
		// Integers beyond 2^53 that a double cannot hold come back as a bulk
		// string with the exact digits (Redis turns a Lua number into an
		// integer through a double); see the README.
		{name: "abs max", cmd: cl("EXSET", "k", "v", "ABS", i64max, "WITHVERSION"), want: rBulk(i64max),
			after: []luaCheck{chk(rArr(rBulk("v"), rBulk(i64max)), "EXGET", "k")}},
		{name: "abs 2^62 is exact", cmd: cl("EXSET", "k", "v", "ABS", "4611686018427387904", "WITHVERSION"), want: rInt(4611686018427387904)},
		{name: "version wraps", setup: [][]string{cl("EXSET", "k", "v", "ABS", i64max)}, cmd: cl("EXSET", "k", "w", "WITHVERSION"), want: rInt(-9223372036854775808),
			after: []luaCheck{chk(rArr(rBulk("w"), rInt(-9223372036854775808)), "EXGET", "k")}},
		{name: "version after wrap counts up", setup: [][]string{cl("EXSET", "k", "v", "ABS", i64max), cl("EXSET", "k", "v")}, cmd: cl("EXSET", "k", "w", "WITHVERSION"), want: rBulk("-9223372036854775807")},
		{name: "ver after wrap is negative: syntax", setup: [][]string{cl("EXSET", "k", "v", "ABS", i64max), cl("EXSET", "k", "v")}, cmd: cl("EXSET", "k", "w", "VER", i64min), want: eSyntax},
		{name: "ver stale after wrap", setup: [][]string{cl("EXSET", "k", "v", "ABS", i64max), cl("EXSET", "k", "v")}, cmd: cl("EXSET", "k", "w", "VER", i64max), want: eStale},
	})
}

func TestLuaEXGET(t *testing.T) {
	runLuaCases(t, []luaCase{
		{name: "missing", cmd: cl("EXGET", "k"), want: rNil},
		{name: "missing withflags", cmd: cl("EXGET", "k", "WITHFLAGS"), want: rNil},
		{name: "value and version", setup: [][]string{cl("EXSET", "k", "v", "ABS", "41"), cl("EXSET", "k", "v")}, cmd: cl("EXGET", "k"), want: rArr(rBulk("v"), rInt(42))},
		{name: "withflags any case", setup: [][]string{cl("EXSET", "k", "v", "FLAGS", "12")}, cmd: cl("EXGET", "k", "withFlags"), want: rArr(rBulk("v"), rInt(1), rInt(12))},
		{name: "bad third arg before lookup", cmd: cl("EXGET", "k", "foo"), want: eSyntax},
		{name: "bad third arg on wrong type", setup: [][]string{cl("SET", "k", "x")}, cmd: cl("EXGET", "k", "foo"), want: eSyntax},
		{name: "wrong type", setup: [][]string{cl("SET", "k", "x")}, cmd: cl("EXGET", "k"), want: eWrong},
		{name: "arity no key", cmd: cl("EXGET"), want: eArity("exget")},
		{name: "arity too many", cmd: cl("EXGET", "k", "WITHFLAGS", "x"), want: eArity("exget")},
		{name: "version unchanged", setup: [][]string{cl("EXSET", "k", "v"), cl("EXGET", "k")}, cmd: cl("EXGET", "k"), want: rArr(rBulk("v"), rInt(1))},
	})
}

func TestLuaEXSETVER(t *testing.T) {
	runLuaCases(t, []luaCase{
		{name: "missing ignores bad version", cmd: cl("EXSETVER", "k", "abc"), want: rInt(0), after: []luaCheck{chk(rInt(0), "EXISTS", "k")}},
		{name: "missing", cmd: cl("EXSETVER", "k", "5"), want: rInt(0)},
		{name: "wrong type first", setup: [][]string{cl("SET", "k", "x")}, cmd: cl("EXSETVER", "k", "abc"), want: eWrong},
		{name: "not integer", setup: [][]string{cl("EXSET", "k", "v")}, cmd: cl("EXSETVER", "k", "abc"), want: eSyntax},
		{name: "zero", setup: [][]string{cl("EXSET", "k", "v")}, cmd: cl("EXSETVER", "k", "0"), want: eSyntax},
		{name: "negative", setup: [][]string{cl("EXSET", "k", "v")}, cmd: cl("EXSETVER", "k", "-3"), want: eSyntax},
		{name: "sets only the version", setup: [][]string{cl("EXSET", "k", "v", "FLAGS", "3", "EX", "100")}, cmd: cl("EXSETVER", "k", "10"), want: rInt(1),
			after: []luaCheck{chk(rArr(rBulk("v"), rInt(10), rInt(3)), "EXGET", "k", "WITHFLAGS"), chk("~1:100", "TTL", "k")}},
		{name: "max", setup: [][]string{cl("EXSET", "k", "v")}, cmd: cl("EXSETVER", "k", i64max), want: rInt(1),
			after: []luaCheck{chk(rInt(-9223372036854775808), "EXSET", "k", "v", "WITHVERSION")}},
		{name: "arity", cmd: cl("EXSETVER", "k"), want: eArity("exsetver")},
		{name: "arity too many", cmd: cl("EXSETVER", "k", "1", "2"), want: eArity("exsetver")},
	})
}

func TestLuaEXINCRBY(t *testing.T) {
	exv := func(v string, ver int64) luaCheck { return chk(rArr(rBulk(v), rInt(ver)), "EXGET", "k") }
	gone := chk(rInt(0), "EXISTS", "k")
	runLuaCases(t, []luaCase{
		{name: "create", cmd: cl("EXINCRBY", "k", "5"), want: rInt(5), after: []luaCheck{exv("5", 1)}},
		{name: "add", setup: [][]string{cl("EXSET", "k", "10")}, cmd: cl("EXINCRBY", "k", "-15"), want: rInt(-5), after: []luaCheck{exv("-5", 2)}},
		{name: "withversion", setup: [][]string{cl("EXSET", "k", "10")}, cmd: cl("EXINCRBY", "k", "1", "WITHVERSION"), want: rArr(rInt(11), rInt(2))},
		{name: "num not integer", cmd: cl("EXINCRBY", "k", "1.5"), want: eNoInt},
		{name: "num leading zero", cmd: cl("EXINCRBY", "k", "01"), want: eNoInt},
		{name: "num minus zero", cmd: cl("EXINCRBY", "k", "-0"), want: eNoInt},
		{name: "num plus", cmd: cl("EXINCRBY", "k", "+1"), want: eNoInt},
		{name: "num empty", cmd: cl("EXINCRBY", "k", ""), want: eNoInt},
		{name: "num above int64", cmd: cl("EXINCRBY", "k", "9223372036854775808"), want: eNoInt},
		{name: "num min", cmd: cl("EXINCRBY", "k", i64min), want: rInt(-9223372036854775808)},
		{name: "syntax before type", setup: [][]string{cl("SET", "k", "x")}, cmd: cl("EXINCRBY", "k", "abc", "BOGUS"), want: eSyntax},
		{name: "type before num", setup: [][]string{cl("SET", "k", "x")}, cmd: cl("EXINCRBY", "k", "abc"), want: eWrong},
		{name: "num before expire", cmd: cl("EXINCRBY", "k", "abc", "EX", "0"), want: eNoInt},
		{name: "def not integer", cmd: cl("EXINCRBY", "k", "1", "DEF", "x", "EX", "0"), want: eNoInt},
		{name: "expire before min", cmd: cl("EXINCRBY", "k", "1", "EX", "0", "MIN", "x"), want: eSyntax},
		{name: "ver not integer", cmd: cl("EXINCRBY", "k", "1", "VER", "x", "MIN", "x"), want: eSyntax},
		{name: "abs negative", cmd: cl("EXINCRBY", "k", "1", "ABS", "-1"), want: eSyntax},
		{name: "min not integer", cmd: cl("EXINCRBY", "k", "1", "MIN", "1.5"), want: eMinMax},
		{name: "max not integer", cmd: cl("EXINCRBY", "k", "1", "MAX", "x"), want: eMinMax},
		{name: "max below min", cmd: cl("EXINCRBY", "k", "1", "MIN", "10", "MAX", "5"), want: eMinMax},
		{name: "min equals max", cmd: cl("EXINCRBY", "k", "5", "MIN", "5", "MAX", "5"), want: rInt(5)},
		{name: "min twice", cmd: cl("EXINCRBY", "k", "1", "MIN", "1", "MIN", "1"), want: eSyntax},
		{name: "max twice", cmd: cl("EXINCRBY", "k", "1", "MAX", "1", "MAX", "1"), want: eSyntax},
		{name: "def twice", cmd: cl("EXINCRBY", "k", "1", "DEF", "1", "DEF", "1"), want: eSyntax},
		{name: "flags not supported", cmd: cl("EXINCRBY", "k", "1", "FLAGS", "1"), want: eSyntax},
		{name: "nonegative twice accepted", setup: [][]string{cl("EXSET", "k", "2")}, cmd: cl("EXINCRBY", "k", "-100", "NONEGATIVE", "NONEGATIVE"), want: rInt(0)},
		{name: "xx missing", cmd: cl("EXINCRBY", "k", "1", "XX"), want: rNil, after: []luaCheck{gone}},
		{name: "nx existing", setup: [][]string{cl("EXSET", "k", "1")}, cmd: cl("EXINCRBY", "k", "1", "NX"), want: rNil, after: []luaCheck{exv("1", 1)}},
		{name: "stored not integer", setup: [][]string{cl("EXSET", "k", "abc")}, cmd: cl("EXINCRBY", "k", "1"), want: eNoInt},
		{name: "stored float", setup: [][]string{cl("EXSET", "k", "1.0")}, cmd: cl("EXINCRBY", "k", "1"), want: eNoInt},
		{name: "stored not integer before ver", setup: [][]string{cl("EXSET", "k", "abc")}, cmd: cl("EXINCRBY", "k", "1", "VER", "9"), want: eNoInt},
		{name: "ver stale", setup: [][]string{cl("EXSET", "k", "1")}, cmd: cl("EXINCRBY", "k", "1", "VER", "9"), want: eStale, after: []luaCheck{exv("1", 1)}},
		{name: "ver matches", setup: [][]string{cl("EXSET", "k", "1")}, cmd: cl("EXINCRBY", "k", "1", "VER", "1", "WITHVERSION"), want: rArr(rInt(2), rInt(2))},
		{name: "abs", setup: [][]string{cl("EXSET", "k", "1")}, cmd: cl("EXINCRBY", "k", "1", "ABS", "50", "WITHVERSION"), want: rArr(rInt(2), rInt(50))},
		{name: "def on missing ignores num and max", cmd: cl("EXINCRBY", "k", "5", "DEF", "1000", "MAX", "10"), want: rInt(1000), after: []luaCheck{exv("1000", 1)}},
		{name: "def on missing ignores overflow", cmd: cl("EXINCRBY", "k", "1", "DEF", i64max, "WITHVERSION"), want: rArr(rBulk(i64max), rInt(1))},
		{name: "def on existing ignored", setup: [][]string{cl("EXSET", "k", "7")}, cmd: cl("EXINCRBY", "k", "5", "DEF", "1000"), want: rInt(12)},
		{name: "def negative nonegative", cmd: cl("EXINCRBY", "k", "5", "DEF", "-10", "NONEGATIVE"), want: rInt(0)},
		{name: "nonegative", setup: [][]string{cl("EXSET", "k", "2")}, cmd: cl("EXINCRBY", "k", "-100", "NONEGATIVE"), want: rInt(0), after: []luaCheck{exv("0", 2)}},
		{name: "nonegative after bounds check", setup: [][]string{cl("EXSET", "k", "2")}, cmd: cl("EXINCRBY", "k", "-100", "MIN", "-50", "NONEGATIVE"), want: eOverflow},
		{name: "overflow up", setup: [][]string{cl("EXSET", "k", i64max)}, cmd: cl("EXINCRBY", "k", "1"), want: eOverflow, after: []luaCheck{exv(i64max, 1)}},
		{name: "overflow down", setup: [][]string{cl("EXSET", "k", i64min)}, cmd: cl("EXINCRBY", "k", "-1"), want: eOverflow},
		{name: "def minus zero", cmd: cl("EXINCRBY", "k", i64max, "DEF", "-0"), want: eNoInt},
		{name: "to max exactly", setup: [][]string{cl("EXSET", "k", "9223372036854775806")}, cmd: cl("EXINCRBY", "k", "1"), want: rBulk(i64max), after: []luaCheck{exv(i64max, 2)}},
		{name: "to min exactly", setup: [][]string{cl("EXSET", "k", "-9223372036854775807")}, cmd: cl("EXINCRBY", "k", "-1"), want: rInt(-9223372036854775808)},
		{name: "exact above 2^53", setup: [][]string{cl("EXSET", "k", "9007199254740992")}, cmd: cl("EXINCRBY", "k", "1"), want: rBulk("9007199254740993"), after: []luaCheck{exv("9007199254740993", 2)}},
		{name: "big opposite signs", setup: [][]string{cl("EXSET", "k", i64max)}, cmd: cl("EXINCRBY", "k", i64min), want: rInt(-1)},
		{name: "max violated", cmd: cl("EXINCRBY", "k", "5", "MAX", "4"), want: eOverflow, after: []luaCheck{gone}},
		{name: "min violated", cmd: cl("EXINCRBY", "k", "-5", "MIN", "-4"), want: eOverflow, after: []luaCheck{gone}},
		{name: "max reached", setup: [][]string{cl("EXSET", "k", "3")}, cmd: cl("EXINCRBY", "k", "1", "MAX", "4"), want: rInt(4)},
		{name: "bounds compare exactly near 2^63", setup: [][]string{cl("EXSET", "k", "9223372036854775000")}, cmd: cl("EXINCRBY", "k", "7", "MAX", "9223372036854775006"), want: eOverflow},
		{name: "ttl removed", setup: [][]string{cl("EXSET", "k", "1", "EX", "100")}, cmd: cl("EXINCRBY", "k", "1"), want: rInt(2), after: []luaCheck{chk(rInt(-1), "TTL", "k")}},
		{name: "keepttl", setup: [][]string{cl("EXSET", "k", "1", "EX", "100")}, cmd: cl("EXINCRBY", "k", "1", "KEEPTTL"), want: rInt(2), after: []luaCheck{chk("~1:100", "TTL", "k")}},
		{name: "ex", setup: [][]string{cl("EXSET", "k", "1", "EX", "100")}, cmd: cl("EXINCRBY", "k", "1", "PX", "5000"), want: rInt(2), after: []luaCheck{chk("~1:5000", "PTTL", "k")}},
		{name: "flags kept", setup: [][]string{cl("EXSET", "k", "1", "FLAGS", "5")}, cmd: cl("EXINCRBY", "k", "1"), want: rInt(2), after: []luaCheck{chk(rArr(rBulk("2"), rInt(2), rInt(5)), "EXGET", "k", "WITHFLAGS")}},
		{name: "arity", cmd: cl("EXINCRBY", "k"), want: eArity("exincrby")},
		{name: "arity no key", cmd: cl("EXINCRBY"), want: eArity("exincrby")},
	})
}

func TestLuaEXINCRBYFLOAT(t *testing.T) {
	exv := func(v string, ver int64) luaCheck { return chk(rArr(rBulk(v), rInt(ver)), "EXGET", "k") }
	gone := chk(rInt(0), "EXISTS", "k")
	long := "1" + strings.Repeat("0", 5119) // 5120 bytes: too long for the parser
	runLuaCases(t, []luaCase{
		{name: "create", cmd: cl("EXINCRBYFLOAT", "k", "1.5"), want: rBulk("1.5"), after: []luaCheck{exv("1.5", 1)}},
		{name: "0.1+0.2", setup: [][]string{cl("EXINCRBYFLOAT", "k", "0.1")}, cmd: cl("EXINCRBYFLOAT", "k", "0.2"), want: rBulk("0.3"), after: []luaCheck{exv("0.3", 2)}},
		{name: "no exponent", cmd: cl("EXINCRBYFLOAT", "k", "1e20"), want: rBulk("100000000000000000000")},
		{name: "tiny prints 0", cmd: cl("EXINCRBYFLOAT", "k", "1e-30"), want: rBulk("0")},
		{name: "integer result", setup: [][]string{cl("EXSET", "k", "10")}, cmd: cl("EXINCRBYFLOAT", "k", "5"), want: rBulk("15")},
		{name: "negative", setup: [][]string{cl("EXSET", "k", "1")}, cmd: cl("EXINCRBYFLOAT", "k", "-3.25"), want: rBulk("-2.25")},
		{name: "missing plus minus zero", cmd: cl("EXINCRBYFLOAT", "k", "-0"), want: rBulk("0")},
		{name: "minus zero plus minus zero", setup: [][]string{cl("EXSET", "k", "-0.0")}, cmd: cl("EXINCRBYFLOAT", "k", "-0"), want: rBulk("-0"), after: []luaCheck{exv("-0", 2)}},
		{name: "minus zero plus zero", setup: [][]string{cl("EXSET", "k", "-0.0")}, cmd: cl("EXINCRBYFLOAT", "k", "0"), want: rBulk("0")},
		{name: "tiny negative prints -0", cmd: cl("EXINCRBYFLOAT", "k", "-1e-30"), want: rBulk("-0")},
		{name: "empty string is 0", cmd: cl("EXINCRBYFLOAT", "k", ""), want: rBulk("0")},
		{name: "stored empty string is 0", setup: [][]string{cl("EXSET", "k", "")}, cmd: cl("EXINCRBYFLOAT", "k", "2"), want: rBulk("2")},
		{name: "hex", cmd: cl("EXINCRBYFLOAT", "k", "0x10"), want: rBulk("16")},
		{name: "hex float", cmd: cl("EXINCRBYFLOAT", "k", "0x1p-2"), want: rBulk("0.25")},
		{name: "leading plus", cmd: cl("EXINCRBYFLOAT", "k", "+1"), want: rBulk("1")},
		{name: "leading dot", cmd: cl("EXINCRBYFLOAT", "k", ".5"), want: rBulk("0.5")},
		{name: "trailing dot", cmd: cl("EXINCRBYFLOAT", "k", "5."), want: rBulk("5")},
		{name: "exponent", cmd: cl("EXINCRBYFLOAT", "k", "1.5e3"), want: rBulk("1500")},
		{name: "trailing space", cmd: cl("EXINCRBYFLOAT", "k", "1 "), want: eNoFloat, after: []luaCheck{gone}},
		{name: "leading space", cmd: cl("EXINCRBYFLOAT", "k", " 1"), want: eNoFloat},
		{name: "dangling exponent", cmd: cl("EXINCRBYFLOAT", "k", "1e"), want: eNoFloat},
		{name: "nan", cmd: cl("EXINCRBYFLOAT", "k", "nan"), want: eNoFloat},
		{name: "overflowing literal", cmd: cl("EXINCRBYFLOAT", "k", "1e4933"), want: eNoFloat},
		{name: "underflowing literal", cmd: cl("EXINCRBYFLOAT", "k", "1e-5000"), want: eNoFloat},
		{name: "too long", cmd: cl("EXINCRBYFLOAT", "k", long), want: eNoFloat},
		{name: "inf", cmd: cl("EXINCRBYFLOAT", "k", "inf"), want: eOverflow, after: []luaCheck{gone}},
		{name: "+inf", cmd: cl("EXINCRBYFLOAT", "k", "+inf"), want: eOverflow},
		{name: "-infinity", cmd: cl("EXINCRBYFLOAT", "k", "-infinity"), want: eOverflow},
		{name: "stored inf", setup: [][]string{cl("EXSET", "k", "inf")}, cmd: cl("EXINCRBYFLOAT", "k", "1"), want: eOverflow},
		{name: "sum overflows", setup: [][]string{cl("EXSET", "k", "1e4932")}, cmd: cl("EXINCRBYFLOAT", "k", "1e4932"), want: eOverflow, after: []luaCheck{exv("1e4932", 1)}},
		{name: "type first", setup: [][]string{cl("SET", "k", "x")}, cmd: cl("EXINCRBYFLOAT", "k", "abc", "BOGUS"), want: eWrong},
		{name: "num before options", cmd: cl("EXINCRBYFLOAT", "k", "abc", "BOGUS"), want: eNoFloat},
		{name: "withversion not supported", cmd: cl("EXINCRBYFLOAT", "k", "1", "WITHVERSION"), want: eSyntax},
		{name: "def not supported", cmd: cl("EXINCRBYFLOAT", "k", "1", "DEF", "1"), want: eSyntax},
		{name: "nonegative not supported", cmd: cl("EXINCRBYFLOAT", "k", "1", "NONEGATIVE"), want: eSyntax},
		{name: "flags not supported", cmd: cl("EXINCRBYFLOAT", "k", "1", "FLAGS", "1"), want: eSyntax},
		{name: "expire 0", cmd: cl("EXINCRBYFLOAT", "k", "1", "EX", "0"), want: eSyntax},
		{name: "ver negative", cmd: cl("EXINCRBYFLOAT", "k", "1", "VER", "-1", "MIN", "x"), want: eSyntax},
		{name: "min not float", cmd: cl("EXINCRBYFLOAT", "k", "1", "MIN", "x"), want: eMinMax},
		{name: "max not float", cmd: cl("EXINCRBYFLOAT", "k", "1", "MAX", "1e"), want: eMinMax},
		{name: "max below min", cmd: cl("EXINCRBYFLOAT", "k", "1", "MIN", "1.5", "MAX", "1.25"), want: eMinMax},
		{name: "max below min infinite", cmd: cl("EXINCRBYFLOAT", "k", "1", "MIN", "inf", "MAX", "-inf"), want: eMinMax},
		{name: "min equals max", cmd: cl("EXINCRBYFLOAT", "k", "1", "MIN", "1", "MAX", "1.0"), want: rBulk("1")},
		{name: "max violated", cmd: cl("EXINCRBYFLOAT", "k", "1.5", "MAX", "1"), want: eOverflow, after: []luaCheck{gone}},
		{name: "min violated", cmd: cl("EXINCRBYFLOAT", "k", "-1.5", "MIN", "-1"), want: eOverflow},
		{name: "max reached", setup: [][]string{cl("EXSET", "k", "0.5")}, cmd: cl("EXINCRBYFLOAT", "k", "0.25", "MAX", "0.75"), want: rBulk("0.75")},
		// The bound is compared with the unrounded long-double sum.
		{name: "max below 80-bit sum", setup: [][]string{cl("EXSET", "k", "0.6")}, cmd: cl("EXINCRBYFLOAT", "k", "0.1", "MAX", "0.7"), want: eOverflow, after: []luaCheck{exv("0.6", 1)}},
		{name: "max equal to 80-bit sum", setup: [][]string{cl("EXSET", "k", "0.2")}, cmd: cl("EXINCRBYFLOAT", "k", "0.1", "MAX", "0.3"), want: rBulk("0.3")},
		{name: "min above 80-bit sum", setup: [][]string{cl("EXSET", "k", "-0.6")}, cmd: cl("EXINCRBYFLOAT", "k", "-0.1", "MIN", "-0.7"), want: eOverflow},
		{name: "hex bound rounds", cmd: cl("EXINCRBYFLOAT", "k", "0x1.8p1", "MAX", "0x2.fffffffffffffffffp0"), want: rBulk("3")},
		{name: "subnormal bounds", cmd: cl("EXINCRBYFLOAT", "k", "1e-4950", "MIN", "-1e-4950", "MAX", "1e-4950"), want: rBulk("0")},
		{name: "subnormal above max", cmd: cl("EXINCRBYFLOAT", "k", "2e-4950", "MAX", "1e-4950"), want: eOverflow},
		{name: "subnormal prints 0", cmd: cl("EXINCRBYFLOAT", "k", "4e-4951"), want: rBulk("0")},
		{name: "negative subnormal prints -0", cmd: cl("EXINCRBYFLOAT", "k", "-4e-4951"), want: rBulk("-0")},
		{name: "cancels below 1 ulp", setup: [][]string{cl("EXSET", "k", "-1")}, cmd: cl("EXINCRBYFLOAT", "k", "0.99999999999999999999"), want: rBulk("0")},
		{name: "negative below 17 decimals", setup: [][]string{cl("EXSET", "k", "-1")}, cmd: cl("EXINCRBYFLOAT", "k", "0.9999999999999999999"), want: rBulk("-0")},
		{name: "nul ends the number", cmd: cl("EXINCRBYFLOAT", "k", "2\x00junk", "MAX", "2"), want: rBulk("2")},
		{name: "nul alone is 0", cmd: cl("EXINCRBYFLOAT", "k", "\x00"), want: rBulk("0")},
		{name: "stored value ends at nul", setup: [][]string{cl("EXSET", "k", "1.5\x00x")}, cmd: cl("EXINCRBYFLOAT", "k", "1"), want: rBulk("2.5")},
		{name: "too long even after nul", cmd: cl("EXINCRBYFLOAT", "k", "1\x00"+long), want: eNoFloat},
		{name: "max infinite", cmd: cl("EXINCRBYFLOAT", "k", "1e3", "MAX", "inf", "MIN", "-inf"), want: rBulk("1000")},
		{name: "max -inf", cmd: cl("EXINCRBYFLOAT", "k", "1", "MAX", "-inf"), want: eOverflow},
		{name: "min +inf", cmd: cl("EXINCRBYFLOAT", "k", "1", "MIN", "inf"), want: eOverflow},
		{name: "xx missing", cmd: cl("EXINCRBYFLOAT", "k", "1", "XX"), want: rNil, after: []luaCheck{gone}},
		{name: "nx existing", setup: [][]string{cl("EXSET", "k", "1")}, cmd: cl("EXINCRBYFLOAT", "k", "1", "NX"), want: rNil},
		{name: "stored not float", setup: [][]string{cl("EXSET", "k", "abc")}, cmd: cl("EXINCRBYFLOAT", "k", "1"), want: eNoFloat, after: []luaCheck{exv("abc", 1)}},
		{name: "stored not float before ver", setup: [][]string{cl("EXSET", "k", "1x")}, cmd: cl("EXINCRBYFLOAT", "k", "1", "VER", "5"), want: eNoFloat},
		{name: "ver stale", setup: [][]string{cl("EXSET", "k", "1")}, cmd: cl("EXINCRBYFLOAT", "k", "1", "VER", "5"), want: eStale},
		{name: "ver matches", setup: [][]string{cl("EXSET", "k", "1")}, cmd: cl("EXINCRBYFLOAT", "k", "1", "VER", "1"), want: rBulk("2"), after: []luaCheck{exv("2", 2)}},
		{name: "abs", setup: [][]string{cl("EXSET", "k", "1")}, cmd: cl("EXINCRBYFLOAT", "k", "1", "ABS", "9"), want: rBulk("2"), after: []luaCheck{exv("2", 9)}},
		{name: "ttl removed", setup: [][]string{cl("EXSET", "k", "1", "EX", "100")}, cmd: cl("EXINCRBYFLOAT", "k", "1"), want: rBulk("2"), after: []luaCheck{chk(rInt(-1), "TTL", "k")}},
		{name: "keepttl", setup: [][]string{cl("EXSET", "k", "1", "EX", "100")}, cmd: cl("EXINCRBYFLOAT", "k", "1", "KEEPTTL"), want: rBulk("2"), after: []luaCheck{chk("~1:100", "TTL", "k")}},
		{name: "exat", cmd: cl("EXINCRBYFLOAT", "k", "1", "EXAT", "4102444800"), want: rBulk("1"), after: []luaCheck{chk("~1000000000:4102444800", "TTL", "k")}},
		{name: "flags kept, no scratch left", setup: [][]string{cl("EXSET", "k", "1", "FLAGS", "4")}, cmd: cl("EXINCRBYFLOAT", "k", "1"), want: rBulk("2"),
			after: []luaCheck{chk(rArr(rBulk("2"), rInt(2), rInt(4)), "EXGET", "k", "WITHFLAGS"), chk(rInt(4), "HLEN", "k")}},
		{name: "arity", cmd: cl("EXINCRBYFLOAT", "k"), want: eArity("exincrbyfloat")},
	})
}

func TestLuaEXCAS(t *testing.T) {
	exv := func(v string, ver int64) luaCheck { return chk(rArr(rBulk(v), rInt(ver)), "EXGET", "k") }
	okArr := func(ver int64) string { return rArr("+OK\r\n", "+\r\n", rInt(ver)) }
	runLuaCases(t, []luaCase{
		{name: "missing", cmd: cl("EXCAS", "k", "v", "1"), want: rInt(-1), after: []luaCheck{chk(rInt(0), "EXISTS", "k")}},
		{name: "success", setup: [][]string{cl("EXSET", "k", "v")}, cmd: cl("EXCAS", "k", "w", "1"), want: okArr(2), after: []luaCheck{exv("w", 2)}},
		{name: "stale", setup: [][]string{cl("EXSET", "k", "v", "EX", "100")}, cmd: cl("EXCAS", "k", "w", "5"), want: rArr("+CAS_FAILED\r\n", rBulk("v"), rInt(1)),
			after: []luaCheck{exv("v", 1), chk("~1:100", "TTL", "k")}},
		{name: "version 0", setup: [][]string{cl("EXSET", "k", "v", "ABS", "0")}, cmd: cl("EXCAS", "k", "w", "0"), want: okArr(1)},
		{name: "no 0 = any rule", setup: [][]string{cl("EXSET", "k", "v")}, cmd: cl("EXCAS", "k", "w", "0"), want: rArr("+CAS_FAILED\r\n", rBulk("v"), rInt(1))},
		{name: "ttl removed", setup: [][]string{cl("EXSET", "k", "v", "EX", "100")}, cmd: cl("EXCAS", "k", "w", "1"), want: okArr(2), after: []luaCheck{chk(rInt(-1), "TTL", "k")}},
		{name: "keepttl", setup: [][]string{cl("EXSET", "k", "v", "EX", "100")}, cmd: cl("EXCAS", "k", "w", "1", "KEEPTTL"), want: okArr(2), after: []luaCheck{chk("~1:100", "TTL", "k")}},
		{name: "ex", setup: [][]string{cl("EXSET", "k", "v")}, cmd: cl("EXCAS", "k", "w", "1", "EX", "50"), want: okArr(2), after: []luaCheck{chk("~1:50", "TTL", "k")}},
		{name: "flags kept", setup: [][]string{cl("EXSET", "k", "v", "FLAGS", "8")}, cmd: cl("EXCAS", "k", "w", "1"), want: okArr(2), after: []luaCheck{chk(rArr(rBulk("w"), rInt(2), rInt(8)), "EXGET", "k", "WITHFLAGS")}},
		{name: "version not integer", setup: [][]string{cl("EXSET", "k", "v")}, cmd: cl("EXCAS", "k", "w", "x"), want: eVerInt},
		{name: "version not integer on missing", cmd: cl("EXCAS", "k", "w", "1.0"), want: eVerInt},
		{name: "expire checked first", cmd: cl("EXCAS", "k", "w", "x", "EX", "y"), want: eSyntax},
		{name: "version before expire range", cmd: cl("EXCAS", "k", "w", "x", "EX", "0"), want: eVerInt},
		{name: "version negative", cmd: cl("EXCAS", "k", "w", "-1"), want: eSyntax},
		{name: "expire 0", cmd: cl("EXCAS", "k", "w", "1", "PX", "0"), want: eSyntax},
		{name: "nx not supported", cmd: cl("EXCAS", "k", "w", "1", "NX"), want: eSyntax},
		{name: "ver not supported", cmd: cl("EXCAS", "k", "w", "1", "VER", "1"), want: eSyntax},
		{name: "syntax before type", setup: [][]string{cl("SET", "k", "x")}, cmd: cl("EXCAS", "k", "w", "1", "BOGUS"), want: eSyntax},
		{name: "wrong type", setup: [][]string{cl("SET", "k", "x")}, cmd: cl("EXCAS", "k", "w", "1"), want: eWrong},
		{name: "wrap", setup: [][]string{cl("EXSET", "k", "v", "ABS", i64max)}, cmd: cl("EXCAS", "k", "w", i64max), want: okArr(-9223372036854775808)},
		{name: "arity", cmd: cl("EXCAS", "k", "w"), want: eArity("excas")},
	})
}

func TestLuaEXCAD(t *testing.T) {
	runLuaCases(t, []luaCase{
		{name: "missing", cmd: cl("EXCAD", "k", "1"), want: rInt(-1)},
		{name: "missing validates version", cmd: cl("EXCAD", "k", "abc"), want: eSyntax},
		{name: "wrong type first", setup: [][]string{cl("SET", "k", "x")}, cmd: cl("EXCAD", "k", "abc"), want: eWrong},
		{name: "mismatch", setup: [][]string{cl("EXSET", "k", "v")}, cmd: cl("EXCAD", "k", "2"), want: rInt(0), after: []luaCheck{chk(rInt(1), "EXISTS", "k")}},
		{name: "negative compares", setup: [][]string{cl("EXSET", "k", "v")}, cmd: cl("EXCAD", "k", "-5"), want: rInt(0)},
		{name: "match deletes", setup: [][]string{cl("EXSET", "k", "v")}, cmd: cl("EXCAD", "k", "1"), want: rInt(1), after: []luaCheck{chk(rInt(0), "EXISTS", "k")}},
		{name: "version 0", setup: [][]string{cl("EXSET", "k", "v", "ABS", "0")}, cmd: cl("EXCAD", "k", "0"), want: rInt(1)},
		{name: "wrapped version", setup: [][]string{cl("EXSET", "k", "v", "ABS", i64max), cl("EXSET", "k", "v")}, cmd: cl("EXCAD", "k", i64min), want: rInt(1)},
		{name: "recreated key starts at 1", setup: [][]string{cl("EXSET", "k", "v", "ABS", "9"), cl("EXCAD", "k", "9")}, cmd: cl("EXSET", "k", "v", "WITHVERSION"), want: rInt(1)},
		{name: "arity", cmd: cl("EXCAD", "k"), want: eArity("excad")},
		{name: "arity too many", cmd: cl("EXCAD", "k", "1", "2"), want: eArity("excad")},
	})
}

func TestLuaEXAPPEND(t *testing.T) {
	for _, cmd := range []string{"EXAPPEND", "EXPREPEND"} {
		lower := strings.ToLower(cmd)
		joined := "abcd"
		if cmd == "EXPREPEND" {
			joined = "cdab"
		}
		t.Run(cmd, func(t *testing.T) {
			exv := func(v string, ver int64) luaCheck { return chk(rArr(rBulk(v), rInt(ver)), "EXGET", "k") }
			runLuaCases(t, []luaCase{
				{name: "create", cmd: cl(cmd, "k", "ab"), want: rInt(1), after: []luaCheck{chk(rArr(rBulk("ab"), rInt(1), rInt(0)), "EXGET", "k", "WITHFLAGS"), chk(rInt(-1), "TTL", "k")}},
				{name: "join", setup: [][]string{cl("EXSET", "k", "ab")}, cmd: cl(cmd, "k", "cd"), want: rInt(2), after: []luaCheck{exv(joined, 2)}},
				{name: "ttl and flags untouched", setup: [][]string{cl("EXSET", "k", "ab", "EX", "100", "FLAGS", "6")}, cmd: cl(cmd, "k", "cd"), want: rInt(2),
					after: []luaCheck{chk("~1:100", "TTL", "k"), chk(rArr(rBulk(joined), rInt(2), rInt(6)), "EXGET", "k", "WITHFLAGS")}},
				{name: "xx missing", cmd: cl(cmd, "k", "ab", "XX"), want: rNil, after: []luaCheck{chk(rInt(0), "EXISTS", "k")}},
				{name: "nx existing", setup: [][]string{cl("EXSET", "k", "ab")}, cmd: cl(cmd, "k", "cd", "NX"), want: rNil},
				{name: "nx before type check", setup: [][]string{cl("SET", "k", "x")}, cmd: cl(cmd, "k", "cd", "NX"), want: rNil},
				{name: "wrong type", setup: [][]string{cl("SET", "k", "x")}, cmd: cl(cmd, "k", "cd"), want: eWrong},
				{name: "ver stale", setup: [][]string{cl("EXSET", "k", "ab")}, cmd: cl(cmd, "k", "cd", "VER", "3"), want: eStale, after: []luaCheck{exv("ab", 1)}},
				{name: "ver matches", setup: [][]string{cl("EXSET", "k", "ab")}, cmd: cl(cmd, "k", "cd", "VER", "1"), want: rInt(2)},
				{name: "ver 0", setup: [][]string{cl("EXSET", "k", "ab")}, cmd: cl(cmd, "k", "cd", "VER", "0"), want: rInt(2)},
				{name: "abs", setup: [][]string{cl("EXSET", "k", "ab")}, cmd: cl(cmd, "k", "cd", "ABS", "10"), want: rInt(10)},
				{name: "abs on create", cmd: cl(cmd, "k", "ab", "ABS", "0"), want: rInt(0)},
				{name: "ver not integer", cmd: cl(cmd, "k", "ab", "VER", "x"), want: eSyntax},
				{name: "ver negative", cmd: cl(cmd, "k", "ab", "VER", "-1"), want: eSyntax},
				{name: "ex not supported", cmd: cl(cmd, "k", "ab", "EX", "10"), want: eSyntax},
				{name: "keepttl not supported", cmd: cl(cmd, "k", "ab", "KEEPTTL"), want: eSyntax},
				{name: "withversion not supported", cmd: cl(cmd, "k", "ab", "WITHVERSION"), want: eSyntax},
				{name: "arity", cmd: cl(cmd, "k"), want: eArity(lower)},
			})
		})
	}
}

func TestLuaEXGAE(t *testing.T) {
	runLuaCases(t, []luaCase{
		{name: "missing", cmd: cl("EXGAE", "k", "EX", "10"), want: rNil},
		{name: "get and expire", setup: [][]string{cl("EXSET", "k", "v", "FLAGS", "2")}, cmd: cl("EXGAE", "k", "EX", "100"), want: rArr(rBulk("v"), rInt(1), rInt(2)),
			after: []luaCheck{chk("~1:100", "TTL", "k"), chk(rArr(rBulk("v"), rInt(1)), "EXGET", "k")}},
		{name: "px", setup: [][]string{cl("EXSET", "k", "v")}, cmd: cl("EXGAE", "k", "px", "100000"), want: rArr(rBulk("v"), rInt(1), rInt(0)), after: []luaCheck{chk("~1:100000", "PTTL", "k")}},
		{name: "pxat past", setup: [][]string{cl("EXSET", "k", "v")}, cmd: cl("EXGAE", "k", "PXAT", "1"), want: rArr(rBulk("v"), rInt(1), rInt(0)), after: []luaCheck{chk(rInt(0), "EXISTS", "k")}},
		{name: "exat", setup: [][]string{cl("EXSET", "k", "v")}, cmd: cl("EXGAE", "k", "EXAT", "4102444800"), want: rArr(rBulk("v"), rInt(1), rInt(0)), after: []luaCheck{chk("~1000000000:4102444800", "TTL", "k")}},
		{name: "keepttl", cmd: cl("EXGAE", "k", "KEEPTTL", "x"), want: eSyntax},
		{name: "keepttl alone", cmd: cl("EXGAE", "k", "KEEPTTL", "KEEPTTL"), want: eSyntax},
		{name: "nx", cmd: cl("EXGAE", "k", "EX", "10", "NX"), want: eSyntax},
		{name: "two expires", cmd: cl("EXGAE", "k", "EX", "10", "PX", "10"), want: eSyntax},
		{name: "ver", cmd: cl("EXGAE", "k", "VER", "1"), want: eSyntax},
		{name: "zero", cmd: cl("EXGAE", "k", "EX", "0"), want: eSyntax},
		{name: "not integer", cmd: cl("EXGAE", "k", "EX", "x"), want: eSyntax},
		{name: "syntax before type", setup: [][]string{cl("SET", "k", "x")}, cmd: cl("EXGAE", "k", "EX", "0"), want: eSyntax},
		{name: "wrong type", setup: [][]string{cl("SET", "k", "x")}, cmd: cl("EXGAE", "k", "EX", "10"), want: eWrong},
		{name: "arity", cmd: cl("EXGAE", "k", "EX"), want: eArity("exgae")},
	})
}

func TestLuaCASCAD(t *testing.T) {
	runLuaCases(t, []luaCase{
		{name: "cas missing", cmd: cl("CAS", "k", "a", "b"), want: rInt(-1), after: []luaCheck{chk(rInt(0), "EXISTS", "k")}},
		{name: "cas equal", setup: [][]string{cl("SET", "k", "a", "EX", "100")}, cmd: cl("CAS", "k", "a", "b"), want: rInt(1),
			after: []luaCheck{chk(rBulk("b"), "GET", "k"), chk(rInt(-1), "TTL", "k")}},
		{name: "cas keepttl", setup: [][]string{cl("SET", "k", "a", "EX", "100")}, cmd: cl("CAS", "k", "a", "b", "KEEPTTL"), want: rInt(1), after: []luaCheck{chk("~1:100", "TTL", "k")}},
		{name: "cas ex", setup: [][]string{cl("SET", "k", "a")}, cmd: cl("CAS", "k", "a", "b", "EX", "50"), want: rInt(1), after: []luaCheck{chk("~1:50", "TTL", "k")}},
		{name: "cas pxat", setup: [][]string{cl("SET", "k", "a")}, cmd: cl("CAS", "k", "a", "b", "PXAT", "4102444800000"), want: rInt(1), after: []luaCheck{chk("~1000000000:4102444800", "TTL", "k")}},
		{name: "cas differs", setup: [][]string{cl("SET", "k", "a", "EX", "100")}, cmd: cl("CAS", "k", "x", "b"), want: rInt(0),
			after: []luaCheck{chk(rBulk("a"), "GET", "k"), chk("~1:100", "TTL", "k")}},
		{name: "cas binary compare", setup: [][]string{cl("SET", "k", "a\x00b")}, cmd: cl("CAS", "k", "a\x00c", "b"), want: rInt(0)},
		{name: "cas exstring", setup: [][]string{cl("EXSET", "k", "a")}, cmd: cl("CAS", "k", "a", "b"), want: eWrong},
		{name: "cas list", setup: [][]string{cl("RPUSH", "k", "a")}, cmd: cl("CAS", "k", "a", "b"), want: eWrong},
		{name: "cas nx", cmd: cl("CAS", "k", "a", "b", "NX"), want: eSyntax},
		{name: "cas ex 0", setup: [][]string{cl("SET", "k", "a")}, cmd: cl("CAS", "k", "a", "b", "EX", "0"), want: eSyntax},
		{name: "cas ex keepttl", cmd: cl("CAS", "k", "a", "b", "EX", "1", "KEEPTTL"), want: eSyntax},
		{name: "cas syntax before type", setup: [][]string{cl("RPUSH", "k", "a")}, cmd: cl("CAS", "k", "a", "b", "EX", "x"), want: eSyntax},
		{name: "cas arity", cmd: cl("CAS", "k", "a"), want: eArity("cas")},
		{name: "cad missing", cmd: cl("CAD", "k", "a"), want: rInt(-1)},
		{name: "cad differs", setup: [][]string{cl("SET", "k", "a")}, cmd: cl("CAD", "k", "b"), want: rInt(0), after: []luaCheck{chk(rInt(1), "EXISTS", "k")}},
		{name: "cad equal", setup: [][]string{cl("SET", "k", "a")}, cmd: cl("CAD", "k", "a"), want: rInt(1), after: []luaCheck{chk(rInt(0), "EXISTS", "k")}},
		{name: "cad exstring", setup: [][]string{cl("EXSET", "k", "a")}, cmd: cl("CAD", "k", "a"), want: eWrong},
		{name: "cad hash", setup: [][]string{cl("HSET", "k", "a", "b")}, cmd: cl("CAD", "k", "a"), want: eWrong},
		{name: "cad arity", cmd: cl("CAD", "k"), want: eArity("cad")},
		{name: "cad arity too many", cmd: cl("CAD", "k", "a", "b"), want: eArity("cad")},
	})
}

// TestLuaKeyspace checks how an exString key behaves under plain Redis
// commands, and that keys which are not well-formed exStrings are never
// mis-read.
func TestLuaKeyspace(t *testing.T) {
	exv := func(key, v string, ver int64) luaCheck { return chk(rArr(rBulk(v), rInt(ver)), "EXGET", key) }
	withEx := [][]string{cl("EXSET", "k", "v", "FLAGS", "3")}
	runLuaCases(t, []luaCase{
		{name: "type exstring", setup: withEx, cmd: cl("EXTYPE", "k"), want: "+exstrtype\r\n"},
		{name: "type string", setup: [][]string{cl("SET", "k", "v")}, cmd: cl("EXTYPE", "k"), want: "+string\r\n"},
		{name: "type none", cmd: cl("EXTYPE", "k"), want: "+none\r\n"},
		{name: "type list", setup: [][]string{cl("RPUSH", "k", "v")}, cmd: cl("EXTYPE", "k"), want: "+list\r\n"},
		{name: "type user hash", setup: [][]string{cl("HSET", "k", "a", "b")}, cmd: cl("EXTYPE", "k"), want: "+hash\r\n"},
		{name: "type arity", cmd: cl("EXTYPE"), want: eArity("type")},
		{name: "type arity too many", cmd: cl("EXTYPE", "a", "b"), want: eArity("type")},
		{name: "get", setup: withEx, cmd: cl("GET", "k"), want: eWrong},
		{name: "append", setup: withEx, cmd: cl("APPEND", "k", "x"), want: eWrong},
		{name: "incr", setup: withEx, cmd: cl("INCR", "k"), want: eWrong},
		{name: "strlen", setup: withEx, cmd: cl("STRLEN", "k"), want: eWrong},
		{name: "rpush", setup: withEx, cmd: cl("RPUSH", "k", "x"), want: eWrong},
		{name: "exists", setup: withEx, cmd: cl("EXISTS", "k"), want: rInt(1)},
		{name: "del", setup: withEx, cmd: cl("DEL", "k"), want: rInt(1), after: []luaCheck{chk(rNil, "EXGET", "k"), chk(rInt(1), "EXSET", "k", "v", "WITHVERSION")}},
		{name: "unlink", setup: withEx, cmd: cl("UNLINK", "k"), want: rInt(1), after: []luaCheck{chk(rNil, "EXGET", "k")}},
		{name: "expire ttl persist", setup: withEx, cmd: cl("EXPIRE", "k", "100"), want: rInt(1),
			after: []luaCheck{chk("~1:100", "TTL", "k"), chk("~1:100000", "PTTL", "k"), chk(rInt(1), "PERSIST", "k"), chk(rInt(-1), "TTL", "k"), exv("k", "v", 1)}},
		{name: "rename moves everything", setup: [][]string{cl("EXSET", "k", "v", "FLAGS", "3", "ABS", "7", "EX", "100")}, cmd: cl("RENAME", "k", "k2"), want: rOK,
			after: []luaCheck{chk(rArr(rBulk("v"), rInt(7), rInt(3)), "EXGET", "k2", "WITHFLAGS"), chk("~1:100", "TTL", "k2"), chk(rInt(0), "EXISTS", "k")}},
		{name: "set overwrites", setup: withEx, cmd: cl("SET", "k", "x"), want: rOK, after: []luaCheck{chk(eWrong, "EXGET", "k"), chk(rBulk("x"), "GET", "k")}},
		{name: "set then exset restarts version", setup: [][]string{cl("EXSET", "k", "v", "ABS", "5"), cl("DEL", "k")}, cmd: cl("EXSET", "k", "v", "WITHVERSION"), want: rInt(1)},
		// Hashes that are not exStrings, or exStrings damaged by hash
		// commands, answer WRONGTYPE instead of being mis-read.
		{name: "user hash", setup: [][]string{cl("HSET", "k", "val", "1", "ver", "1", "flg", "0", "x", "1")}, cmd: cl("EXGET", "k"), want: eWrong},
		{name: "extra field", setup: [][]string{cl("EXSET", "k", "v"), cl("HSET", "k", "x", "1")}, cmd: cl("EXGET", "k"), want: eWrong,
			after: []luaCheck{chk("+hash\r\n", "EXTYPE", "k"), chk(eWrong, "EXSET", "k", "v"), chk(eWrong, "EXCAS", "k", "v", "1")}},
		{name: "field missing", setup: [][]string{cl("EXSET", "k", "v"), cl("HDEL", "k", "flg")}, cmd: cl("EXGET", "k"), want: eWrong},
		{name: "bad version", setup: [][]string{cl("EXSET", "k", "v"), cl("HSET", "k", "ver", "01")}, cmd: cl("EXINCRBY", "k", "1"), want: eWrong},
		{name: "bad flags", setup: [][]string{cl("EXSET", "k", "v"), cl("HSET", "k", "flg", "4294967296")}, cmd: cl("EXGET", "k"), want: eWrong},
		{name: "bad marker", setup: [][]string{cl("EXSET", "k", "v"), cl("HSET", "k", "_exs", "2")}, cmd: cl("EXAPPEND", "k", "x"), want: eWrong},
		{name: "damaged key keeps its content", setup: [][]string{cl("EXSET", "k", "v"), cl("HSET", "k", "x", "1")}, cmd: cl("EXINCRBYFLOAT", "k", "1"), want: eWrong,
			after: []luaCheck{chk(rInt(5), "HLEN", "k")}},
	})
}

// TestLuaMulti shows that a wrong-arity ex command inside MULTI is queued
// and fails alone, as a module command would.
func TestLuaMulti(t *testing.T) {
	addr := luaServer(t)
	for _, proto := range []int{2, 3} {
		lc := proxytest.Dial(t, addr)
		if proto == 3 {
			lc.Do("HELLO", "3")
		}
		steps := []struct {
			args []string
			want string
		}{
			{cl("MULTI"), rOK},
			{fcallPath(cl("EXSET")), "+QUEUED\r\n"},
			{fcallPath(cl("EXSET", "k", "v", "WITHVERSION")), "+QUEUED\r\n"},
			{fcallPath(cl("EXGET", "nokey")), "+QUEUED\r\n"},
			{cl("EXEC"), rArr(eArity("exset"), rInt(1), rNil)},
		}
		for _, s := range steps {
			want := s.want
			if proto == 3 {
				want = toRESP3(want)
			}
			if got := lc.Do(s.args...); got != want {
				t.Errorf("resp%d %q: got %q, want %q", proto, s.args, got, want)
			}
		}
		lc.Do("FLUSHALL")
	}
}

// TestLuaFloatMatchesINCRBYFLOAT uses Redis's own INCRBYFLOAT, which has
// the module's long-double arithmetic and formatting, as the oracle (only
// the sign of a zero result differs, covered in TestLuaEXINCRBYFLOAT).
func TestLuaFloatMatchesINCRBYFLOAT(t *testing.T) {
	addr := luaServer(t)
	lc := proxytest.Dial(t, addr)
	tests := []struct {
		base, incr string
		opts       []string
	}{
		{"0.1", "0.2", nil},
		{"1e20", "1", nil},
		{"1e300", "0", []string{"MAX", "inf", "MIN", "-inf"}},
		{"0", "1e4932", []string{"MIN", "-1e4932"}}, // a 4933-digit result
		{"-1e4932", "-1e4000", []string{"MAX", "1e4932"}},
		{"3.14159265358979323846", "2.71828182845904523536", nil},
		{"1e-17", "1e-17", nil},
		{"-7.5", "0x1p-10", nil},
		{"123456789.123456789", "-0.000000001", []string{"MAX", "123456790", "MIN", "123456789"}},
		{"0.1", "-0.3", nil},
		{"1.7976931348623157e308", "1.7976931348623157e308", nil}, // beyond double, fine in long double
	}
	for _, tc := range tests {
		lc.Do("FLUSHALL")
		lc.Do("SET", "plain", tc.base)
		want := lc.Do("INCRBYFLOAT", "plain", tc.incr)
		lc.Do(fcallPath(cl("EXSET", "k", tc.base))...)
		got := lc.Do(fcallPath(append(cl("EXINCRBYFLOAT", "k", tc.incr), tc.opts...))...)
		if got != want || !strings.HasPrefix(got, "$") {
			t.Errorf("%s + %s %v: EXINCRBYFLOAT %.80q, INCRBYFLOAT %.80q", tc.base, tc.incr, tc.opts, got, want)
		}
	}
}

// TestLuaFloatBoundsExact checks MIN/MAX decisions against an exact
// model of the module: the sum of two 64-bit-significand floats, rounded
// to nearest, compared with the bound (math/big with precision 64 is that
// model for these short decimals). The bounds include the exact decimal
// sum, where long-double rounding decides (0.6+0.1 > 0.7 in 80 bits).
func TestLuaFloatBoundsExact(t *testing.T) {
	addr := luaServer(t)
	lc := proxytest.Dial(t, addr)
	rng := rand.New(rand.NewSource(1))
	dec := func() string {
		s := strconv.Itoa(rng.Intn(1000))
		if f := rng.Intn(5); f > 0 {
			s += "." + fmt.Sprintf("%0*d", f, rng.Intn(int(math.Pow10(f))))
		}
		if rng.Intn(2) == 0 {
			s = "-" + s
		}
		return s
	}
	ld := func(s string) *big.Float {
		f, _, err := big.ParseFloat(s, 10, 64, big.ToNearestEven)
		if err != nil {
			t.Fatalf("parse %q: %v", s, err)
		}
		return f
	}
	format := func(f *big.Float) string {
		s := f.Text('f', 17)
		s = strings.TrimRight(s, "0")
		return strings.TrimSuffix(s, ".")
	}
	// sci draws m*10^e with a small m; huge and tiny exponents take the
	// exact path (big numbers) whenever the sum ties with the bound.
	sci := func(e int) (*big.Int, int, string) {
		m := big.NewInt(int64(1 + rng.Intn(9999)))
		if rng.Intn(2) == 0 {
			m.Neg(m)
		}
		return m, e, m.String() + "e" + strconv.Itoa(e)
	}
	for i := 0; i < 1300; i++ {
		var b, n, m string
		if i < 1000 {
			b, n = dec(), dec()
			exact, _ := new(big.Rat).SetString(b)
			nr, _ := new(big.Rat).SetString(n)
			exact.Add(exact, nr)
			switch i % 3 {
			case 0:
				m = exact.FloatString(4) // the decimal sum itself
			case 1:
				m = exact.FloatString(20) // idem, other spelling
			default:
				m = dec()
			}
		} else {
			e := rng.Intn(8000) - 4000
			bm, be, bs := sci(e)
			nm, ne, ns := sci(e + rng.Intn(7) - 3)
			if i%4 == 0 {
				// Operands that cancel to within 1e-9 or exactly: only
				// the exact sum tells its sign and size.
				nm = new(big.Int).Mul(bm, big.NewInt(-1000000))
				nm.Add(nm, big.NewInt(int64(rng.Intn(3)-1)))
				ne = be - 6
				ns = nm.String() + "e" + strconv.Itoa(ne)
			}
			b, n = bs, ns
			lo := min(be, ne)
			sum := new(big.Int).Mul(bm, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(be-lo)), nil))
			sum.Add(sum, new(big.Int).Mul(nm, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(ne-lo)), nil)))
			m = sum.String() + "e" + strconv.Itoa(lo)
			if i%3 == 0 {
				_, _, m = sci(e)
			}
		}
		opt := "MAX"
		if i%2 == 1 {
			opt = "MIN"
		}
		sum := new(big.Float).SetPrec(64).SetMode(big.ToNearestEven).Add(ld(b), ld(n))
		c := sum.Cmp(ld(m))
		want := rBulk(format(sum))
		if (opt == "MAX" && c > 0) || (opt == "MIN" && c < 0) {
			want = eOverflow
		}
		lc.Do("FLUSHALL")
		lc.Do(fcallPath(cl("EXSET", "k", b))...)
		if got := lc.Do(fcallPath(cl("EXINCRBYFLOAT", "k", n, opt, m))...); got != want {
			t.Errorf("%s + %s %s %s: got %q, want %q", b, n, opt, m, got, want)
		}
	}
}

// TestLuaFloatGrammar checks the Lua float parser against Redis's
// string2ld (the module's parser but for "" and NUL bytes) on random
// strings over the characters that matter to strtold, and on edge cases.
func TestLuaFloatGrammar(t *testing.T) {
	addr := luaServer(t)
	lc := proxytest.Dial(t, addr)
	inputs := []string{
		"0", "-0", "+0", "1", "-1", ".5", "5.", ".", "-.", "+.5", "1e5", "1E5", "1e+5", "1e-5", "1e", "1e+", "e5",
		"0x", "0x1", "0X1P3", "0x1p", "0x.8", "0x1.", "0x.p1", "0x1e+5", "0x1p-2", "0xg", "00x1", "-0x10",
		"inf", "-inf", "+INF", "infinity", "-Infinity", "infinit", "in", "nan", "-nan", "nan(1)",
		"1e4932", "1.18973149535723176502e4932", "1.18973149535723176508e4932", "1.2e4932", "1e4933",
		"3.64519953188247460253e-4951", "3e-4951", "1.9e-4951", "1.8e-4951", "1e-4951", "1e-5000", "0e99999999999999999999",
		"0x1p-16445", "0x1p-16446", "0x1.8p-16446", "0x1p16383", "0x1p16384", "0x1.ffffffffffffffffp16383", "0x1.fffffffffffffffffp16383",
		"1 ", " 1", "1\t", "1_0", "1,5", "--1", "+-1", "1e1.5", "1..5", "0.000000000000000000000000000001",
		"123456789012345678901234567890", "1" + strings.Repeat("0", 5118), strings.Repeat("0", 5000) + "1",
	}
	rng := rand.New(rand.NewSource(7))
	const alphabet = "0123456789.eEpPxX+-infa "
	for i := 0; i < 3000; i++ {
		b := make([]byte, 1+rng.Intn(8))
		for j := range b {
			b[j] = alphabet[rng.Intn(len(alphabet))]
		}
		inputs = append(inputs, string(b))
	}
	for _, in := range inputs {
		lc.Do("DEL", "oracle", "k")
		ref := lc.Do("HINCRBYFLOAT", "oracle", "f", in)
		want := ref
		switch {
		case strings.HasPrefix(ref, "-ERR value is not a valid float"):
			want = eNoFloat
		case strings.HasPrefix(ref, "-ERR value is NaN or Infinity"):
			want = eOverflow
		case strings.HasPrefix(ref, "-"):
			t.Fatalf("HINCRBYFLOAT %q: %q", in, ref)
		}
		got := lc.Do(fcallPath(cl("EXINCRBYFLOAT", "k", in))...)
		if got == rBulk("-0") && want == rBulk("0") && strings.HasPrefix(in, "-") {
			continue // Redis prints a negative result that rounds to 0 as "0", the module "-0"
		}
		if got != want {
			t.Errorf("EXINCRBYFLOAT %q = %q, HINCRBYFLOAT says %q", in, got, ref)
		}
	}
}

// TestLuaFailuresDoNotTouchWatch: a refused command changes nothing, so a
// WATCH on its key stays armed (the float commands write only on success).
func TestLuaFailuresDoNotTouchWatch(t *testing.T) {
	addr := luaServer(t)
	lc := proxytest.Dial(t, addr)
	tests := []struct {
		name  string
		setup [][]string
		cmd   []string
	}{
		{"not a float", nil, cl("EXINCRBYFLOAT", "k", "abc")},
		{"inf", nil, cl("EXINCRBYFLOAT", "k", "inf")},
		{"xx on missing", nil, cl("EXINCRBYFLOAT", "k", "1", "XX")},
		{"max", nil, cl("EXINCRBYFLOAT", "k", "2", "MAX", "1")},
		{"min on existing", [][]string{cl("EXSET", "k", "1")}, cl("EXINCRBYFLOAT", "k", "-2", "MIN", "0")},
		{"stale", [][]string{cl("EXSET", "k", "1")}, cl("EXINCRBYFLOAT", "k", "1", "VER", "7")},
		{"stored not a float", [][]string{cl("EXSET", "k", "x")}, cl("EXINCRBYFLOAT", "k", "1")},
		{"overflow", [][]string{cl("EXSET", "k", "1e4932")}, cl("EXINCRBYFLOAT", "k", "1e4932")},
		{"nx on existing", [][]string{cl("EXSET", "k", "1")}, cl("EXINCRBYFLOAT", "k", "1", "NX")},
		{"exincrby overflow", [][]string{cl("EXSET", "k", i64max)}, cl("EXINCRBY", "k", "1")},
		{"exset stale", [][]string{cl("EXSET", "k", "1")}, cl("EXSET", "k", "v", "VER", "9")},
		{"excas stale", [][]string{cl("EXSET", "k", "1")}, cl("EXCAS", "k", "v", "9")},
		{"exsetver missing", nil, cl("EXSETVER", "k", "3")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lc.TB = t
			lc.Do("FLUSHALL")
			for _, s := range tc.setup {
				lc.Do(fcallPath(s)...)
			}
			lc.Do("WATCH", "k")
			if got := lc.Do(fcallPath(tc.cmd)...); !strings.HasPrefix(got, "-") && !strings.HasPrefix(got, "$-1") && !strings.HasPrefix(got, "*3\r\n+CAS_FAILED") && got != rInt(0) {
				t.Fatalf("%q did not fail: %q", tc.cmd, got)
			}
			lc.Do("MULTI")
			lc.Do("PING")
			if got := lc.Do("EXEC"); got != rArr("+PONG\r\n") {
				t.Errorf("EXEC after a refused %q = %q: the WATCH was touched", tc.cmd, got)
			}
		})
	}
}

// TestLuaGoRedis drives the functions through go-redis in both protocols,
// the way applications see the replies.
func TestLuaGoRedis(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		t.Run("resp"+strconv.Itoa(proto), func(t *testing.T) {
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, Protocol: proto})
			t.Cleanup(func() { _ = rdb.Close() })
			if err := rdb.FlushAll(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			if _, err := rdb.FunctionLoadReplace(ctx, Library()).Result(); err != nil {
				t.Fatalf("FUNCTION LOAD: %v", err)
			}
			call := func(cmd string, args ...any) *redis.Cmd {
				return rdb.FCall(ctx, FunctionName(cmd), []string{"k"}, args...)
			}
			if v, err := call("exset", "v", "WITHVERSION").Int64(); err != nil || v != 1 {
				t.Errorf("EXSET WITHVERSION = %v, %v", v, err)
			}
			if v, err := call("exset", "w").Text(); err != nil || v != "OK" {
				t.Errorf("EXSET = %q, %v", v, err)
			}
			got, err := rdb.FCallRO(ctx, FunctionName("exget"), []string{"k"}, "WITHFLAGS").Slice()
			if err != nil || len(got) != 3 || got[0] != "w" || got[1] != int64(2) || got[2] != int64(0) {
				t.Errorf("EXGET via FCALL_RO = %#v, %v", got, err)
			}
			cas, err := call("excas", "x", "1").Slice()
			if err != nil || len(cas) != 3 || cas[0] != "CAS_FAILED" || cas[1] != "w" || cas[2] != int64(2) {
				t.Errorf("EXCAS stale = %#v, %v", cas, err)
			}
			cas, err = call("excas", "x", "2").Slice()
			if err != nil || len(cas) != 3 || cas[0] != "OK" || cas[1] != "" || cas[2] != int64(3) {
				t.Errorf("EXCAS = %#v, %v", cas, err)
			}
			if err := call("exset", "v", "EX", "0").Err(); err == nil || err.Error() != "ERR syntax error" {
				t.Errorf("EXSET EX 0 error = %v", err)
			}
			if err := rdb.FCall(ctx, FunctionName("exget"), []string{"missing"}).Err(); !errors.Is(err, redis.Nil) {
				t.Errorf("EXGET missing = %v, want redis.Nil", err)
			}
			if v, err := rdb.FCall(ctx, FunctionName("exincrbyfloat"), []string{"f"}, "0.1").Text(); err != nil || v != "0.1" {
				t.Errorf("EXINCRBYFLOAT = %q, %v", v, err)
			}
			if v, err := rdb.FCallRO(ctx, FunctionName("type"), []string{"k"}).Text(); err != nil || v != "exstrtype" {
				t.Errorf("TYPE via FCALL_RO = %q, %v", v, err)
			}
			// Only exget and extype are flagged no-writes.
			if err := rdb.FCallRO(ctx, FunctionName("exset"), []string{"k"}, "v").Err(); err == nil || !strings.Contains(err.Error(), "write flag") {
				t.Errorf("EXSET via FCALL_RO = %v, want a refusal", err)
			}
			// DUMP/RESTORE keeps value, version and flags.
			if err := call("exset", "d", "ABS", "77", "FLAGS", "5").Err(); err != nil {
				t.Fatal(err)
			}
			dump, err := rdb.Dump(ctx, "k").Result()
			if err != nil {
				t.Fatal(err)
			}
			if err := rdb.Restore(ctx, "k2", 0, dump).Err(); err != nil {
				t.Fatal(err)
			}
			got, err = rdb.FCall(ctx, FunctionName("exget"), []string{"k2"}, "WITHFLAGS").Slice()
			if err != nil || len(got) != 3 || got[0] != "d" || got[1] != int64(77) || got[2] != int64(5) {
				t.Errorf("EXGET after RESTORE = %#v, %v", got, err)
			}
			if err := rdb.Get(ctx, "k2").Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGTYPE") {
				t.Errorf("GET on exString = %v", err)
			}
		})
	}
}

func TestLuaAssembly(t *testing.T) {
	if len(Commands) != len(Handlers) {
		t.Fatalf("Commands and Handlers differ in length")
	}
	sum := sha1.Sum([]byte(luaBody))
	if v := Version(); v != hex.EncodeToString(sum[:])[:8] {
		t.Errorf("Version() = %q", v)
	}
	tests := []struct {
		cmd, handler string
	}{
		{"exset", "exset"}, {"EXSET", "exset"}, {"ExIncrByFloat", "exincrbyfloat"},
		{"type", "extype"}, {"TYPE", "extype"}, {"extype", "extype"}, {"cas", "cas"},
		{"get", ""}, {"", ""},
	}
	for _, tc := range tests {
		if got := Handler(tc.cmd); got != tc.handler {
			t.Errorf("Handler(%q) = %q, want %q", tc.cmd, got, tc.handler)
		}
		wantFn := ""
		if tc.handler != "" {
			wantFn = tc.handler + "_" + Version()
		}
		if got := FunctionName(tc.cmd); got != wantFn {
			t.Errorf("FunctionName(%q) = %q, want %q", tc.cmd, got, wantFn)
		}
		if (Script(tc.cmd) == "") != (tc.handler == "") || (ScriptSHA(tc.cmd) == "") != (tc.handler == "") {
			t.Errorf("Script/ScriptSHA(%q) presence wrong", tc.cmd)
		}
	}
	for i, cmd := range Commands {
		if Handler(cmd) != Handlers[i] {
			t.Errorf("Commands[%d] = %q does not map to Handlers[%d] = %q", i, cmd, i, Handlers[i])
		}
		if !strings.Contains(Library(), "function_name='"+FunctionName(cmd)+"'") {
			t.Errorf("Library() does not register %s", FunctionName(cmd))
		}
	}
	if !strings.HasPrefix(Library(), "#!lua name="+LibraryName()+"\n") {
		t.Errorf("Library() header: %q", Library()[:40])
	}
}

func TestFixBigInts(t *testing.T) {
	huge := rBulk(i64max)
	tests := []struct {
		name, h, reply string
		want           string // "" when nothing is fixed
	}{
		{"exset withversion", "exset", huge, rInt(9223372036854775807)},
		{"exset ok untouched", "exset", rOK, ""},
		{"exappend", "EXAPPEND", rBulk("9007199254740993"), ":9007199254740993\r\n"},
		{"exprepend negative", "exprepend", rBulk("-9223372036854775807"), ":-9223372036854775807\r\n"},
		{"exincrby", "exincrby", huge, rInt(9223372036854775807)},
		{"exincrby withversion", "exincrby", rArr(huge, rInt(3)), rArr(rInt(9223372036854775807), rInt(3))},
		{"exincrby both", "exincrby", rArr(huge, rBulk("9007199254740993")), rArr(rInt(9223372036854775807), ":9007199254740993\r\n")},
		{"exget version", "exget", rArr(rBulk("123"), huge), rArr(rBulk("123"), rInt(9223372036854775807))},
		{"exget value is data", "exget", rArr(rBulk("9223372036854775807"), rInt(1)), ""},
		{"exget withflags", "exget", rArr(rBulk("v\r\nx"), huge, rInt(0)), rArr(rBulk("v\r\nx"), rInt(9223372036854775807), rInt(0))},
		{"exgae", "exgae", rArr(rBulk(""), huge, rInt(0)), rArr(rBulk(""), rInt(9223372036854775807), rInt(0))},
		{"excas failed", "excas", rArr("+CAS_FAILED\r\n", rBulk("v"), huge), rArr("+CAS_FAILED\r\n", rBulk("v"), rInt(9223372036854775807))},
		{"excas ok", "excas", rArr(rOK, "+\r\n", huge), rArr(rOK, "+\r\n", rInt(9223372036854775807))},
		{"small ints untouched", "exget", rArr(rBulk("v"), rInt(1)), ""},
		{"float is data", "exincrbyfloat", rBulk("100"), ""},
		{"cas has no versions", "cas", rBulk("1"), ""},
		{"error untouched", "exset", eSyntax, ""},
		{"nil untouched", "exget", rNil, ""},
		{"resp3 nil untouched", "exget", "_\r\n", ""},
		{"incomplete", "exget", "*2\r\n$1\r\nv\r\n$19\r\n92233720", ""},
		{"trailing bytes", "exset", huge + rOK, ""},
		{"not a number", "exset", rBulk("12a"), ""},
		{"leading zero", "exset", rBulk("012"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := FixBigInts(tc.h, []byte(tc.reply))
			if ok != (tc.want != "") || string(got) != tc.want {
				t.Errorf("FixBigInts(%q, %q) = %q, %v; want %q", tc.h, tc.reply, got, ok, tc.want)
			}
		})
	}
}

// TestFixBigIntsOnTheWire feeds real replies of the library to FixBigInts
// and expects the module's bytes.
func TestFixBigIntsOnTheWire(t *testing.T) {
	addr := luaServer(t)
	for _, proto := range []int{2, 3} {
		lc := proxytest.Dial(t, addr)
		if proto == 3 {
			lc.Do("HELLO", "3")
		}
		lc.Do("FLUSHALL")
		steps := []struct {
			cmd  []string
			want string
		}{
			{cl("EXSET", "k", "v", "ABS", "9223372036854775806", "WITHVERSION"), rInt(9223372036854775806)},
			{cl("EXAPPEND", "k", "w"), rInt(9223372036854775807)},
			{cl("EXGET", "k", "WITHFLAGS"), rArr(rBulk("vw"), rInt(9223372036854775807), rInt(0))},
			{cl("EXCAS", "k", "x", "1"), rArr("+CAS_FAILED\r\n", rBulk("vw"), rInt(9223372036854775807))},
			{cl("EXGAE", "k", "EX", "100"), rArr(rBulk("vw"), rInt(9223372036854775807), rInt(0))},
			{cl("EXINCRBY", "n", "9007199254740993", "WITHVERSION"), rArr(rInt(9007199254740993), rInt(1))},
		}
		for _, s := range steps {
			raw := lc.Do(fcallPath(s.cmd)...)
			got, ok := FixBigInts(s.cmd[0], []byte(raw))
			if !ok || string(got) != s.want {
				t.Errorf("resp%d %q: raw %q fixed to %q, %v; want %q", proto, s.cmd, raw, got, ok, s.want)
			}
		}
	}
}

// FuzzFixBigInts: any bytes, complete or not, never panic; a fixed reply
// has nothing left to fix and keeps the reply's type.
func FuzzFixBigInts(f *testing.F) {
	for _, seed := range []string{
		rBulk(i64max), rArr(rBulk("v"), rBulk(i64max), rInt(0)), rArr("+CAS_FAILED\r\n", rBulk("v"), rBulk(i64min)),
		rArr(rBulk(i64max), rInt(1)), "*3\r\n$1\r\nv\r\n$19\r\n", "$-1\r\n", "*-1\r\n", "*2\r\n*1\r\n:1\r\n:2\r\n", "$5\r\n12\r\n",
	} {
		for _, h := range []string{"exset", "exget", "excas", "exincrby"} {
			f.Add(h, []byte(seed))
		}
	}
	f.Fuzz(func(t *testing.T, h string, reply []byte) {
		out, ok := FixBigInts(h, reply)
		if !ok {
			if out != nil {
				t.Fatalf("not ok but returned %q", out)
			}
			return
		}
		if out[0] != reply[0] && !(reply[0] == '$' && out[0] == ':') {
			t.Fatalf("type changed: %q -> %q", reply, out)
		}
		if again, ok := FixBigInts(h, out); ok {
			t.Fatalf("fixed twice: %q -> %q -> %q", reply, out, again)
		}
	})
}

func BenchmarkFixBigInts(b *testing.B) {
	for _, bc := range []struct{ name, h, reply string }{
		{"nothing to fix", "exget", rArr(rBulk(strings.Repeat("v", 100)), rInt(7), rInt(0))},
		{"fix version", "exget", rArr(rBulk(strings.Repeat("v", 100)), rBulk(i64max), rInt(0))},
	} {
		reply := []byte(bc.reply)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				FixBigInts(bc.h, reply)
			}
		})
	}
}
