package cluster

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy/resp"
)

// rawNode is a raw connection to one node, for its exact reply bytes.
type rawNode struct {
	tb testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(tb testing.TB, addr string, proto int) *rawNode {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	r := &rawNode{tb: tb, c: c, br: bufio.NewReader(c)}
	if proto == 3 {
		r.do("HELLO", "3")
	}
	return r
}

// do sends a command and returns its reply, whole.
func (r *rawNode) do(args ...string) []byte {
	r.tb.Helper()
	var cmd []byte
	cmd = resp.AppendArrayHeader(cmd, len(args))
	for _, a := range args {
		cmd = resp.AppendBulkString(cmd, a)
	}
	_ = r.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.c.Write(cmd); err != nil {
		r.tb.Fatal(err)
	}
	var f resp.Framer
	var out []byte
	buf := make([]byte, 64<<10)
	var pending []byte
	for {
		n, done, err := f.Next(pending)
		if err != nil {
			r.tb.Fatal(err)
		}
		out = append(out, pending[:n]...)
		pending = pending[n:]
		if done {
			return out
		}
		m, err := r.br.Read(buf)
		if err != nil {
			r.tb.Fatal(err)
		}
		pending = append(pending, buf[:m]...)
	}
}

// nodeOf returns a raw connection to the primary serving key.
func nodeOf(tb testing.TB, c *redistest.Cluster, conns map[string]*rawNode, key string, proto int) *rawNode {
	tb.Helper()
	n := c.SlotOwner(tb, SlotString(key))
	if conns[n.Addr] == nil {
		conns[n.Addr] = dialRaw(tb, n.Addr, proto)
	}
	return conns[n.Addr]
}

// The merges, fed with real replies of cluster nodes in both protocols,
// give what one Redis answers for the whole command.
func TestMergeRealReplies(t *testing.T) {
	c := needCluster(t)
	for _, proto := range []int{2, 3} {
		t.Run("resp"+strconv.Itoa(proto), func(t *testing.T) {
			conns := map[string]*rawNode{}
			keys := []string{"m{a}1", "m{b}2", "m{c}3", "m{a}4", "m{d}5", "m{missing}"}
			for i, k := range keys[:5] {
				nodeOf(t, c, conns, k, proto).do("SET", k, "v"+strconv.Itoa(i))
			}
			// MGET split by slot, merged by key position; the oracle is
			// the array of each key's own GET reply.
			groups := map[int][]int{}
			var order []int
			for i, k := range keys {
				s := SlotString(k)
				if _, ok := groups[s]; !ok {
					order = append(order, s)
				}
				groups[s] = append(groups[s], i)
			}
			var parts [][]byte
			var pos [][]int32
			for _, s := range order {
				args := []string{"MGET"}
				var p []int32
				for _, i := range groups[s] {
					args = append(args, keys[i])
					p = append(p, int32(i))
				}
				parts = append(parts, nodeOf(t, c, conns, keys[groups[s][0]], proto).do(args...))
				pos = append(pos, p)
			}
			want := resp.AppendArrayHeader(nil, len(keys))
			for _, k := range keys {
				want = append(want, nodeOf(t, c, conns, k, proto).do("GET", k)...)
			}
			if got := MergeByKey(parts, pos, len(keys)); !bytes.Equal(got, want) {
				t.Fatalf("MGET merged %q, want %q", got, want)
			}
			// EXISTS, DEL: sums.
			var ex, del [][]byte
			for _, k := range keys {
				ex = append(ex, nodeOf(t, c, conns, k, proto).do("EXISTS", k, k))
			}
			if got := AggregateIntegers(ex, AggSum); string(got) != ":10\r\n" {
				t.Fatalf("EXISTS summed: %q", got)
			}
			for _, k := range keys {
				del = append(del, nodeOf(t, c, conns, k, proto).do("DEL", k))
			}
			if got := AggregateIntegers(del, AggSum); string(got) != ":5\r\n" {
				t.Fatalf("DEL summed: %q", got)
			}
			// MSET: all OK; an error wins.
			oks := [][]byte{
				nodeOf(t, c, conns, "m{a}1", proto).do("MSET", "m{a}1", "x"),
				nodeOf(t, c, conns, "m{b}2", proto).do("MSET", "m{b}2", "y"),
			}
			if got := AllSucceeded(oks); string(got) != "+OK\r\n" {
				t.Fatalf("MSET merged: %q", got)
			}
			bad := nodeOf(t, c, conns, "m{a}1", proto).do("MSET", "m{a}1")
			if got := AllSucceeded(append(oks, bad)); !bytes.Equal(got, bad) || got[0] != '-' {
				t.Fatalf("MSET with an error: %q", got)
			}
			// SCRIPT EXISTS: element-wise AND across primaries.
			var prims []*rawNode
			for _, p := range c.Primaries(t) {
				prims = append(prims, dialRaw(t, p.Addr, proto))
				prims[len(prims)-1].do("SCRIPT", "FLUSH")
			}
			sha := string(bytes.TrimSpace(prims[0].do("SCRIPT", "LOAD", "return 1")[4:]))
			sha = sha[:40]
			var exists [][]byte
			for _, p := range prims {
				exists = append(exists, p.do("SCRIPT", "EXISTS", sha, "0000000000000000000000000000000000000000"))
			}
			if got := AggregateIntegers(exists, AggAnd); string(got) != "*2\r\n:0\r\n:0\r\n" {
				t.Fatalf("SCRIPT EXISTS on one node only: %q", got)
			}
			exists = exists[:0]
			for _, p := range prims {
				p.do("SCRIPT", "LOAD", "return 1")
				exists = append(exists, p.do("SCRIPT", "EXISTS", sha, "0000000000000000000000000000000000000000"))
			}
			if got := AggregateIntegers(exists, AggAnd); string(got) != "*2\r\n:1\r\n:0\r\n" {
				t.Fatalf("SCRIPT EXISTS everywhere: %q", got)
			}
			// DBSIZE and KEYS.
			for i := 0; i < 30; i++ {
				k := fmt.Sprintf("mk%d:%d", proto, i)
				nodeOf(t, c, conns, k, proto).do("SET", k, "1")
			}
			var sizes, keysReplies [][]byte
			total := 0
			for _, p := range prims {
				sizes = append(sizes, p.do("DBSIZE"))
				kr := p.do("KEYS", fmt.Sprintf("mk%d:*", proto))
				_, el, ok := Elements(kr)
				if !ok {
					t.Fatalf("KEYS reply %q", kr)
				}
				total += len(el)
				keysReplies = append(keysReplies, kr)
			}
			if got, _ := integerReply(AggregateIntegers(sizes, AggSum)); got < 30 {
				t.Fatalf("DBSIZE summed: %d", got)
			}
			if _, el, ok := Elements(ConcatArrays(keysReplies)); !ok || len(el) != 30 || total != 30 {
				t.Fatalf("KEYS joined: %d elements (%v)", len(el), ok)
			}
			// SCAN: the node's cursor carried with the primary's index.
			sr := prims[1].do("SCAN", "0", "COUNT", "1")
			_, el, _ := Elements(sr)
			next, _ := bulkValue(el[0])
			got := ScanReply(sr, 1, 3)
			_, gel, ok := Elements(got)
			if !ok || !bytes.Equal(gel[1], el[1]) {
				t.Fatalf("SCAN reply %q from %q", got, sr)
			}
			gc, _ := bulkValue(gel[0])
			nc, _ := strconv.ParseUint(string(next), 10, 64)
			wantCur := uint64(2)
			if nc != 0 {
				wantCur = nc<<ScanCursorBits | 1
			}
			if string(gc) != strconv.FormatUint(wantCur, 10) {
				t.Fatalf("SCAN cursor %s, want %d (node's %d)", gc, wantCur, nc)
			}
			// RANDOMKEY: a non-null one.
			empty := []byte("$-1\r\n")
			if proto == 3 {
				empty = []byte("_\r\n")
			}
			rk := prims[0].do("RANDOMKEY")
			if got := PickNonNull([][]byte{empty, rk, empty}, func(int) int { return 0 }); !bytes.Equal(got, rk) {
				t.Fatalf("RANDOMKEY picked %q", got)
			}
			if got := PickNonNull([][]byte{empty, empty}, func(int) int { return 0 }); !bytes.Equal(got, empty) {
				t.Fatalf("RANDOMKEY of nothing: %q", got)
			}
		})
	}
}

func TestScanReplyCursor(t *testing.T) {
	reply := func(cur string) []byte {
		b := resp.AppendArrayHeader(nil, 2)
		b = resp.AppendBulkString(b, cur)
		return append(b, "*1\r\n$1\r\nk\r\n"...)
	}
	for _, tt := range []struct {
		node      string
		idx, n    int
		wantCur   string
		unchanged bool
	}{
		{"0", 0, 3, "1", false},
		{"0", 2, 3, "0", false},
		{"17", 2, 3, "17410", false}, // 17<<10 | 2
		{"x", 0, 3, "", true},
		{"18446744073709551615", 0, 3, "", true}, // beyond what the proxy's cursor can carry
	} {
		got := ScanReply(reply(tt.node), tt.idx, tt.n)
		if tt.unchanged {
			if !bytes.Equal(got, reply(tt.node)) {
				t.Errorf("%s: %q", tt.node, got)
			}
			continue
		}
		if !bytes.Equal(got, reply(tt.wantCur)) {
			t.Errorf("node cursor %s of primary %d/%d: %q, want cursor %s", tt.node, tt.idx, tt.n, got, tt.wantCur)
		}
		idx, nc := ScanCursor(17410)
		if idx != 2 || nc != 17 {
			t.Errorf("ScanCursor(17410) = %d, %d", idx, nc)
		}
	}
	if got := ScanReply([]byte("-ERR invalid cursor\r\n"), 0, 3); string(got) != "-ERR invalid cursor\r\n" {
		t.Errorf("error: %q", got)
	}
}

func TestAggregateIntegers(t *testing.T) {
	ints := func(vs ...string) [][]byte {
		var out [][]byte
		for _, v := range vs {
			out = append(out, []byte(v))
		}
		return out
	}
	for _, tt := range []struct {
		parts [][]byte
		agg   Agg
		want  string
	}{
		{ints(":1\r\n", ":2\r\n", ":3\r\n"), AggSum, ":6\r\n"},
		{ints(":5\r\n", ":-2\r\n"), AggMin, ":-2\r\n"},
		{ints(":5\r\n", ":-2\r\n"), AggMax, ":5\r\n"},
		{ints(":1\r\n", ":0\r\n"), AggAnd, ":0\r\n"},
		{ints(":1\r\n", ":0\r\n"), AggOr, ":1\r\n"},
		{ints(":1\r\n", "-ERR x\r\n", "-ERR y\r\n"), AggSum, "-ERR x\r\n"},
		{ints("*2\r\n:1\r\n:1\r\n", "*2\r\n:1\r\n:0\r\n"), AggAnd, "*2\r\n:1\r\n:0\r\n"},
		{ints("*2\r\n:0\r\n:0\r\n", "*2\r\n:1\r\n:0\r\n"), AggOr, "*2\r\n:1\r\n:0\r\n"},
		{ints(":1\r\n", "+OK\r\n"), AggSum, "+OK\r\n"}, // unlike replies: one of them as it is
		{nil, AggSum, ":0\r\n"},
	} {
		if got := AggregateIntegers(tt.parts, tt.agg); string(got) != tt.want {
			t.Errorf("%q %d: %q, want %q", tt.parts, tt.agg, got, tt.want)
		}
	}
}

// FuzzElements: splitting any bytes into an array's elements never
// panics, and what it accepts re-joins to the input.
func FuzzElements(f *testing.F) {
	f.Add([]byte("*2\r\n$1\r\na\r\n:1\r\n"))
	f.Add([]byte("*3\r\n_\r\n*1\r\n+x\r\n%1\r\n+k\r\n+v\r\n"))
	f.Add([]byte("~1\r\n$-1\r\n"))
	f.Add([]byte("*1\r\n$5\r\nab"))
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, elems, ok := Elements(b)
		if !ok {
			return
		}
		joined := append([]byte{typ}, strconv.Itoa(len(elems))...)
		joined = append(joined, '\r', '\n')
		for _, e := range elems {
			joined = append(joined, e...)
		}
		if _, n, _, hok := header(b); !hok || n != len(elems) {
			t.Fatalf("header disagrees: %q", b)
		}
		if !bytes.HasSuffix(b, joined[bytes.IndexByte(joined, '\n')+1:]) {
			t.Fatalf("elements %q do not re-join to %q", elems, b)
		}
		ConcatArrays([][]byte{b, b})
		MergeByKey([][]byte{b}, [][]int32{make([]int32, len(elems))}, len(elems))
		ScanReply(b, 0, 2)
	})
}

// FUNCTION LIST of every primary merges into each library once, the
// first node's entry, whatever the protocol and LIBRARYNAME/WITHCODE.
func TestFunctionLibrariesRealReplies(t *testing.T) {
	c := needCluster(t)
	for _, proto := range []int{2, 3} {
		t.Run("resp"+strconv.Itoa(proto), func(t *testing.T) {
			var prims []*rawNode
			for _, p := range c.Primaries(t) {
				prims = append(prims, dialRaw(t, p.Addr, proto))
			}
			for i, p := range prims {
				p.do("FUNCTION", "FLUSH")
				p.do("FUNCTION", "LOAD", "#!lua name=mlshared\nredis.register_function('mlf', function() return 1 end)")
				if i == len(prims)-1 {
					p.do("FUNCTION", "LOAD", "#!lua name=mlone\nredis.register_function('mlg', function() return 2 end)")
				}
			}
			t.Cleanup(func() {
				for _, p := range prims {
					p.do("FUNCTION", "FLUSH")
				}
			})
			for _, args := range [][]string{
				{"FUNCTION", "LIST"},
				{"FUNCTION", "LIST", "WITHCODE"},
				{"FUNCTION", "LIST", "LIBRARYNAME", "mlo*"},
			} {
				var parts [][]byte
				for _, p := range prims {
					parts = append(parts, p.do(args...))
				}
				got := FunctionLibraries(parts)
				_, libs, ok := Elements(got)
				if !ok {
					t.Fatalf("%v: merged %q", args, got)
				}
				var names []string
				for _, lib := range libs {
					n, ok := field(lib, "library_name")
					if !ok {
						t.Fatalf("%v: library without a name: %q", args, lib)
					}
					v, _ := bulkValue(n)
					names = append(names, string(v))
					if proto == 3 && lib[0] != '%' {
						t.Fatalf("%v: RESP3 library not a map: %q", args, lib)
					}
					if len(args) == 3 && !bytes.Contains(lib, []byte("register_function")) {
						t.Fatalf("%v: no code in %q", args, lib)
					}
				}
				want := "[mlshared mlone]"
				if len(args) == 4 {
					want = "[mlone]"
				}
				if fmt.Sprint(names) != want {
					t.Fatalf("%v: libraries %v, want %s", args, names, want)
				}
				// The shared library is the first node's entry, byte for byte.
				if len(args) != 4 {
					_, first, _ := Elements(parts[0])
					if !bytes.Equal(libs[0], first[0]) {
						t.Fatalf("%v: %q is not the first node's %q", args, libs[0], first[0])
					}
				}
			}
			bad := prims[0].do("FUNCTION", "LIST", "NOSUCHARG")
			if got := FunctionLibraries([][]byte{prims[1].do("FUNCTION", "LIST"), bad}); !bytes.Equal(got, bad) {
				t.Fatalf("an error is the reply: %q", got)
			}
		})
	}
}

func TestFunctionStatsRunningScript(t *testing.T) {
	idle2 := []byte("*4\r\n$14\r\nrunning_script\r\n$-1\r\n$7\r\nengines\r\n*2\r\n$3\r\nLUA\r\n*4\r\n$15\r\nlibraries_count\r\n:1\r\n$15\r\nfunctions_count\r\n:1\r\n")
	idle3 := []byte("%2\r\n$14\r\nrunning_script\r\n_\r\n$7\r\nengines\r\n%1\r\n$3\r\nLUA\r\n%2\r\n$15\r\nlibraries_count\r\n:1\r\n$15\r\nfunctions_count\r\n:1\r\n")
	run2 := "*6\r\n$4\r\nname\r\n$1\r\nf\r\n$7\r\ncommand\r\n*1\r\n$5\r\nFCALL\r\n$11\r\nduration_ms\r\n:7\r\n"
	run3 := "%3\r\n$4\r\nname\r\n$1\r\nf\r\n$7\r\ncommand\r\n*1\r\n$5\r\nFCALL\r\n$11\r\nduration_ms\r\n:7\r\n"
	busy2 := bytes.Replace(idle2, []byte("$-1\r\n"), []byte(run2), 1)
	busy3 := bytes.Replace(idle3, []byte("_\r\n"), []byte(run3), 1)
	for _, tc := range []struct {
		name  string
		parts [][]byte
		want  []byte
	}{
		{"resp2 idle", [][]byte{idle2, idle2}, idle2},
		{"resp3 idle", [][]byte{idle3, idle3, idle3}, idle3},
		{"resp2 busy second", [][]byte{idle2, busy2, idle2}, busy2},
		{"resp3 busy last", [][]byte{idle3, idle3, busy3}, busy3},
		{"error", [][]byte{idle2, []byte("-ERR x\r\n")}, []byte("-ERR x\r\n")},
	} {
		if got := FunctionStats(tc.parts); !bytes.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestOneSucceededKill(t *testing.T) {
	notbusy := []byte("-NOTBUSY No scripts in execution right now.\r\n")
	unkillable := []byte("-UNKILLABLE Sorry the script already executed write commands against the dataset.\r\n")
	for _, tc := range []struct {
		parts [][]byte
		want  []byte
	}{
		{[][]byte{notbusy, []byte("+OK\r\n"), notbusy}, []byte("+OK\r\n")},
		{[][]byte{notbusy, notbusy, unkillable}, unkillable},
		{[][]byte{notbusy, notbusy}, notbusy},
	} {
		if got := OneSucceeded(tc.parts); !bytes.Equal(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.parts, got, tc.want)
		}
	}
}

// FuzzFunctionMerges: the FUNCTION LIST and STATS merges take any bytes
// without panicking; a merged list is a well-formed array whose
// libraries are elements of the parts, and a merged STATS keeps the
// first part's shape.
func FuzzFunctionMerges(f *testing.F) {
	f.Add([]byte("*1\r\n%3\r\n$12\r\nlibrary_name\r\n$4\r\nlib1\r\n$6\r\nengine\r\n$3\r\nLUA\r\n$9\r\nfunctions\r\n*0\r\n"),
		[]byte("*1\r\n*2\r\n$12\r\nlibrary_name\r\n$4\r\nlib2\r\n"))
	f.Add([]byte("%2\r\n$14\r\nrunning_script\r\n_\r\n$7\r\nengines\r\n%0\r\n"),
		[]byte("%2\r\n$14\r\nrunning_script\r\n%1\r\n$4\r\nname\r\n$1\r\nf\r\n$7\r\nengines\r\n%0\r\n"))
	f.Add([]byte("%1\r\n$1\r\na"), []byte("-ERR x\r\n"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		if len(a) == 0 || len(b) == 0 {
			return
		}
		parts := [][]byte{a, b}
		if got := FunctionLibraries(parts); !bytes.Equal(got, a) && !bytes.Equal(got, b) {
			_, libs, ok := Elements(got)
			if !ok {
				t.Fatalf("merged list %q of %q is not an array", got, parts)
			}
			for _, l := range libs {
				if !bytes.Contains(a, l) && !bytes.Contains(b, l) {
					t.Fatalf("library %q is in no part of %q", l, parts)
				}
			}
		}
		if got := FunctionStats(parts); !bytes.Equal(got, a) && !bytes.Equal(got, b) {
			if got[0] != a[0] {
				t.Fatalf("merged stats %q of %q changed the type", got, parts)
			}
			if _, _, ok := mapPairs(got); !ok {
				t.Fatalf("merged stats %q of %q is malformed", got, parts)
			}
		}
	})
}
