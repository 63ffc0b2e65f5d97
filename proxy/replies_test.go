package proxy

import (
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/exproxy/exproxy/proxy/resp"
)

// Unit tests of the reply side with a fake upstream: the test plays Redis
// by handing the session the exact bytes Redis sends for a sequence of
// commands, and reads what the session writes to its (real, loopback)
// client socket. What Redis sends depends on connection state — CLIENT
// REPLY, RESP2 subscriptions — that only the reply side can follow.

type replyRig struct {
	t      *testing.T
	s      *session
	client net.Conn // the test's end of the client connection
	framer resp.Framer
}

func newReplyRig(t *testing.T) *replyRig {
	t.Helper()
	srv, err := New(Options{Upstream: Upstream{Addr: "127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	theirs, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ours, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = theirs.Close(); _ = ours.Close() })
	s := newSession(srv, wrapConn(ours), 1)
	return &replyRig{t: t, s: s, client: theirs}
}

// send routes commands as the read loop would and queues their entries,
// as sending them upstream would.
func (g *replyRig) send(cmds ...string) {
	g.t.Helper()
	s := g.s
	for _, c := range cmds {
		var args [][]byte
		for _, f := range strings.Fields(c) {
			args = append(args, []byte(f))
		}
		raw := resp.AppendArrayHeader(nil, len(args))
		for _, a := range args {
			raw = resp.AppendBulk(raw, a)
		}
		s.route(s.srv.table.lookup(args[0]), raw, args, len(args), false)
	}
	if !s.q.push(s.batch) {
		g.t.Fatal("queue closed")
	}
	s.batch, s.upbuf = s.batch[:0], s.upbuf[:0]
}

// redis delivers what Redis sends, framed, in chunks of at most step
// bytes, as an upstream connection's reader would.
func (g *replyRig) redis(stream string, step int) {
	g.t.Helper()
	s := g.s
	s.mu.Lock()
	defer s.mu.Unlock()
	b := []byte(stream)
	for len(b) > 0 {
		end := min(step, len(b))
		n, done, err := g.framer.Next(b[:end])
		if err != nil {
			g.t.Fatalf("framing %q: %v", stream, err)
		}
		if n == 0 && !done {
			end = len(b) // a header split by step: give it whole
			n, done, err = g.framer.Next(b[:end])
			if err != nil || n == 0 {
				g.t.Fatalf("framing %q: %v", stream, err)
			}
		}
		s.deliverLocked(b[:n], done, g.framer.Kind())
		b = b[n:]
	}
	s.flushLocked()
}

// expect reads exactly want from the client's side.
func (g *replyRig) expect(want string) {
	g.t.Helper()
	_ = g.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(g.client, got); err != nil {
		g.t.Fatalf("reading %q: got %q, %v", want, got, err)
	}
	if string(got) != want {
		g.t.Fatalf("client got %q, want %q", got, want)
	}
	_ = g.client.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var extra [64]byte
	if n, _ := g.client.Read(extra[:]); n > 0 {
		g.t.Fatalf("client got %q more than %q", extra[:n], want)
	}
}

func (g *replyRig) pending() int {
	g.s.mu.Lock()
	defer g.s.mu.Unlock()
	return g.s.q.unpopped()
}

func TestReplyModeSkipAndOff(t *testing.T) {
	for _, step := range []int{1, 3, 1 << 20} {
		g := newReplyRig(t)
		// Redis sends nothing for CLIENT REPLY SKIP and the command it
		// skips, nor for CLIENT REPLY OFF and what runs under it; CLIENT
		// REPLY ON answers +OK.
		g.send("CLIENT REPLY SKIP", "SET a 1", "GET a", "CLIENT REPLY OFF", "SET b 2", "GET b", "CLIENT REPLY ON", "GET b")
		g.redis("$1\r\n1\r\n+OK\r\n$1\r\n2\r\n", step)
		g.expect("$1\r\n1\r\n+OK\r\n$1\r\n2\r\n")
		if n := g.pending(); n != 0 {
			t.Errorf("step %d: %d entries left after every reply", step, n)
		}
	}
}

func TestReplyModeSilencesLocalAndProtocolError(t *testing.T) {
	g := newReplyRig(t)
	g.send("CLIENT REPLY OFF")
	// A protocol error under CLIENT REPLY OFF is never written, so Redis
	// never closes the connection.
	g.s.batch = append(g.s.batch, entry{local: []byte("-ERR Protocol error: x\r\n"), closeAfterReply: true, replies: 1})
	g.s.q.push(g.s.batch)
	g.s.batch = g.s.batch[:0]
	g.s.emitIfIdle()
	g.s.mu.Lock()
	ended := g.s.ended
	g.s.mu.Unlock()
	if ended {
		t.Fatal("a silenced protocol error ended the session")
	}
	g.expect("")
}

func TestSubscriptionCountingRESP2(t *testing.T) {
	g := newReplyRig(t)
	sub := func(kind, ch string, n int) string {
		return "*3\r\n$" + itoa(len(kind)) + "\r\n" + kind + "\r\n$" + itoa(len(ch)) + "\r\n" + ch + "\r\n:" + itoa(n) + "\r\n"
	}
	msg := "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n"
	// Two channels and a pattern: an UNSUBSCRIBE of everything gets one
	// reply per channel, counted from Redis's confirmations; the pattern
	// stays.
	g.send("SUBSCRIBE a b", "PSUBSCRIBE p*")
	stream := sub("subscribe", "a", 1) + sub("subscribe", "b", 2) + msg + sub("psubscribe", "p*", 3)
	g.redis(stream, 5)
	g.expect(stream)
	g.s.mu.Lock()
	chans, pats := g.s.rs.chans, g.s.rs.pats
	g.s.mu.Unlock()
	if chans != 2 || pats != 1 {
		t.Fatalf("after SUBSCRIBE a b, PSUBSCRIBE p*: %d channels, %d patterns", chans, pats)
	}
	g.send("UNSUBSCRIBE", "PING")
	stream = sub("unsubscribe", "a", 2) + msg + sub("unsubscribe", "b", 1) + "*2\r\n$4\r\npong\r\n$0\r\n\r\n"
	g.redis(stream, 7)
	g.expect(stream)
	g.send("PUNSUBSCRIBE")
	stream = sub("punsubscribe", "p*", 0)
	g.redis(stream, 1<<20)
	g.expect(stream)
	g.s.mu.Lock()
	defer g.s.mu.Unlock()
	if g.s.rs.subscribed() || g.s.rs.holdsState() || g.s.q.unpopped() != 0 {
		t.Errorf("after unsubscribing everything: chans %d pats %d, pending %d", g.s.rs.chans, g.s.rs.pats, g.s.q.unpopped())
	}
}

func TestPushesPairWithNothingRESP3(t *testing.T) {
	g := newReplyRig(t)
	g.send("HELLO 3")
	g.redis("%1\r\n$5\r\nproto\r\n:3\r\n", 1<<20)
	g.expect("%1\r\n$5\r\nproto\r\n:3\r\n")
	// RESP3 (un)subscribe confirmations are pushes: the commands get no
	// regular reply, and the GET between them gets its own.
	g.send("SUBSCRIBE a", "GET k")
	stream := ">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n$1\r\nv\r\n"
	g.redis(stream, 4)
	g.expect(stream)
	g.s.mu.Lock()
	subscribed := g.s.rs.holdsState()
	g.s.mu.Unlock()
	if !subscribed {
		t.Fatal("a RESP3 subscription is not counted: the session would share its connection")
	}
	g.send("UNSUBSCRIBE")
	stream = ">3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n"
	g.redis(stream, 4)
	g.expect(stream)
	g.s.mu.Lock()
	subscribed = g.s.rs.holdsState()
	g.s.mu.Unlock()
	if subscribed {
		t.Error("still counted as subscribed after the last UNSUBSCRIBE")
	}
	if n := g.pending(); n != 0 {
		t.Errorf("%d entries left after the pushes", n)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
