package proxy

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/exproxy/exproxy/proxy/cluster"
	"github.com/exproxy/exproxy/proxy/resp"
)

// hotWatcher is a WriteWatcher that watches the keys starting with
// "hot" while watching is set, and records what it is armed with.
type hotWatcher struct {
	watching bool
	armed    [][]string
}

func (w *hotWatcher) Observes(string) bool              { return false }
func (w *hotWatcher) Open(*SessionInfo) SessionObserver { return nil }
func (w *hotWatcher) Watching() bool                    { return w.watching }
func (w *hotWatcher) Watched(key []byte) bool           { return bytes.HasPrefix(key, []byte("hot")) }
func (w *hotWatcher) Arm(keys [][]byte) {
	var ks []string
	for _, k := range keys {
		ks = append(ks, string(k))
	}
	w.armed = append(w.armed, ks)
}

// writeTable is a command table as Redis's COMMAND reply gives it, for
// the commands these tests send (the pre-7 form: flags and key range).
func writeTable(tb testing.TB) *cluster.Table {
	tb.Helper()
	t, err := cluster.NewTable([]any{
		[]any{"set", int64(-3), []any{"write", "denyoom"}, int64(1), int64(1), int64(1)},
		[]any{"mset", int64(-3), []any{"write", "denyoom"}, int64(1), int64(-1), int64(2)},
		[]any{"get", int64(2), []any{"readonly"}, int64(1), int64(1), int64(1)},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

func watchSession(tb testing.TB, w *hotWatcher, loaded bool) *session {
	tb.Helper()
	srv, err := New(Options{Upstream: Upstream{Addr: "127.0.0.1:1"}, Observers: []Observer{w}})
	if err != nil {
		tb.Fatal(err)
	}
	if loaded {
		srv.commands.Store(writeTable(tb))
	}
	return &session{srv: srv, parser: resp.ResumableParser{CommandParser: resp.CommandParser{Limits: srv.opts.Limits}}}
}

// routeOne frames and routes the one command in raw, and returns its entry.
func routeOne(tb testing.TB, s *session, raw string) entry {
	tb.Helper()
	return routeBytes(tb, s, []byte(raw))
}

func routeBytes(tb testing.TB, s *session, in []byte) entry {
	n, args, _, err := s.parser.Parse(in, s.argv[:0])
	if err != nil || n != len(in) {
		tb.Fatalf("parse %q: %d, %v", in, n, err)
	}
	s.route(s.srv.table.lookup(args[0]), in, args, len(args), false)
	s.argv = args[:0]
	e := s.batch[len(s.batch)-1]
	s.batch = s.batch[:0]
	s.upbuf = s.upbuf[:0]
	return e
}

// TestWatchWrites: a write's watched keys, and only those, are noted
// (copies, not the read buffer), with the command's name; reads and
// writes to other keys are not; nothing is seen before the command table
// is loaded.
func TestWatchWrites(t *testing.T) {
	w := &hotWatcher{watching: true}
	s := watchSession(t, w, false)
	if s.srv.CommandsLoaded() {
		t.Fatal("CommandsLoaded before any table")
	}
	mset := "*5\r\n$4\r\nMSET\r\n$4\r\nhot1\r\n$1\r\nv\r\n$4\r\ncold\r\n$1\r\nv\r\n"
	if e := routeOne(t, s, mset); e.obs != nil {
		t.Fatalf("write seen before the command table: %+v", e.obs)
	}
	s.srv.commands.Store(writeTable(t))
	if !s.srv.CommandsLoaded() {
		t.Fatal("CommandsLoaded false with a table")
	}
	for _, tc := range []struct {
		raw  string
		want []string
	}{
		{mset, []string{"hot1"}},
		{"*5\r\n$4\r\nmset\r\n$4\r\nhot1\r\n$1\r\nv\r\n$4\r\nhot2\r\n$1\r\nv\r\n", []string{"hot1", "hot2"}},
		{"*3\r\n$3\r\nSET\r\n$4\r\ncold\r\n$1\r\nv\r\n", nil},
		{"*2\r\n$3\r\nGET\r\n$4\r\nhot1\r\n", nil},                            // a read
		{"*3\r\n$3\r\nSET\r\n$4\r\nhot1\r\n$4\r\nhot2\r\n", []string{"hot1"}}, // the value is no key
	} {
		e := routeOne(t, s, tc.raw)
		var got []string
		if e.obs != nil {
			for _, k := range e.obs.writes {
				got = append(got, string(k))
			}
			if e.obs.writeName != "mset" && e.obs.writeName != "set" {
				t.Errorf("%q: writeName %q", tc.raw, e.obs.writeName)
			}
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: noted %q, want %q", tc.raw, got, tc.want)
		}
	}
	// The noted keys are copies: the read buffer may be overwritten.
	raw := []byte(mset)
	n, args, _, _ := s.parser.Parse(raw, s.argv[:0])
	s.route(s.srv.table.lookup(args[0]), raw[:n], args, len(args), false)
	e := s.batch[len(s.batch)-1]
	copy(raw, bytes.Repeat([]byte{'x'}, len(raw)))
	if string(e.obs.writes[0]) != "hot1" {
		t.Errorf("noted key %q after the buffer changed", e.obs.writes[0])
	}
}

// TestWatchedWriteAllocs: noting a watched write costs the core no
// allocation of its own. (The copies it keeps come from the session's
// arena, whose chunks hold 8 records, 32 keys and 1 KB of key bytes:
// one allocation per several writes, so less than one per write.)
func TestWatchedWriteAllocs(t *testing.T) {
	w := &hotWatcher{watching: true}
	s := watchSession(t, w, true)
	set := []byte("*3\r\n$3\r\nSET\r\n$10\r\nhot:000001\r\n$2\r\nv1\r\n")
	if e := routeBytes(t, s, set); e.obs == nil || len(e.obs.writes) != 1 {
		t.Fatal("the write was not noted")
	}
	if n := testing.AllocsPerRun(1000, func() { routeBytes(t, s, set) }); n != 0 {
		t.Errorf("a watched write allocates %v times", n)
	}
}

// TestArmWatch: a WATCH outside MULTI arms the WriteWatchers with its
// keys when it is routed, before it goes upstream; one inside MULTI
// (which Redis refuses) does not.
func TestArmWatch(t *testing.T) {
	w := &hotWatcher{}
	s := watchSession(t, w, true)
	routeOne(t, s, "*3\r\n$5\r\nWATCH\r\n$1\r\na\r\n$1\r\nb\r\n")
	if want := [][]string{{"a", "b"}}; !reflect.DeepEqual(w.armed, want) {
		t.Fatalf("armed %q, want %q", w.armed, want)
	}
	routeOne(t, s, "*1\r\n$5\r\nMULTI\r\n")
	routeOne(t, s, "*2\r\n$5\r\nwatch\r\n$1\r\nc\r\n")
	routeOne(t, s, "*1\r\n$4\r\nEXEC\r\n")
	routeOne(t, s, "*2\r\n$5\r\nwatch\r\n$1\r\nd\r\n")
	if want := [][]string{{"a", "b"}, {"d"}}; !reflect.DeepEqual(w.armed, want) {
		t.Errorf("armed %q, want %q", w.armed, want)
	}
}

// BenchmarkWatchedWrite routes a pipeline of 16 SETs with a WriteWatcher
// installed: nobody watching (the cost with attribution on and idle), a
// watcher watching other keys, and one watching the SETs' key.
func BenchmarkWatchedWrite(b *testing.B) {
	for _, tc := range []struct {
		name     string
		watching bool
		key      string
	}{
		{"idle", false, "key:000001"},
		{"miss", true, "key:000001"},
		{"hit", true, "hot:000001"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := watchSession(b, &hotWatcher{watching: tc.watching}, true)
			var in []byte
			for range 16 {
				in = append(in, "*3\r\n$3\r\nSET\r\n$10\r\n"+tc.key+"\r\n$2\r\nv1\r\n"...)
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
