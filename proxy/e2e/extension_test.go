package e2e

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/proxy"
)

// The extension contract (proxy/extension.go) through a real Redis, with
// small extensions defined here: the core's tests never import a real
// extension, whose own packages test it through the proxy.

// upper is a test Rewriter: UPPER v is sent as ECHO v and its reply comes
// back upper-cased (Replace); HI is answered by the proxy itself (Local).
type upper struct{}

func (upper) Commands() []string { return []string{"upper", "hi"} }

func (upper) Rewrite(args [][]byte, argc int, s *proxy.SessionInfo) (proxy.Rewrite, bool) {
	switch strings.ToLower(string(args[0])) {
	case "upper":
		return proxy.Rewrite{Prefix: []byte("$4\r\nECHO\r\n"), PrefixArgs: 1, Reply: upperReply{}}, true
	case "hi":
		return proxy.Rewrite{Local: []byte("+hello\r\n")}, true
	}
	return proxy.Rewrite{}, false
}

type upperReply struct{}

// Check upper-cases a bulk reply; the replies here are shorter than
// HeadSize, so head is the whole reply. +QUEUED and errors pass.
func (upperReply) Check(head []byte, proto int) (proxy.ReplyAction, []byte) {
	if len(head) == 0 || head[0] != '$' {
		return proxy.Forward, nil
	}
	return proxy.Replace, bytes.ToUpper(head)
}

func (upperReply) Reload(context.Context) error { return nil }

// Outcome makes UPPER a pretend conditional write: a bulk reply committed
// it, an error refused it as stale.
func (upperReply) Outcome(head []byte) proxy.Outcome {
	switch head[0] {
	case '$':
		return proxy.Committed
	case '-':
		return proxy.Stale
	}
	return proxy.NoOutcome
}

var (
	_ proxy.Rewriter = upper{}
	_ proxy.Outcomer = upperReply{}
)

// TestE2EExtensionRewrite: rewritten commands, local replies and replaced
// replies keep their places among plain commands, in a pipeline and as
// elements of EXEC's reply, where the replacement must be what it is
// outside MULTI.
func TestE2EExtensionRewrite(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithRewriters(upper{}))
	for _, proto := range []string{"2", "3"} {
		t.Run("RESP"+proto, func(t *testing.T) {
			r := h.ProxyRaw(t)
			if got := r.Do("HELLO", proto); got[0] != '%' && got[0] != '*' {
				t.Fatalf("HELLO %s: %q", proto, got)
			}
			for _, s := range [][2]string{
				{"UPPER abc", "$3\r\nABC\r\n"},
				{"upper", "-ERR wrong number of arguments for 'echo' command\r\n"},
				{"HI", "+hello\r\n"},
				{"MULTI", "+OK\r\n"},
				{"UPPER ab", "+QUEUED\r\n"},
				{"SET k v", "+QUEUED\r\n"},
				{"UpPeR cd", "+QUEUED\r\n"},
				{"EXEC", "*3\r\n$2\r\nAB\r\n+OK\r\n$2\r\nCD\r\n"},
			} {
				if got := r.Do(strings.Fields(s[0])...); got != s[1] {
					t.Errorf("%s = %q, want %q", s[0], got, s[1])
				}
			}
			var in []byte
			for _, cmd := range []string{"HI", "UPPER x", "PING", "HI", "UPPER y"} {
				in = append(in, proxytest.EncodeCommand(strings.Fields(cmd)...)...)
			}
			r.Write(in)
			want := []string{"+hello\r\n", "$1\r\nX\r\n", "+PONG\r\n", "+hello\r\n", "$1\r\nY\r\n"}
			if got := r.ReadN(len(want)); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("pipelined replies %q, want %q", got, want)
			}
		})
	}
}

// recorder is a test Observer that keeps a copy of every event.
type recorder struct {
	names  map[string]bool
	mu     sync.Mutex
	events []string
	closed int
}

func (o *recorder) Observes(name string) bool { return o.names[name] }

func (o *recorder) Open(info *proxy.SessionInfo) proxy.SessionObserver {
	return &recorderSession{o: o, info: info}
}

type recorderSession struct {
	o    *recorder
	info *proxy.SessionInfo
}

// Observe records name, arguments, reply kind and head, the queued names
// of an EXEC, and the client name the session had at the time.
func (s *recorderSession) Observe(ev *proxy.Event) {
	line := fmt.Sprintf("%s %q %c %q %v %s %v", ev.Name, ev.Args, ev.Kind, ev.Reply, ev.Queued, ev.Info.Name, ev.Outcome)
	if ev.Done.Before(ev.Sent) {
		line += " (done before sent)"
	}
	s.o.mu.Lock()
	s.o.events = append(s.o.events, line)
	s.o.mu.Unlock()
}

func (s *recorderSession) Close() {
	s.o.mu.Lock()
	s.o.closed++
	s.o.mu.Unlock()
}

var (
	_ proxy.Observer        = (*recorder)(nil)
	_ proxy.SessionObserver = (*recorderSession)(nil)
)

// TestE2EExtensionObserve: an observer sees the commands it asked for, in
// reply order, with their replies, the queued names of EXEC, the
// session's client name and, for a command whose ReplyHandler is an
// Outcomer, its outcome; a session's end closes its observer.
func TestE2EExtensionObserve(t *testing.T) {
	rec := &recorder{names: map[string]bool{"watch": true, "multi": true, "exec": true, "upper": true}}
	h := proxytest.Start(t, proxytest.WithRewriters(upper{}), proxytest.WithObservers(rec))
	r := h.ProxyRaw(t)
	for _, s := range [][2]string{
		{"CLIENT SETNAME app", "+OK\r\n"},
		{"UPPER w", "$1\r\nW\r\n"},
		{"UPPER", "-ERR wrong number of arguments for 'echo' command\r\n"},
		{"WATCH k j", "+OK\r\n"},
		{"GET k", "$-1\r\n"},
		{"MULTI", "+OK\r\n"},
		{"UPPER v", "+QUEUED\r\n"},
		{"SET k v", "+QUEUED\r\n"},
		{"EXEC", "*2\r\n$1\r\nV\r\n+OK\r\n"},
	} {
		if got := r.Do(strings.Fields(s[0])...); got != s[1] {
			t.Fatalf("%s = %q, want %q", s[0], got, s[1])
		}
	}
	r.Close()
	h.Shutdown(t) // every session has ended and closed its observers
	want := []string{
		`upper ["w"] $ "$1\r\nw\r\n" [] app committed`,
		`upper [] - "-ERR wrong number of arguments for 'echo' command\r\n" [] app stale`,
		`watch ["k" "j"] + "+OK\r\n" [] app none`,
		`multi [] + "+OK\r\n" [] app none`,
		`upper ["v"] + "+QUEUED\r\n" [] app none`,
		// The observer sees EXEC's reply as Redis sent it: the reply
		// handlers' Replace of its elements is for the client.
		`exec [] * "*2\r\n$1\r\nv\r\n+OK\r\n" [upper set] app none`,
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if strings.Join(rec.events, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(rec.events, "\n"), strings.Join(want, "\n"))
	}
	if rec.closed != 1 {
		t.Errorf("%d observer sessions closed, want 1", rec.closed)
	}
}
