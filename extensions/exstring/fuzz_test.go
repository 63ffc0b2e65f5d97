package exstring

import (
	"bytes"
	"testing"

	"github.com/exproxy/exproxy/proxy"
)

// FuzzCommandTransform feeds arbitrary replies to every COMMAND transform:
// none may panic, and whatever comes out must be one complete RESP value
// when what went in was one.
func FuzzCommandTransform(f *testing.F) {
	for _, s := range []string{
		"*0\r\n", ":240\r\n", "*2\r\n$3\r\nget\r\n$-1\r\n", "%1\r\n$3\r\nget\r\n%0\r\n",
		"*1\r\n_\r\n", "-ERR x\r\n", "*3\r\n*-1\r\n$-1\r\n_\r\n", "|1\r\n+a\r\n+b\r\n*0\r\n",
		"*1\r\n~1\r\n%1\r\n$1\r\na\r\n:1\r\n", "$5\r\nhello\r\n",
	} {
		f.Add([]byte(s), uint8(0), true)
	}
	e, err := New(Config{}, Deps{Upstream: proxy.Upstream{Addr: "127.0.0.1:1"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = e.Close() })
	cmds := [][]string{
		{"COMMAND"}, {"COMMAND", "INFO"}, {"COMMAND", "INFO", "exset", "get"}, {"COMMAND", "COUNT"},
		{"COMMAND", "LIST"}, {"COMMAND", "LIST", "FILTERBY", "PATTERN", "ex*"}, {"COMMAND", "DOCS"},
		{"COMMAND", "DOCS", "excas"}, {"COMMAND", "GETKEYSANDFLAGS", "exget", "k"},
	}
	f.Fuzz(func(t *testing.T, reply []byte, which uint8, resp3 bool) {
		cmd := cmds[int(which)%len(cmds)]
		rw, ok := e.Rewrite(argv(cmd...), len(cmd), &proxy.SessionInfo{})
		if !ok {
			t.Fatalf("%v not handled", cmd)
		}
		proto := 2
		if resp3 {
			proto = 3
		}
		in := append([]byte(nil), reply...)
		out := rw.Reply.(proxy.ReplyTransformer).Transform(reply, proto)
		if !bytes.Equal(reply, in) {
			t.Fatal("Transform modified its input")
		}
		if end, err := skipValue(reply, 0); err == nil && end == len(reply) {
			if end, err := skipValue(out, 0); err != nil || end != len(out) {
				t.Fatalf("%v: %q became %q, not one RESP value (%v)", cmd, reply, out, err)
			}
		}
	})
}

// FuzzRewrite: any command name and argument count either passes through
// or gets a prefix of three complete bulk strings.
func FuzzRewrite(f *testing.F) {
	f.Add("EXSET", 3)
	f.Add("type", 2)
	f.Add("command", 1)
	f.Add("ExIncrByFloat", 1)
	e, err := New(Config{}, Deps{Upstream: proxy.Upstream{Addr: "127.0.0.1:1"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = e.Close() })
	f.Fuzz(func(t *testing.T, name string, argc int) {
		if argc < 1 || argc > 8 {
			return
		}
		args := [][]byte{[]byte(name)}
		for len(args) < argc {
			args = append(args, []byte("a"))
		}
		rw, ok := e.Rewrite(args, argc, &proxy.SessionInfo{})
		if !ok || rw.Prefix == nil {
			return
		}
		b := rw.Prefix
		for i := 0; i < rw.PrefixArgs; i++ {
			if len(b) == 0 || b[0] != '$' {
				t.Fatalf("prefix %q: argument %d is not a bulk string", rw.Prefix, i)
			}
			end, err := skipValue(b, 0)
			if err != nil {
				t.Fatalf("prefix %q: %v", rw.Prefix, err)
			}
			b = b[end:]
		}
		if len(b) != 0 {
			t.Fatalf("prefix %q has %d bytes after its %d arguments", rw.Prefix, len(b), rw.PrefixArgs)
		}
	})
}
