package exstring

// Cases for the paths the cheaper load/store of exstring.lua added:
// reading a key with HLEN (under pcall) then HMGET (hashes of every size
// and encoding),
// writing only the fields that change, skipping PERSIST on a new key, the
// small-integer fast paths, and errors other than WRONGTYPE that the Lua
// catches with pcall and must still raise. Same harness as lua_test.go:
// raw reply bytes, FCALL and EVALSHA, RESP2 and RESP3.

import (
	"strconv"
	"strings"
	"testing"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
)

func TestLuaStorageEdges(t *testing.T) {
	long := strings.Repeat("x", 200) // beyond hash-max-listpack-value: a hashtable-encoded hash
	exv := func(v string, ver int64) luaCheck { return chk(rArr(rBulk(v), rInt(ver)), "EXGET", "k") }
	sixFields := cl("HSET", "k", "_exs", "1", "val", "v", "ver", "1", "flg", "0", "a", "1", "b", "2")
	bigHash := []string{"HSET", "k"}
	for i := 0; i < 200; i++ {
		bigHash = append(bigHash, "f"+strconv.Itoa(i), "v")
	}
	many := func(head []string, word string, n int) []string {
		out := append([]string(nil), head...)
		for i := 0; i < n; i++ {
			out = append(out, word)
		}
		return out
	}
	runLuaCases(t, []luaCase{
		{name: "many arguments", cmd: many(cl("EXSET", "k", "v"), "NX", 100), want: rOK, after: []luaCheck{exv("v", 1)}},
		{name: "many arguments, xx on missing", cmd: many(cl("EXSET", "k", "v"), "XX", 65), want: rNil},
		{name: "many arguments, arity", cmd: many(cl("EXGET", "k"), "x", 70), want: eArity("exget")},
		{name: "long value create", cmd: cl("EXSET", "k", long, "WITHVERSION"), want: rInt(1), after: []luaCheck{exv(long, 1), chk(rInt(4), "HLEN", "k")}},
		{name: "long value cas", setup: [][]string{cl("EXSET", "k", long, "FLAGS", "7")}, cmd: cl("EXCAS", "k", long+"y", "1"), want: rArr("+OK\r\n", "+\r\n", rInt(2)),
			after: []luaCheck{chk(rArr(rBulk(long+"y"), rInt(2), rInt(7)), "EXGET", "k", "WITHFLAGS")}},
		{name: "long value cas stale", setup: [][]string{cl("EXSET", "k", long)}, cmd: cl("EXCAS", "k", "v", "9"), want: rArr("+CAS_FAILED\r\n", rBulk(long), rInt(1))},
		{name: "hash of six fields, ours among them", setup: [][]string{sixFields}, cmd: cl("EXGET", "k"), want: eWrong, after: []luaCheck{chk(rInt(6), "HLEN", "k")}},
		{name: "hash of six fields: no write", setup: [][]string{sixFields}, cmd: cl("EXSET", "k", "w"), want: eWrong, after: []luaCheck{chk(rInt(6), "HLEN", "k")}},
		{name: "big hash", setup: [][]string{bigHash}, cmd: cl("EXCAS", "k", "w", "1"), want: eWrong, after: []luaCheck{chk(rInt(200), "HLEN", "k")}},
		{name: "big hash type", setup: [][]string{bigHash}, cmd: cl("EXTYPE", "k"), want: "+hash\r\n"},
		{name: "set", setup: [][]string{cl("SADD", "k", "a")}, cmd: cl("EXGET", "k"), want: eWrong},
		{name: "update keeps exactly four fields", setup: [][]string{cl("EXSET", "k", "v", "FLAGS", "3")}, cmd: cl("EXSET", "k", "w", "FLAGS", "4"), want: rOK,
			after: []luaCheck{chk(rInt(4), "HLEN", "k"), chk(rArr(rBulk("w"), rInt(2), rInt(4)), "EXGET", "k", "WITHFLAGS")}},
		{name: "incrby removes ttl", setup: [][]string{cl("EXSET", "k", "1", "PX", "100000")}, cmd: cl("EXINCRBY", "k", "1"), want: rInt(2), after: []luaCheck{chk(rInt(-1), "PTTL", "k")}},
		{name: "create then ttl", cmd: cl("EXINCRBY", "k", "5", "EX", "100"), want: rInt(5), after: []luaCheck{chk("~1:100", "TTL", "k")}},
		{name: "fifteen digits sum exactly", setup: [][]string{cl("EXSET", "k", "999999999999999")}, cmd: cl("EXINCRBY", "k", "999999999999999"), want: rInt(1999999999999998)},
		{name: "fifteen digits negative", setup: [][]string{cl("EXSET", "k", "-99999999999999")}, cmd: cl("EXINCRBY", "k", "99999999999999"), want: rInt(0), after: []luaCheck{exv("0", 2)}},
		{name: "sixteen digits", setup: [][]string{cl("EXSET", "k", "9999999999999999")}, cmd: cl("EXINCRBY", "k", "1"), want: rInt(10000000000000000)},
		{name: "version fifteen digits counts on", setup: [][]string{cl("EXSET", "k", "v", "ABS", "999999999999999")}, cmd: cl("EXSET", "k", "v", "WITHVERSION"), want: rInt(1000000000000000)},
		{name: "cas on a set", setup: [][]string{cl("SADD", "k", "a")}, cmd: cl("CAS", "k", "a", "b"), want: eWrong},
		{name: "cad on an exstring leaves it", setup: [][]string{cl("EXSET", "k", "a")}, cmd: cl("CAD", "k", "a"), want: eWrong, after: []luaCheck{exv("a", 1)}},
	})
}

// An ACL refusal of a command the Lua reads with (HLEN, GET) is
// caught by pcall beside WRONGTYPE and must be raised as Redis raises a
// refused redis.call, not answered as WRONGTYPE or "missing".
func TestLuaRaisesACLRefusals(t *testing.T) {
	srv := redistest.Start(t)
	lc := proxytest.Dial(t, srv.Addr)
	if got := lc.Do("FUNCTION", "LOAD", Library()); got != rBulk(LibraryName()) {
		t.Fatalf("FUNCTION LOAD = %q", got)
	}
	lc.Do("SET", "plain", "a")
	lc.Do(fcallPath(cl("EXSET", "ex", "v"))...)
	if got := lc.Do("ACL", "SETUSER", "u", "on", ">pw", "~*", "+@all", "-hlen", "-get"); got != rOK {
		t.Fatalf("ACL SETUSER = %q", got)
	}
	u := proxytest.Dial(t, srv.Addr)
	if got := u.Do("AUTH", "u", "pw"); got != rOK {
		t.Fatalf("AUTH = %q", got)
	}
	const refused = "-ERR The user executing the script can't run this command or subcommand"
	for _, cmd := range [][]string{
		cl("EXGET", "ex"), cl("EXGET", "missing"), cl("EXCAS", "ex", "w", "1"), cl("EXTYPE", "plain"),
		cl("CAS", "plain", "a", "b"), cl("CAD", "missing", "a"),
	} {
		if got := u.Do(fcallPath(cmd)...); !strings.HasPrefix(got, refused) {
			t.Errorf("%q by a user without HLEN and GET: %q, want %q...", cmd, got, refused)
		}
	}
	if got := lc.Do("GET", "plain"); got != rBulk("a") {
		t.Errorf("plain key changed: %q", got)
	}
}
