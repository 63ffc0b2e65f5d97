package proxy

import (
	"context"
	"testing"

	"github.com/exproxy/exproxy/proxy/resp"
)

// prefixRewriter rewrites its one command the way the exstring extension
// does, so the benchmark measures the rewrite path's own cost.
type prefixRewriter struct{ prefix []byte }

func (p prefixRewriter) Commands() []string { return []string{"exget"} }
func (p prefixRewriter) Rewrite(args [][]byte, argc int, s *SessionInfo) (Rewrite, bool) {
	return Rewrite{Prefix: p.prefix, PrefixArgs: 3}, true
}

// handledRewriter is prefixRewriter with a ReplyHandler, as exstring's
// commands have: the core keeps a copy of each for a resend.
type handledRewriter struct{ prefixRewriter }

func (h handledRewriter) Commands() []string { return []string{"excas"} }
func (h handledRewriter) Rewrite(args [][]byte, argc int, s *SessionInfo) (Rewrite, bool) {
	rw, _ := h.prefixRewriter.Rewrite(args, argc, s)
	rw.Reply = nopHandler{}
	return rw, true
}

type nopHandler struct{}

func (nopHandler) Check([]byte, int) (ReplyAction, []byte) { return Forward, nil }
func (nopHandler) Reload(context.Context) error            { return nil }

// excasObserver observes EXCAS, as the contention tracker does.
type excasObserver struct{}

func (excasObserver) Observes(name string) bool         { return name == "excas" }
func (excasObserver) Open(*SessionInfo) SessionObserver { return nil }

func benchSession(b *testing.B) *session {
	prefix := []byte("$5\r\nFCALL\r\n$10\r\nexget_abcd\r\n$1\r\n1\r\n")
	srv, err := New(Options{Upstream: Upstream{Addr: "127.0.0.1:1"}, Rewriters: []Rewriter{
		prefixRewriter{prefix: prefix}, handledRewriter{prefixRewriter{prefix: prefix}},
	}, Observers: []Observer{excasObserver{}}})
	if err != nil {
		b.Fatal(err)
	}
	s := &session{srv: srv, parser: resp.ResumableParser{CommandParser: resp.CommandParser{Limits: srv.opts.Limits}}}
	return s
}

// BenchmarkRoute frames and routes a pipeline of 16 commands, the work the
// read loop does per batch before its one upstream write.
func BenchmarkRoute(b *testing.B) {
	for _, tc := range []struct{ name, cmd string }{
		{"get", "*2\r\n$3\r\nGET\r\n$10\r\nkey:000001\r\n"},
		{"set64", "*3\r\n$3\r\nSET\r\n$10\r\nkey:000001\r\n$64\r\n" + string(make([]byte, 64)) + "\r\n"},
		{"rewrite", "*2\r\n$5\r\nEXGET\r\n$10\r\nkey:000001\r\n"},
		// A versioned write as exstring and contention see it: kept for a
		// resend, its arguments copied for the observer.
		{"excas-observed", "*4\r\n$5\r\nEXCAS\r\n$10\r\nkey:000001\r\n$2\r\nv2\r\n$1\r\n7\r\n"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := benchSession(b)
			var in []byte
			for range 16 {
				in = append(in, tc.cmd...)
			}
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				for off := 0; off < len(in); {
					n, args, _, err := s.parser.Parse(in[off:], s.argv[:0])
					if err != nil || n == 0 {
						b.Fatalf("parse: %v", err)
					}
					s.route(s.srv.table.lookup(args[0]), in[off:off+n], args, len(args), false)
					s.argv = args[:0]
					off += n
				}
				s.batch = s.batch[:0]
				s.upbuf = s.upbuf[:0]
			}
		})
	}
}

func TestTableLookupCaseInsensitive(t *testing.T) {
	tab := newTable([]Rewriter{prefixRewriter{}}, nil)
	for _, name := range []string{"exget", "EXGET", "ExGeT"} {
		if c := tab.lookup([]byte(name)); c == nil || c.rewriter == nil {
			t.Errorf("lookup(%q) = %v, want the rewriter's row", name, c)
		}
	}
	for _, name := range []string{"get", "", "exgetx", string(make([]byte, 40))} {
		if c := tab.lookup([]byte(name)); c != nil {
			t.Errorf("lookup(%q) = %+v, want nil", name, c)
		}
	}
	if c := tab.lookup([]byte("Multi")); c == nil || c.kind != kindMulti {
		t.Errorf("lookup(Multi) = %+v", c)
	}
	if n := testing.AllocsPerRun(100, func() { tab.lookup([]byte("EXGET")) }); n != 0 {
		t.Errorf("lookup allocates %v times", n)
	}
}
