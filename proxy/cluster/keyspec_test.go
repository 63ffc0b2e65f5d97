package cluster

import (
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

var update = flag.Bool("update", false, "rewrite testdata/command-7.0.15.resp.gz from the test cluster's COMMAND reply")

const fixture = "testdata/command-7.0.15.resp.gz"

// fixtureTable is the table of the COMMAND reply of Redis 7.0.15, kept in
// testdata so unit tests and fuzzing need no server.
func fixtureTable(tb testing.TB) *Table {
	tb.Helper()
	f, err := os.Open(fixture)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		tb.Fatal(err)
	}
	v, rest, err := decodeRESP(raw)
	if err != nil || len(rest) != 0 {
		tb.Fatalf("fixture: %v (%d bytes left)", err, len(rest))
	}
	tab, err := NewTable(v)
	if err != nil {
		tb.Fatal(err)
	}
	return tab
}

// TestCommandFixture rewrites the fixture with -update, and otherwise
// checks that it still describes the test cluster's Redis.
func TestCommandFixture(t *testing.T) {
	needCluster(t)
	reply, err := anyNode(t).Do(bg(), "COMMAND").Result()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		_, _ = zw.Write(encodeRESP(reply))
		_ = zw.Close()
		if err := os.WriteFile(fixture, gz.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	live, err := NewTable(reply)
	if err != nil {
		t.Fatal(err)
	}
	fix := fixtureTable(t)
	var a, b []string
	for _, c := range live.Commands() {
		a = append(a, fmt.Sprintf("%s %d %d %+v", c.Name, c.Arity, c.Flags, c.specs))
	}
	for _, c := range fix.Commands() {
		b = append(b, fmt.Sprintf("%s %d %d %+v", c.Name, c.Arity, c.Flags, c.specs))
	}
	if !slices.Equal(a, b) {
		t.Fatalf("%s differs from the server's COMMAND; run go test ./proxy/cluster -run TestCommandFixture -update", fixture)
	}
}

func args(s ...string) [][]byte {
	out := make([][]byte, len(s))
	for i, x := range s {
		out[i] = []byte(x)
	}
	return out
}

func TestKeys(t *testing.T) {
	tab := fixtureTable(t)
	tests := []struct {
		cmd  []string
		want []int
	}{
		{[]string{"GET", "k"}, []int{1}},
		{[]string{"get", "k"}, []int{1}},
		{[]string{"GeT", "k"}, []int{1}},
		{[]string{"GET"}, nil}, // arity: the node replies with the error
		{[]string{"GET", "a", "b"}, nil},
		{[]string{"NOSUCH", "a"}, nil},
		{[]string{"MSET", "a", "1", "b", "2"}, []int{1, 3}},
		{[]string{"MSET", "a", "1", "b"}, []int{1, 3}}, // as GETKEYS: the node reports the arity
		{[]string{"MGET", "a", "b", "c"}, []int{1, 2, 3}},
		{[]string{"DEL", "a", "b"}, []int{1, 2}},
		{[]string{"SET", "k", "v", "GET"}, []int{1}},
		{[]string{"RENAME", "a", "b"}, []int{1, 2}},
		{[]string{"LMOVE", "a", "b", "LEFT", "RIGHT"}, []int{1, 2}},
		{[]string{"BITOP", "AND", "d", "a", "b"}, []int{2, 3, 4}},
		{[]string{"OBJECT", "ENCODING", "k"}, []int{2}},
		{[]string{"object", "freq", "k"}, []int{2}},
		{[]string{"OBJECT", "HELP"}, nil},
		{[]string{"OBJECT", "NOSUCH", "k"}, nil},
		{[]string{"XINFO", "STREAM", "s", "FULL"}, []int{2}},
		{[]string{"MEMORY", "USAGE", "k", "SAMPLES", "5"}, []int{2}},
		{[]string{"EVAL", "return 1", "2", "a", "b", "c"}, []int{3, 4}},
		{[]string{"EVAL", "return 1", "0", "a"}, nil},
		{[]string{"EVAL", "return 1", "3", "a"}, nil}, // more keys than arguments
		{[]string{"EVAL", "return 1", " 1abc", "a"}, []int{3}},
		{[]string{"EVALSHA", "abc", "1", "k"}, []int{3}},
		{[]string{"FCALL", "f", "2", "a", "b"}, []int{3, 4}},
		{[]string{"FCALL_RO", "f", "1", "a", "x"}, []int{3}},
		{[]string{"ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"}, []int{3, 4, 1}},
		{[]string{"ZUNION", "2", "a", "b", "WITHSCORES"}, []int{2, 3}},
		{[]string{"ZUNION", "0", "a"}, nil},
		{[]string{"ZINTERCARD", "2", "a", "b", "LIMIT", "1"}, []int{2, 3}},
		{[]string{"SINTERCARD", "1", "a"}, []int{2}},
		{[]string{"LMPOP", "2", "a", "b", "LEFT"}, []int{2, 3}},
		{[]string{"BLMPOP", "0", "1", "a", "LEFT"}, []int{3}},
		{[]string{"BZMPOP", "0", "2", "a", "b", "MIN"}, []int{3, 4}},
		{[]string{"SORT", "k", "BY", "w_*", "GET", "o_*", "STORE", "d"}, []int{1, 7}},
		{[]string{"SORT", "k", "STORE", "d1", "STORE", "d2"}, []int{1, 5}},
		{[]string{"SORT", "k", "GET", "store"}, []int{1}},
		{[]string{"SORT", "k", "LIMIT", "0", "STORE", "STORE", "d"}, []int{1, 6}},
		{[]string{"SORT_RO", "k", "BY", "w_*"}, []int{1}},
		{[]string{"MIGRATE", "h", "1", "k", "0", "5"}, []int{3}},
		{[]string{"MIGRATE", "h", "1", "", "0", "5", "COPY", "AUTH", "keys", "KEYS", "a", "b"}, []int{10, 11}},
		{[]string{"MIGRATE", "h", "1", "", "0", "5", "AUTH2", "u", "p", "KEYS", "a"}, []int{10}},
		{[]string{"MIGRATE", "h", "1", "k", "0", "5", "KEYS", "a"}, nil},
		{[]string{"GEORADIUS", "k", "0", "0", "1", "km", "STORE", "a", "STOREDIST", "b"}, []int{1, 9}},
		{[]string{"GEORADIUSBYMEMBER", "k", "m", "1", "km", "STORE", "a"}, []int{1, 6}},
		{[]string{"GEOSEARCHSTORE", "d", "s", "FROMMEMBER", "m", "BYRADIUS", "1", "km"}, []int{1, 2}},
		{[]string{"XREAD", "COUNT", "2", "STREAMS", "a", "b", "0", "0"}, []int{4, 5}},
		{[]string{"XREAD", "BLOCK", "0", "STREAMS", "a", "$"}, []int{4}},
		{[]string{"XREAD", "STREAMS", "a", "b", "0"}, nil},
		{[]string{"XREADGROUP", "GROUP", "streams", "c", "STREAMS", "streams", "0"}, []int{5}},
		{[]string{"XREADGROUP", "GROUP", "g", "c", "NOACK", "STREAMS", "s", ">"}, []int{6}},
		{[]string{"SPUBLISH", "ch", "msg"}, []int{1}}, // shard channels route like keys
		{[]string{"SSUBSCRIBE", "a", "b"}, []int{1, 2}},
		{[]string{"PUBLISH", "ch", "msg"}, nil},
		{[]string{"PING"}, nil},
		{[]string{"DBSIZE"}, nil},
		{[]string{"LCS", "a", "b", "LEN"}, []int{1, 2}},
		{[]string{"BLPOP", "a", "b", "0"}, []int{1, 2}},
		{[]string{"WATCH", "a", "b"}, []int{1, 2}},
		{[]string{"BITFIELD", "k", "GET", "u8", "0"}, []int{1}},
		{[]string{"XADD", "s", "*", "f", "v"}, []int{1}},
	}
	dst := make([]int, 0, 8)
	for _, tt := range tests {
		got := tab.Keys(args(tt.cmd...), dst)
		if !slices.Equal(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
			t.Errorf("Keys(%q) = %v, want %v", tt.cmd, got, tt.want)
		}
	}
}

func TestCommandInfo(t *testing.T) {
	tab := fixtureTable(t)
	tests := []struct {
		name     string
		flags    CommandFlags
		request  RequestPolicy
		response ResponsePolicy
	}{
		{"get", FlagReadOnly | FlagFast, RequestDefault, ResponseDefault},
		{"dbsize", FlagReadOnly | FlagFast, RequestAllShards, ResponseAggSum},
		{"keys", FlagReadOnly, RequestAllShards, ResponseDefault},
		{"flushall", FlagWrite, RequestAllShards, ResponseAllSucceeded},
		{"mget", FlagReadOnly | FlagFast, RequestMultiShard, ResponseDefault},
		{"del", FlagWrite, RequestMultiShard, ResponseAggSum},
		{"script|load", FlagNoScript, RequestAllNodes, ResponseAllSucceeded},
		{"blpop", FlagWrite | FlagBlocking, RequestDefault, ResponseDefault},
		{"spublish", FlagPubSub, RequestDefault, ResponseDefault},
	}
	for _, tt := range tests {
		c := tab.Command(tt.name)
		if c == nil {
			t.Fatalf("no %s", tt.name)
		}
		if c.Flags&tt.flags != tt.flags || c.Request != tt.request || c.Response != tt.response {
			t.Errorf("%s: flags %b, request %d, response %d; want flags %b, %d, %d", tt.name, c.Flags, c.Request, c.Response, tt.flags, tt.request, tt.response)
		}
	}
	for name, want := range map[string]KeySpecFlags{
		"spublish": SpecNotKey, "migrate": SpecIncomplete,
		"get": SpecRO | SpecAccess, "set": SpecRW | SpecVariableFlags,
	} {
		if got := tab.Command(name).SpecFlags(); got&want != want {
			t.Errorf("%s: spec flags %b, want %b set", name, got, want)
		}
	}
	if got := tab.Command("get").SpecFlags(); got&(SpecRW|SpecOW|SpecRM|SpecNotKey) != 0 {
		t.Errorf("GET spec flags %b", got)
	}
	if c := tab.Command("randomkey"); !c.Nondeterministic {
		t.Error("RANDOMKEY is deterministic")
	}
	if c := tab.Command("object"); len(c.Subcommands()) < 5 || c.HasKeys() {
		t.Errorf("OBJECT: %d subcommands, HasKeys %t", len(c.Subcommands()), c.HasKeys())
	}
	if tab.Command("nosuch") != nil || tab.Command("object|nosuch") != nil || tab.Lookup(nil) != nil {
		t.Error("unknown commands found")
	}
}

// TestLegacyTable: a COMMAND reply of Redis 6 (no key specs) routes by
// the first/last/step range, and the built-in key functions still apply.
func TestLegacyTable(t *testing.T) {
	reply := []any{
		[]any{"get", int64(2), []any{"readonly", "fast"}, int64(1), int64(1), int64(1), []any{"@read"}},
		[]any{"mset", int64(-3), []any{"write"}, int64(1), int64(-1), int64(2), []any{"@write"}},
		[]any{"eval", int64(-3), []any{"noscript", "movablekeys"}, int64(0), int64(0), int64(0), []any{"@scripting"}},
		[]any{"ping", int64(-1), []any{"fast"}, int64(0), int64(0), int64(0), []any{}},
	}
	tab, err := NewTable(reply)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		cmd  []string
		want []int
	}{
		{[]string{"GET", "k"}, []int{1}},
		{[]string{"MSET", "a", "1", "b", "2"}, []int{1, 3}},
		{[]string{"EVAL", "s", "1", "k"}, []int{3}},
		{[]string{"PING"}, nil},
	} {
		if got := tab.Keys(args(tt.cmd...), nil); !slices.Equal(got, tt.want) && len(got)+len(tt.want) > 0 {
			t.Errorf("Keys(%q) = %v, want %v", tt.cmd, got, tt.want)
		}
	}
}

func TestNewTableErrors(t *testing.T) {
	for _, tc := range []struct {
		reply any
		err   string
	}{
		{"x", "COMMAND: string, want an array"},
		{[]any{[]any{"get"}}, "entry 0: []interface {} of 1 elements"},
		{[]any{[]any{int64(1), int64(2), []any{}, int64(1), int64(1), int64(1)}}, "name int64"},
		{[]any{[]any{"get", "2", []any{}, int64(1), int64(1), int64(1)}}, "get: arity 2"},
		{[]any{[]any{"get", int64(2), []any{}, int64(1), int64(1), int64(1), []any{}, []any{}, []any{"x"}}}, "get: key spec 0: string, want a map"},
		{[]any{[]any{"object", int64(-2), []any{}, int64(0), int64(0), int64(0), []any{}, []any{}, []any{}, []any{
			[]any{"xinfo|stream", int64(3), []any{}, int64(2), int64(2), int64(1)},
		}}}, `object: subcommand named "xinfo|stream"`},
	} {
		if _, err := NewTable(tc.reply); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("NewTable(%v): %v, want %q", tc.reply, err, tc.err)
		}
	}
}

func TestKeysAllocs(t *testing.T) {
	tab := fixtureTable(t)
	dst := make([]int, 0, 16)
	for _, cmd := range [][]string{
		{"GET", "k"},
		{"mset", "a", "1", "b", "2"},
		{"EVALSHA", "abc", "2", "a", "b"},
		{"XREAD", "COUNT", "1", "STREAMS", "a", "0"},
		{"OBJECT", "ENCODING", "k"},
		{"ZUNIONSTORE", "d", "2", "a", "b"},
	} {
		a := args(cmd...)
		if n := testing.AllocsPerRun(100, func() { dst = tab.Keys(a, dst) }); n != 0 {
			t.Errorf("Keys(%q) allocates %v times", cmd, n)
		}
	}
}

func BenchmarkKeys(b *testing.B) {
	tab := fixtureTable(b)
	for _, bc := range []struct {
		name string
		cmd  []string
	}{
		{"GET", []string{"GET", "user:1000"}},
		{"SET", []string{"SET", "user:1000", "v", "EX", "10"}},
		{"MSET-4", []string{"MSET", "a", "1", "b", "2", "c", "3", "d", "4"}},
		{"EVALSHA", []string{"EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff831", "1", "k", "v", "3"}},
		{"XREAD", []string{"XREAD", "COUNT", "10", "BLOCK", "0", "STREAMS", "a", "b", "0", "0"}},
		{"OBJECT-ENCODING", []string{"OBJECT", "ENCODING", "k"}},
	} {
		a := args(bc.cmd...)
		dst := make([]int, 0, 16)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				dst = tab.Keys(a, dst)
			}
		})
	}
}

// FuzzKeys runs Keys on arbitrary arguments of every command of the
// fixture: no panic, positions inside the arguments and never the name.
func FuzzKeys(f *testing.F) {
	tab := fixtureTable(f)
	names := tab.Commands()
	f.Add(uint16(0), []byte("a\x00b\x00c"))
	f.Add(uint16(100), []byte("2\x00a\x00b\x00STREAMS\x00x"))
	f.Fuzz(func(t *testing.T, which uint16, rest []byte) {
		c := names[int(which)%len(names)]
		a := [][]byte{[]byte(strings.ReplaceAll(strings.ToUpper(c.Name), "|", " "))}
		if parent, sub, ok := strings.Cut(c.Name, "|"); ok {
			a = [][]byte{[]byte(parent), []byte(sub)}
		}
		if len(rest) > 0 {
			a = append(a, bytes.Split(rest, []byte{0})...)
		}
		keys := tab.Keys(a, nil)
		for _, p := range keys {
			if p < 1 || p >= len(a) {
				t.Fatalf("%s %q: key position %d of %d arguments", c.Name, a, p, len(a))
			}
		}
		if again := tab.Keys(a, make([]int, 0, len(keys))); !slices.Equal(again, keys) {
			t.Fatalf("%s %q: %v then %v", c.Name, a, keys, again)
		}
	})
}

// FuzzNewTable feeds arbitrary replies to NewTable: errors, not panics;
// and whatever it builds must answer Keys.
func FuzzNewTable(f *testing.F) {
	f.Add(encodeRESP([]any{[]any{"get", int64(2), []any{"readonly"}, int64(1), int64(1), int64(1), []any{}, []any{},
		[]any{map[any]any{"flags": []any{"RO"}, "begin_search": map[any]any{"type": "index", "spec": map[any]any{"index": int64(1)}},
			"find_keys": map[any]any{"type": "range", "spec": map[any]any{"lastkey": int64(0), "keystep": int64(1), "limit": int64(0)}}}}, []any{}}}))
	f.Add(encodeRESP([]any{[]any{"x", int64(-2), []any{}, int64(0), int64(0), int64(0), []any{}, []any{},
		[]any{map[any]any{"begin_search": map[any]any{"type": "keyword", "spec": map[any]any{"keyword": "K", "startfrom": int64(-2)}},
			"find_keys": map[any]any{"type": "keynum", "spec": map[any]any{"keynumidx": int64(0), "firstkey": int64(1), "keystep": int64(2)}}}}, []any{}}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, _, err := decodeRESP(data)
		if err != nil {
			return
		}
		tab, err := NewTable(v)
		if err != nil {
			return
		}
		for _, c := range tab.Commands() {
			for n := 1; n < 6; n++ {
				a := make([][]byte, n)
				a[0] = []byte(c.Name)
				for i := 1; i < n; i++ {
					a[i] = []byte{byte('0' + i), 'k'}
				}
				for _, p := range c.Keys(a, nil) {
					if p < 0 || p >= n {
						t.Fatalf("%s: position %d of %d", c.Name, p, n)
					}
				}
			}
		}
	})
}

// argDoc is one argument of COMMAND DOCS.
type argDoc struct {
	name, typ, token         string
	optional, multiple, mtok bool
	sub                      []argDoc
}

func parseArgDocs(v any) []argDoc {
	a, _ := array(v)
	var out []argDoc
	for _, x := range a {
		var d argDoc
		_ = pairs(x, func(k string, v any) error {
			switch k {
			case "name":
				d.name, _ = str(v)
			case "type":
				d.typ, _ = str(v)
			case "token":
				d.token, _ = str(v)
			case "flags":
				fl, _ := stringArray(v)
				for _, f := range fl {
					d.optional = d.optional || f == "optional"
					d.multiple = d.multiple || f == "multiple"
					d.mtok = d.mtok || f == "multiple_token"
				}
			case "arguments":
				d.sub = parseArgDocs(v)
			}
			return nil
		})
		out = append(out, d)
	}
	return out
}

// commandDocs reads COMMAND DOCS into the arguments of every command and
// subcommand ("object|encoding").
func commandDocs(t *testing.T, rdb *redis.Client) map[string][]argDoc {
	reply, err := rdb.Do(bg(), "COMMAND", "DOCS").Result()
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string][]argDoc{}
	var walk func(v any)
	walk = func(v any) {
		_ = pairs(v, func(name string, doc any) error {
			_ = pairs(doc, func(k string, v any) error {
				switch k {
				case "arguments":
					docs[strings.ToLower(name)] = parseArgDocs(v)
				case "subcommands":
					walk(v)
				}
				return nil
			})
			if _, ok := docs[strings.ToLower(name)]; !ok {
				docs[strings.ToLower(name)] = nil
			}
			return nil
		})
	}
	walk(reply)
	return docs
}

// sampler makes argument lists from COMMAND DOCS: every key a distinct
// name, numkeys set to the number of keys that follow, the repeated
// arguments of a block (XREAD's keys and IDs) repeated alike.
type sampler struct {
	r         *rand.Rand
	n         int
	all, none bool // every optional argument, or none
	blockReps int
	keysCount int
}

func (s *sampler) reps() int {
	if s.blockReps > 0 {
		return s.blockReps
	}
	if s.all {
		return 2
	}
	if s.none {
		return 1
	}
	return 1 + s.r.IntN(3)
}

func (s *sampler) gen(list []argDoc, out []string) []string {
	numkeysAt := -1
	for i, a := range list {
		included := !a.optional || s.all || !s.none && s.r.IntN(2) == 0
		emitted := 0
		if included {
			n := 1
			if a.multiple {
				n = s.reps()
			}
			for r := range n {
				if a.token != "" && (r == 0 || a.mtok) {
					out = append(out, a.token)
				}
				out = s.value(a, out)
			}
			emitted = n
		}
		if numkeysAt >= 0 && i > 0 {
			out[numkeysAt] = strconv.Itoa(emitted)
			numkeysAt = -1
		}
		if included && a.typ == "integer" && strings.Contains(a.name, "numkeys") {
			numkeysAt = len(out) - 1
		}
	}
	return out
}

func (s *sampler) value(a argDoc, out []string) []string {
	s.n++
	switch a.typ {
	case "key":
		return append(out, fmt.Sprintf("key:%d", s.n))
	case "integer":
		return append(out, strconv.Itoa(1+s.r.IntN(2)))
	case "double":
		return append(out, "1.5")
	case "unix-time":
		return append(out, "1700000000")
	case "pattern":
		return append(out, fmt.Sprintf("pat%d*", s.n))
	case "pure-token":
		return out
	case "oneof":
		if len(a.sub) == 0 {
			return out
		}
		c := a.sub[s.r.IntN(len(a.sub))]
		c.optional = false
		return s.gen([]argDoc{c}, out)
	case "block":
		saved := s.blockReps
		s.blockReps = s.reps()
		out = s.gen(a.sub, out)
		s.blockReps = saved
		return out
	}
	return append(out, fmt.Sprintf("str%d", s.n))
}

// knownDifference says where Keys, following the cluster's routing,
// deliberately differs from COMMAND GETKEYS, which follows the key specs.
func knownDifference(name string, a []string) bool {
	switch name {
	case "georadius", "georadiusbymember":
		// The specs return STORE and STOREDIST; the node (and Keys)
		// routes by the last of them, the one the command writes.
		var store, storedist bool
		for _, x := range a[5:] {
			store = store || strings.EqualFold(x, "store")
			storedist = storedist || strings.EqualFold(x, "storedist")
		}
		return store && storedist
	}
	return false
}

// TestKeysAgainstGetKeys is the oracle: for every command of the
// cluster's COMMAND reply, arguments generated from COMMAND DOCS, Keys
// against COMMAND GETKEYS of the real server.
func TestKeysAgainstGetKeys(t *testing.T) {
	rdb := anyNode(t)
	reply, err := rdb.Do(bg(), "COMMAND").Result()
	if err != nil {
		t.Fatal(err)
	}
	tab, err := NewTable(reply)
	if err != nil {
		t.Fatal(err)
	}
	docs := commandDocs(t, rdb)
	r := rand.New(rand.NewPCG(7, 8))
	type sample struct {
		c    *Command
		args []string
	}
	var samples []sample
	total, keyed, notKeyOnly := 0, 0, 0
	for _, c := range tab.Commands() {
		total++
		if c.subs != nil {
			continue // each subcommand is its own entry
		}
		if c.HasKeys() {
			keyed++
		}
		allNotKey := len(c.specs) > 0
		for _, s := range c.specs {
			allNotKey = allNotKey && s.flags&SpecNotKey != 0
		}
		if allNotKey {
			notKeyOnly++ // shard channels: GETKEYS knows no keys; TestShardChannels
			continue
		}
		name := []string{c.Name}
		if parent, sub, ok := strings.Cut(c.Name, "|"); ok {
			name = []string{parent, sub}
		}
		seen := map[string]bool{}
		for i := range 40 {
			s := &sampler{r: r, all: i == 0, none: i == 1}
			a := s.gen(docs[c.Name], nil)
			k := strings.Join(a, "\x00")
			if seen[k] {
				continue
			}
			seen[k] = true
			head := make([]string, len(name))
			for j, n := range name {
				if r.IntN(2) == 0 {
					n = strings.ToUpper(n)
				}
				head[j] = n
			}
			samples = append(samples, sample{c, append(head, a...)})
		}
	}
	pipe := rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(samples))
	for i, s := range samples {
		a := []any{"COMMAND", "GETKEYS"}
		for _, x := range s.args {
			a = append(a, x)
		}
		cmds[i] = pipe.Do(bg(), a...)
	}
	_, _ = pipe.Exec(bg())

	covered := map[string]bool{}
	compared, withKeys, mismatches, known, specCompared := 0, 0, 0, 0, 0
	for i, s := range samples {
		var want []string
		got, err := cmds[i].StringSlice()
		switch {
		case err == nil:
			want = got
		case strings.Contains(err.Error(), "Invalid arguments specified for command"),
			strings.Contains(err.Error(), "The command has no key arguments"),
			strings.Contains(err.Error(), "Invalid number of arguments specified for command"),
			strings.Contains(err.Error(), "wrong number of arguments for 'command|getkeys'"): // a name alone
			// GETKEYS finds no keys: neither must Keys.
		default:
			t.Fatalf("COMMAND GETKEYS %q: %v", s.args, err)
		}
		a := args(s.args...)
		var have []string
		for _, p := range tab.Keys(a, nil) {
			have = append(have, s.args[p])
		}
		// The key-spec engine alone — what a module command gets — must
		// give GETKEYS's answer in GETKEYS's order wherever GETKEYS uses
		// the specs: all of them reliable (not incomplete, fixed flags)
		// and none failing on these arguments.
		if reliableSpecs(s.c) {
			if pos, ok := s.c.specKeys(a, nil); ok && len(pos) > 0 {
				specCompared++
				var bySpec []string
				for _, p := range pos {
					bySpec = append(bySpec, s.args[p])
				}
				if !slices.Equal(bySpec, want) {
					if mismatches++; mismatches <= 20 {
						t.Errorf("%q: key specs give %q, COMMAND GETKEYS %q", s.args, bySpec, want)
					}
				}
			}
		}
		compared++
		if len(want) > 0 {
			withKeys++
			covered[s.c.Name] = true
		}
		sort.Strings(want)
		sort.Strings(have)
		if slices.Equal(want, have) {
			continue
		}
		if knownDifference(s.c.Name, s.args) {
			known++
			continue
		}
		mismatches++
		if mismatches <= 20 {
			t.Errorf("%q: Keys gives %q, COMMAND GETKEYS %q (%v)", s.args, have, want, err)
		}
	}
	var uncovered []string
	for _, c := range tab.Commands() {
		allNotKey := len(c.specs) > 0
		for _, s := range c.specs {
			allNotKey = allNotKey && s.flags&SpecNotKey != 0
		}
		if c.HasKeys() && !covered[c.Name] && !allNotKey {
			uncovered = append(uncovered, c.Name)
		}
	}
	t.Logf("COMMAND: %d commands and subcommands, %d with keys (%d with shard channels only, checked elsewhere)", total, keyed, notKeyOnly)
	t.Logf("COMMAND GETKEYS oracle: %d samples compared, %d with keys; %d of %d keyed commands covered; %d mismatches, %d known differences (GEORADIUS with STORE and STOREDIST); the key-spec engine alone compared in order on %d samples",
		compared, withKeys, len(covered), keyed-notKeyOnly, mismatches, known, specCompared)
	if len(uncovered) > 0 {
		t.Logf("keyed commands no sample reached: %v", uncovered)
	}
	if mismatches > 0 {
		t.Fatalf("%d mismatches", mismatches)
	}
	if len(covered) < (keyed-notKeyOnly)*9/10 {
		t.Fatalf("only %d of %d keyed commands covered", len(covered), keyed-notKeyOnly)
	}
}

// reliableSpecs: COMMAND GETKEYS evaluates the command's key specs
// rather than Redis's own key function.
func reliableSpecs(c *Command) bool {
	keyed := false
	for _, s := range c.specs {
		if s.flags&(SpecIncomplete|SpecVariableFlags) != 0 {
			return false
		}
		keyed = keyed || s.flags&SpecNotKey == 0
	}
	return keyed
}

// TestShardChannels: SPUBLISH and SSUBSCRIBE route by their channels;
// a node that does not serve the channel's slot redirects to the one
// that does, which is what Keys predicts.
func TestShardChannels(t *testing.T) {
	c := needCluster(t)
	tab, err := NewTable(must(anyNode(t).Do(bg(), "COMMAND").Result()))
	if err != nil {
		t.Fatal(err)
	}
	a := args("SPUBLISH", "news", "hello")
	keys := tab.Keys(a, nil)
	if !slices.Equal(keys, []int{1}) {
		t.Fatalf("Keys(SPUBLISH) = %v", keys)
	}
	slot := Slot(a[keys[0]])
	owner := c.SlotOwner(t, slot)
	for _, p := range c.Primaries(t) {
		err := c.Client(p).Do(bg(), "SPUBLISH", "news", "hello").Err()
		if p == owner {
			if err != nil {
				t.Fatalf("SPUBLISH on the owner: %v", err)
			}
			continue
		}
		r, ok := ParseRedirect([]byte(fmt.Sprint(err)))
		if !ok || r.Slot != slot || r.Port != owner.Port {
			t.Fatalf("SPUBLISH on %s: %v; want MOVED %d to %s", p, err, slot, owner)
		}
	}
	if _, ok := SameSlot(args("SSUBSCRIBE", "{a}x", "{b}y"), tab.Keys(args("SSUBSCRIBE", "{a}x", "{b}y"), nil)); ok {
		t.Fatal("SSUBSCRIBE of two slots is in one slot")
	}
	err = c.Client(owner).Do(bg(), "SSUBSCRIBE", "{a}x", "{b}y").Err()
	if err == nil || "-"+err.Error()+"\r\n" != ErrCrossSlot {
		t.Fatalf("SSUBSCRIBE of two slots: %v, want %q", err, ErrCrossSlot)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
