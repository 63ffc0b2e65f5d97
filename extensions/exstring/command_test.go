package exstring

import (
	"bufio"
	"bytes"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/mediocregopher/radix/v4/resp"
	"github.com/mediocregopher/radix/v4/resp/resp3"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
)

// decode parses one complete RESP value. RESP2 goes through radix, an
// independent parser; radix cannot hold RESP3 sets of maps (which Redis's
// own COMMAND replies contain), so RESP3 goes through parseTest below,
// and the end-to-end tests check the same replies with go-redis.
func decode(tb testing.TB, b []byte) any {
	tb.Helper()
	if !bytes.ContainsAny(b[:1], "~%_") && !bytes.Contains(b, []byte("\r\n~")) && !bytes.Contains(b, []byte("\r\n%")) {
		br := bufio.NewReader(bytes.NewReader(b))
		var v any
		if err := resp3.Unmarshal(br, &v, resp.NewOpts()); err != nil {
			tb.Fatalf("radix cannot parse %.200q: %v", b, err)
		}
		if br.Buffered() != 0 {
			tb.Fatalf("%d bytes left after the value", br.Buffered())
		}
		return normalize(v)
	}
	v, end, err := parseTest(b, 0)
	if err != nil || end != len(b) {
		tb.Fatalf("cannot parse %.200q: %v (end %d of %d)", b, err, end, len(b))
	}
	return v
}

// normalize turns radix's []byte strings into strings.
func normalize(v any) any {
	switch v := v.(type) {
	case []byte:
		if v == nil {
			return nil // a null bulk string
		}
		return string(v)
	case []any:
		for i := range v {
			v[i] = normalize(v[i])
		}
	}
	return v
}

// parseTest decodes RESP3 for the tests: sets and arrays as []any, maps
// as map[any]any keyed by strings, nulls as nil.
func parseTest(b []byte, i int) (any, int, error) {
	kind, n, next, err := header(b, i)
	if err != nil {
		return nil, 0, err
	}
	line := string(b[i+1 : next-2])
	switch kind {
	case '+', ',', '(':
		return line, next, nil
	case '-':
		return fmt.Errorf("%s", line), next, nil
	case ':':
		v, err := strconv.ParseInt(line, 10, 64)
		return v, next, err
	case '#':
		return line == "t", next, nil
	case '_':
		return nil, next, nil
	case '$', '=', '!':
		if n < 0 {
			return nil, next, nil
		}
		return string(b[next : next+int(n)]), next + int(n) + 2, nil
	case '*', '~', '>':
		if n < 0 {
			return nil, next, nil
		}
		a := make([]any, 0, n)
		for ; n > 0; n-- {
			var v any
			if v, next, err = parseTest(b, next); err != nil {
				return nil, 0, err
			}
			a = append(a, v)
		}
		return a, next, nil
	case '%', '|':
		m := map[any]any{}
		for ; n > 0; n-- {
			var k, v any
			if k, next, err = parseTest(b, next); err != nil {
				return nil, 0, err
			}
			if v, next, err = parseTest(b, next); err != nil {
				return nil, 0, err
			}
			m[str(k)] = v
		}
		if kind == '|' {
			return parseTest(b, next)
		}
		return m, next, nil
	}
	return nil, 0, fmt.Errorf("type %q", kind)
}

// str turns what radix decodes a RESP string into (string or []byte) into a string.
func str(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return fmt.Sprint(v)
}

// entries maps COMMAND INFO entries (arrays whose first element is the name) by name.
func entries(tb testing.TB, v any) map[string][]any {
	tb.Helper()
	list, ok := v.([]any)
	if !ok {
		tb.Fatalf("reply is %T, want an array", v)
	}
	m := map[string][]any{}
	for _, e := range list {
		if e == nil {
			continue
		}
		a, ok := e.([]any)
		if !ok || len(a) != 10 {
			tb.Fatalf("entry %v is not a 10-element array", e)
		}
		m[str(a[0])] = a
	}
	return m
}

// transformed sends cmd to Redis directly, as the core would after a
// Rewrite without a prefix, and returns the reply and its transform.
func transformed(tb testing.TB, e *Extension, rc *proxytest.Conn, proto int, cmd ...string) (raw, out []byte) {
	tb.Helper()
	rw, ok := e.Rewrite(argv(cmd...), len(cmd), &proxy.SessionInfo{})
	if !ok || rw.Prefix != nil {
		tb.Fatalf("%v: rewrite ok=%v prefix=%q, want a reply transformer only", cmd, ok, rw.Prefix)
	}
	if rw.Local != nil {
		return nil, rw.Local
	}
	tr, isT := rw.Reply.(proxy.ReplyTransformer)
	if !isT {
		tb.Fatalf("%v: reply handler %T is not a ReplyTransformer", cmd, rw.Reply)
	}
	raw = []byte(rc.Do(cmd...))
	if act, _ := tr.Check(raw, proto); act != proxy.Buffer {
		tb.Fatalf("%v: Check = %v, want Buffer", cmd, act)
	}
	return raw, tr.Transform(raw, proto)
}

func TestCommandTransforms(t *testing.T) {
	srv := redistest.Start(t)
	e := newOffline(t, false)
	exNames := make([]string, len(specs))
	for i, s := range specs {
		exNames[i] = s.name
	}
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			rc := proxytest.Dial(t, srv.Addr)
			if proto == 3 {
				rc.Do("HELLO", "3")
			}

			t.Run("COMMAND", func(t *testing.T) {
				for _, cmd := range [][]string{{"COMMAND"}, {"command", "info"}} {
					raw, out := transformed(t, e, rc, proto, cmd...)
					before, after := entries(t, decode(t, raw)), entries(t, decode(t, out))
					if len(after) != len(before)+len(specs) {
						t.Errorf("%v: %d entries after, %d before", cmd, len(after), len(before))
					}
					for _, name := range exNames {
						checkInfoEntry(t, after[name], before["set"], name)
					}
					if !reflect.DeepEqual(after["get"], before["get"]) {
						t.Errorf("%v: the GET entry changed", cmd)
					}
				}
			})
			t.Run("COUNT", func(t *testing.T) {
				raw, out := transformed(t, e, rc, proto, "COMMAND", "COUNT")
				if b, a := decode(t, raw).(int64), decode(t, out).(int64); a != b+int64(len(specs)) {
					t.Errorf("COUNT %d after, %d before", a, b)
				}
			})
			t.Run("LIST", func(t *testing.T) {
				tests := []struct {
					args []string
					want []string
				}{
					{nil, exNames},
					{[]string{"FILTERBY", "PATTERN", "ex*"}, exNames[:10]},
					{[]string{"FILTERBY", "PATTERN", "ca?"}, []string{"cas", "cad"}},
					{[]string{"FILTERBY", "ACLCAT", "read"}, []string{"exget"}},
					{[]string{"FILTERBY", "MODULE", "tairstring"}, nil},
				}
				for _, tt := range tests {
					raw, out := transformed(t, e, rc, proto, append([]string{"COMMAND", "LIST"}, tt.args...)...)
					before, after := strs(decode(t, raw)), strs(decode(t, out))
					added := after[len(before):]
					if !reflect.DeepEqual(after[:len(before)], before) || strings.Join(added, " ") != strings.Join(tt.want, " ") {
						t.Errorf("LIST %v added %v, want %v", tt.args, added, tt.want)
					}
				}
			})
			t.Run("INFO names", func(t *testing.T) {
				raw, out := transformed(t, e, rc, proto, "COMMAND", "INFO", "EXSET", "set", "nosuch", "exget", "TYPE")
				before, after := decode(t, raw).([]any), decode(t, out).([]any)
				if len(after) != 5 || after[2] != nil || before[0] != nil {
					t.Fatalf("INFO replies %v -> %v", before, after)
				}
				checkInfoEntry(t, after[0].([]any), before[1].([]any), "exset")
				checkInfoEntry(t, after[3].([]any), before[1].([]any), "exget")
				if !reflect.DeepEqual(after[1], before[1]) || !reflect.DeepEqual(after[4], before[4]) {
					t.Errorf("native entries changed")
				}
			})
			t.Run("DOCS", func(t *testing.T) {
				for _, args := range [][]string{nil, {"exset", "get", "nosuch", "cad"}} {
					raw, out := transformed(t, e, rc, proto, append([]string{"COMMAND", "DOCS"}, args...)...)
					before, after := docs(t, decode(t, raw), proto), docs(t, decode(t, out), proto)
					want := exNames
					if args != nil {
						want = []string{"exset", "cad"}
					}
					if len(after) != len(before)+len(want) {
						t.Errorf("DOCS %v: %d entries after, %d before", args, len(after), len(before))
					}
					for _, name := range want {
						d := after[name]
						if str(d["group"]) != "string" || str(d["summary"]) == "" {
							t.Errorf("DOCS %s = %v", name, d)
						}
						args, _ := d["arguments"].([]any)
						if len(args) < 2 || str(docField(args[0], proto, "type")) != "key" {
							t.Errorf("DOCS %s arguments = %v, want a key first", name, args)
						}
					}
				}
			})
			t.Run("GETKEYS", func(t *testing.T) {
				tests := []struct {
					cmd  []string
					want string
				}{
					{[]string{"COMMAND", "GETKEYS", "EXSET", "k1", "v"}, "*1\r\n$2\r\nk1\r\n"},
					{[]string{"COMMAND", "GETKEYS", "excas", "k2", "v", "3", "EX", "10"}, "*1\r\n$2\r\nk2\r\n"},
					{[]string{"COMMAND", "GETKEYS", "exset", "k1"}, "-ERR Invalid number of arguments specified for command\r\n"},
					{[]string{"COMMAND", "GETKEYS", "excad", "k1", "1", "2"}, "-ERR Invalid number of arguments specified for command\r\n"},
					{[]string{"COMMAND", "GETKEYSANDFLAGS", "exget", "k3"}, map[int]string{
						2: "*1\r\n*2\r\n$2\r\nk3\r\n*2\r\n+RO\r\n+access\r\n",
						3: "*1\r\n*2\r\n$2\r\nk3\r\n~2\r\n+RO\r\n+access\r\n"}[proto]},
				}
				for _, tt := range tests {
					if _, out := transformed(t, e, rc, proto, tt.cmd...); string(out) != tt.want {
						t.Errorf("%v = %q, want %q", tt.cmd, out, tt.want)
					}
				}
				// Native commands are Redis's business.
				if rw, ok := e.Rewrite(argv("COMMAND", "GETKEYS", "SET", "k", "v"), 5, &proxy.SessionInfo{}); ok {
					t.Errorf("COMMAND GETKEYS SET rewritten: %+v", rw)
				}
			})
		})
	}
}

// checkInfoEntry compares an ex command's COMMAND INFO entry with SET's:
// same shape and element types, first/last/step 1, one key spec at index 1.
func checkInfoEntry(tb testing.TB, got, set []any, name string) {
	tb.Helper()
	if got == nil {
		tb.Errorf("no COMMAND INFO entry for %s", name)
		return
	}
	if str(got[0]) != name {
		tb.Errorf("entry name %q, want %q", got[0], name)
	}
	for i := range set {
		if reflect.TypeOf(got[i]) != reflect.TypeOf(set[i]) && !(i == 7 && len(set[7].([]any)) == 0) {
			tb.Errorf("%s element %d is %T, SET's is %T", name, i, got[i], set[i])
		}
	}
	if got[3] != int64(1) || got[4] != int64(1) || got[5] != int64(1) {
		tb.Errorf("%s keys first/last/step = %v/%v/%v, want 1/1/1", name, got[3], got[4], got[5])
	}
	if arity := got[1].(int64); arity == 0 || arity < -4 || arity > 3 {
		tb.Errorf("%s arity %d", name, arity)
	}
	if ks, ok := got[8].([]any); !ok || len(ks) != 1 {
		tb.Errorf("%s key specs %v, want one", name, got[8])
	}
}

// strs turns a decoded array of strings into []string.
func strs(v any) []string {
	a, _ := v.([]any)
	out := make([]string, len(a))
	for i, e := range a {
		out[i] = str(e)
	}
	return out
}

// docs maps a decoded COMMAND DOCS reply (flat array in RESP2, map in
// RESP3) to name -> fields.
func docs(tb testing.TB, v any, proto int) map[string]map[string]any {
	tb.Helper()
	out := map[string]map[string]any{}
	fields := func(d any) map[string]any {
		m := map[string]any{}
		switch d := d.(type) {
		case []any:
			for i := 0; i+1 < len(d); i += 2 {
				m[str(d[i])] = d[i+1]
			}
		case map[any]any:
			for k, v := range d {
				m[str(k)] = v
			}
		default:
			tb.Fatalf("docs entry is %T", d)
		}
		return m
	}
	switch v := v.(type) {
	case []any:
		if proto != 2 {
			tb.Fatalf("RESP3 DOCS decoded as an array")
		}
		for i := 0; i+1 < len(v); i += 2 {
			out[str(v[i])] = fields(v[i+1])
		}
	case map[any]any:
		if proto != 3 {
			tb.Fatalf("RESP2 DOCS decoded as a map")
		}
		for k, d := range v {
			out[str(k)] = fields(d)
		}
	default:
		tb.Fatalf("DOCS reply is %T", v)
	}
	return out
}

func docField(arg any, proto int, name string) any {
	switch a := arg.(type) {
	case []any:
		for i := 0; i+1 < len(a); i += 2 {
			if str(a[i]) == name {
				return a[i+1]
			}
		}
	case map[any]any:
		for k, v := range a {
			if str(k) == name {
				return v
			}
		}
	}
	return nil
}

func TestCommandTransformLeavesOddRepliesAlone(t *testing.T) {
	e := newOffline(t, false)
	tests := []struct {
		cmd   []string
		reply string
	}{
		{[]string{"COMMAND"}, "-NOPERM this user has no permissions to run the 'command' command\r\n"},
		{[]string{"COMMAND", "COUNT"}, "-ERR something\r\n"},
		{[]string{"COMMAND", "INFO", "exset"}, "*2\r\n$-1\r\n$-1\r\n"}, // count does not match the names
		{[]string{"COMMAND", "DOCS"}, "*1\r\n"},                        // truncated
		{[]string{"COMMAND", "LIST", "FILTERBY"}, "-ERR syntax error\r\n"},
	}
	for _, tt := range tests {
		rw, ok := e.Rewrite(argv(tt.cmd...), len(tt.cmd), &proxy.SessionInfo{})
		if !ok {
			t.Fatalf("%v not handled", tt.cmd)
		}
		tr := rw.Reply.(proxy.ReplyTransformer)
		for _, proto := range []int{2, 3} {
			if got := tr.Transform([]byte(tt.reply), proto); string(got) != tt.reply {
				t.Errorf("%v: %q became %q", tt.cmd, tt.reply, got)
			}
		}
	}
}

func TestCommandSubcommandsPassedThrough(t *testing.T) {
	e := newOffline(t, false)
	for _, cmd := range [][]string{{"COMMAND", "HELP"}, {"COMMAND", "COUNT", "x"}, {"COMMAND", "GETKEYS"}, {"COMMAND", "GETKEYS", "get", "k"}} {
		if _, ok := e.Rewrite(argv(cmd...), len(cmd), &proxy.SessionInfo{}); ok {
			t.Errorf("%v handled; Redis should answer it", cmd)
		}
	}
}

func TestInfoEntriesAreSorted(t *testing.T) {
	// The byte encodings are built once; check they decode to what specs say.
	for _, c := range newOffline(t, false).exCommands() {
		for p, proto := range []int{2, 3} {
			v := decode(t, c.info[p]).([]any)
			flags := strs(setToSlice(v[2]))
			sort.Strings(flags)
			want := append([]string(nil), c.spec.flags...)
			sort.Strings(want)
			if !reflect.DeepEqual(flags, want) {
				t.Errorf("%s RESP%d flags %v, want %v", c.name, proto, flags, want)
			}
		}
	}
}

// setToSlice turns a decoded RESP3 set (a map with empty values) or array into a slice.
func setToSlice(v any) any {
	switch v := v.(type) {
	case map[any]struct{}:
		out := make([]any, 0, len(v))
		for k := range v {
			out = append(out, k)
		}
		return out
	}
	return v
}
