package e2e

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/exproxy/exproxy/internal/proxytest"
)

// pubsubSession drives one subscriber connection to addr through
// subscribe mode and back, with a publisher writing directly to Redis, and
// returns everything the subscriber received, reply by reply.
func pubsubSession(t *testing.T, h *proxytest.Harness, addr string, proto int) []string {
	t.Helper()
	s := proxytest.Dial(t, addr)
	defer s.Close()
	if proto == 3 {
		s.Do("HELLO", "3")
	}
	pub := h.DirectRaw(t)
	defer pub.Close()
	var got []string
	read := func(n int) {
		for i := 0; i < n; i++ {
			got = append(got, s.Read())
		}
	}
	s.Send("SUBSCRIBE", "ch1", "ch2")
	read(2)
	s.Send("PSUBSCRIBE", "p*")
	read(1)
	s.Send("SSUBSCRIBE", "sch")
	read(1)
	pub.Do("PUBLISH", "ch1", "hello")
	read(1)
	pub.Do("PUBLISH", "pxx", "world\r\nwith crlf")
	read(1)
	pub.Do("SPUBLISH", "sch", "shard")
	read(1)
	pub.Do("PUBLISH", "ch2", "")
	read(1)
	s.Send("PING")
	read(1)
	s.Send("PING", "arg")
	read(1)
	s.Send("GET", "x") // not allowed in RESP2 subscribe mode; allowed in RESP3
	read(1)
	s.Send("SUBSCRIBE", "ch1") // already subscribed
	read(1)
	s.Send("UNSUBSCRIBE", "ch1")
	read(1)
	s.Send("UNSUBSCRIBE", "ch2")
	read(1)
	s.Send("PUNSUBSCRIBE")
	read(1)
	s.Send("SUNSUBSCRIBE")
	read(1)
	// Back to normal mode: replies pair with requests again.
	s.Send("PING")
	read(1)
	s.Send("SET", "x", "1")
	read(1)
	s.Send("GET", "x")
	read(1)
	s.Send("UNSUBSCRIBE") // with no subscriptions
	read(1)
	s.Send("PING")
	read(1)
	// Unsubscribe everything at once, with several channels.
	s.Send("SUBSCRIBE", "a")
	read(1)
	s.Send("UNSUBSCRIBE")
	read(1)
	s.Send("ECHO", "done")
	read(1)
	return got
}

func TestE2EPubSub(t *testing.T) {
	h := proxytest.Start(t)
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			h.ResetRedis(t)
			want := pubsubSession(t, h, h.Redis.Addr, proto)
			// Let Redis drop the direct subscriber before the second run,
			// so PUBLISH counts and deliveries are the same.
			waitNoSubscribers(t, h)
			h.ResetRedis(t)
			got := pubsubSession(t, h, h.Addr, proto)
			for i := range want {
				if i >= len(got) || got[i] != want[i] {
					g := ""
					if i < len(got) {
						g = got[i]
					}
					t.Errorf("reply %d:\n proxy: %s\ndirect: %s", i, proxytest.Clip(g), proxytest.Clip(want[i]))
				}
			}
		})
	}
}

func waitNoSubscribers(t *testing.T, h *proxytest.Harness) {
	a := h.DirectRaw(t)
	defer a.Close()
	proxytest.Eventually(t, "subscribers gone", func() bool {
		return a.Do("PUBSUB", "NUMSUB", "ch1", "ch2", "a") == "*6\r\n$3\r\nch1\r\n:0\r\n$3\r\nch2\r\n:0\r\n$1\r\na\r\n:0\r\n" &&
			a.Do("PUBSUB", "NUMPAT") == ":0\r\n" &&
			a.Do("PUBSUB", "SHARDNUMSUB", "sch") == "*2\r\n$3\r\nsch\r\n:0\r\n"
	})
}

// TestE2EPubSubManyMessages: a burst of messages arrives complete and in
// order, while the subscriber is in pure relay mode.
func TestE2EPubSubManyMessages(t *testing.T) {
	h := proxytest.Start(t)
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			s := h.ProxyRaw(t)
			if proto == 3 {
				s.Do("HELLO", "3")
			}
			s.Do("SUBSCRIBE", "burst")
			pub := h.DirectRaw(t)
			const n = 2000
			var cmds []byte
			for i := 0; i < n; i++ {
				cmds = append(cmds, proxytest.EncodeCommand("PUBLISH", "burst", strconv.Itoa(i))...)
			}
			pub.Write(cmds)
			kind := "*3"
			if proto == 3 {
				kind = ">3"
			}
			for i := 0; i < n; i++ {
				v := s.Read()
				m := strconv.Itoa(i)
				want := fmt.Sprintf("%s\r\n$7\r\nmessage\r\n$5\r\nburst\r\n$%d\r\n%s\r\n", kind, len(m), m)
				if v != want {
					t.Fatalf("message %d = %q, want %q", i, v, want)
				}
			}
			for i := 0; i < n; i++ {
				pub.Read()
			}
			s.Do("UNSUBSCRIBE")
			if got := s.Do("PING"); got != "+PONG\r\n" {
				t.Fatalf("PING after UNSUBSCRIBE: %q", got)
			}
		})
	}
}

func TestE2EMonitor(t *testing.T) {
	h := proxytest.Start(t)
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			m := h.ProxyRaw(t)
			if proto == 3 {
				m.Do("HELLO", "3")
			}
			if got := m.Do("MONITOR"); got != "+OK\r\n" {
				t.Fatalf("MONITOR: %q", got)
			}
			other := h.ProxyRaw(t)
			other.Do("SET", "monkey", "v"+strconv.Itoa(proto))
			d := h.DirectRaw(t)
			d.Do("GET", "direct-key")
			var lines []string
			for len(lines) < 2 {
				v := m.Read()
				if h.Shared() && strings.Contains(v, `"HELLO" "3"`) {
					// A ready connection of the RESP3 pool being set up by
					// the proxy (docs/proxy-core.md: what still shows).
					continue
				}
				lines = append(lines, v)
			}
			if !strings.Contains(lines[0], `"SET" "monkey" "v`+strconv.Itoa(proto)+`"`) {
				t.Errorf("first MONITOR line %q: want the proxied SET", lines[0])
			}
			if !strings.Contains(lines[1], `"GET" "direct-key"`) {
				t.Errorf("second MONITOR line %q: want the direct GET", lines[1])
			}
			for _, l := range lines {
				if !strings.HasPrefix(l, "+") {
					t.Errorf("MONITOR line %q is not a status reply", l)
				}
			}
		})
	}
}

// TestE2EClientTracking: RESP3 push invalidations on the same connection,
// and RESP2/RESP3 REDIRECT to another proxied connection's id.
func TestE2EClientTracking(t *testing.T) {
	h := proxytest.Start(t)
	t.Run("RESP3_push", func(t *testing.T) {
		tr := h.ProxyRaw(t)
		tr.Do("HELLO", "3")
		if got := tr.Do("CLIENT", "TRACKING", "ON"); got != "+OK\r\n" {
			t.Fatalf("CLIENT TRACKING ON: %q", got)
		}
		if got := tr.Do("GET", "tk"); got != "_\r\n" {
			t.Fatalf("GET tk: %q", got)
		}
		h.DirectRaw(t).Do("SET", "tk", "1")
		if got := tr.Read(); got != ">2\r\n$10\r\ninvalidate\r\n*1\r\n$2\r\ntk\r\n" {
			t.Fatalf("invalidation push = %q", got)
		}
		// The push matched no command: the next reply is still PING's.
		if got := tr.Do("PING"); got != "+PONG\r\n" {
			t.Fatalf("PING after push: %q", got)
		}
		// A push that arrives while a reply is pending.
		tr.Do("GET", "tk")
		w := h.ProxyRaw(t)
		w.Do("SET", "tk", "2")
		tr.Send("GET", "tk")
		first, second := tr.Read(), tr.Read()
		if first != ">2\r\n$10\r\ninvalidate\r\n*1\r\n$2\r\ntk\r\n" || second != "$1\r\n2\r\n" {
			t.Fatalf("after a write, GET gave %q then %q", first, second)
		}
		if got := tr.Do("CLIENT", "TRACKING", "OFF"); got != "+OK\r\n" {
			t.Fatalf("CLIENT TRACKING OFF: %q", got)
		}
	})
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("REDIRECT_RESP%d", proto), func(t *testing.T) {
			rd := h.ProxyRaw(t)
			if proto == 3 {
				rd.Do("HELLO", "3")
			}
			idReply := rd.Do("CLIENT", "ID")
			if !strings.HasPrefix(idReply, ":") {
				t.Fatalf("CLIENT ID: %q", idReply)
			}
			id := strings.TrimSuffix(idReply[1:], "\r\n")
			// The id is Redis's id of the upstream connection.
			found := false
			for _, l := range h.ClientList(t) {
				if strings.HasPrefix(l, "id="+id+" ") {
					found = true
				}
			}
			if !found {
				t.Fatalf("CLIENT ID %s through the proxy is not in Redis's CLIENT LIST", id)
			}
			if got := rd.Do("SUBSCRIBE", "__redis__:invalidate"); !strings.Contains(got, "__redis__:invalidate") {
				t.Fatalf("SUBSCRIBE: %q", got)
			}
			tr := h.ProxyRaw(t)
			if got := tr.Do("CLIENT", "TRACKING", "ON", "REDIRECT", id); got != "+OK\r\n" {
				t.Fatalf("CLIENT TRACKING ON REDIRECT %s: %q", id, got)
			}
			key := "rk" + strconv.Itoa(proto)
			tr.Do("GET", key)
			h.DirectRaw(t).Do("SET", key, "x")
			// A RESP3 target gets an invalidate push; a RESP2 one a
			// message on __redis__:invalidate.
			want := fmt.Sprintf("*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$3\r\n%s\r\n", key)
			if proto == 3 {
				want = fmt.Sprintf(">2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\n%s\r\n", key)
			}
			if got := rd.Read(); got != want {
				t.Fatalf("redirected invalidation = %q, want %q", got, want)
			}
			if got := tr.Do("PING"); got != "+PONG\r\n" {
				t.Fatalf("PING on tracking connection: %q", got)
			}
		})
	}
}

// proxySetupLine is a MONITOR line of the HELLO 3 the proxy opens a
// RESP3 upstream connection with.
var proxySetupLine = regexp.MustCompile(`\+[0-9.]+ \[[0-9]+ [^\]]+\] "HELLO" "3"\r\n`)

// TestE2EModeSwitching: sequences that move a connection into and out of
// subscribe and MONITOR mode — by UNSUBSCRIBE, RESET, QUIT, and SUBSCRIBE
// inside MULTI/EXEC — give Redis's exact byte stream, whether sent in one
// write or command by command.
func TestE2EModeSwitching(t *testing.T) {
	h := proxytest.Start(t)
	cases := map[string][][]string{
		"unsubscribe":      {{"SUBSCRIBE", "a"}, {"UNSUBSCRIBE", "a"}, {"PING"}, {"GET", "x"}, {"QUIT"}},
		"reset_subscribed": {{"SUBSCRIBE", "a"}, {"RESET"}, {"PING"}, {"GET", "x"}, {"QUIT"}},
		"subscribe_in_exec": {{"MULTI"}, {"SUBSCRIBE", "ch"}, {"EXEC"}, {"PING"}, {"GET", "x"}, {"UNSUBSCRIBE"},
			{"PING"}, {"QUIT"}},
		"monitor_reset":   {{"MONITOR"}, {"RESET"}, {"PING"}, {"QUIT"}},
		"pattern_remains": {{"SUBSCRIBE", "a", "b"}, {"PSUBSCRIBE", "p"}, {"UNSUBSCRIBE"}, {"PING"}, {"PUNSUBSCRIBE"}, {"PING"}, {"QUIT"}},
		"quit_subscribed": {{"SUBSCRIBE", "a"}, {"QUIT"}},
		// CLIENT REPLY ON is refused in RESP2 subscribe mode, silently (replies
		// are off). QUIT comes with replies on: Redis closes a client after
		// QUIT only once it writes a reply.
		"reply_off_in_sub": {{"CLIENT", "REPLY", "OFF"}, {"SUBSCRIBE", "a"}, {"CLIENT", "REPLY", "ON"}, {"PING"}, {"UNSUBSCRIBE"},
			{"PING"}, {"CLIENT", "REPLY", "ON"}, {"PING"}, {"QUIT"}},
		"hello_in_sub":      {{"SUBSCRIBE", "a"}, {"HELLO", "3"}, {"PING"}, {"HELLO", "2"}, {"PING"}, {"QUIT"}},
		"ssubscribe_only":   {{"SSUBSCRIBE", "s"}, {"PING"}, {"SUNSUBSCRIBE"}, {"PING"}, {"QUIT"}},
		"unsubscribe_twice": {{"SUBSCRIBE", "a"}, {"UNSUBSCRIBE"}, {"UNSUBSCRIBE"}, {"PING"}, {"QUIT"}},
	}
	for name, cmds := range cases {
		for _, proto := range proxytest.Protocols {
			for _, oneWrite := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s_RESP%d_onewrite_%v", name, proto, oneWrite), func(t *testing.T) {
					var in []string
					if proto == 3 {
						in = append(in, string(proxytest.EncodeCommand("HELLO", "3")))
					}
					for _, c := range cmds {
						in = append(in, string(proxytest.EncodeCommand(c...)))
					}
					run := func(addr string) string {
						r := proxytest.Dial(t, addr)
						defer r.Close()
						if oneWrite {
							r.WriteString(strings.Join(in, ""))
						} else {
							for _, part := range in {
								if err := r.WriteE([]byte(part)); err != nil {
									break
								}
							}
						}
						out, err := r.ReadUntilEOF()
						if err != nil {
							t.Errorf("%s: not closed after QUIT: %v (got %q)", addr, err, out)
						}
						return proxytest.HelloMask(out)
					}
					want := run(h.Redis.Addr)
					// A MONITOR through the proxy may also see the HELLO 3
					// that sets up a RESP3 connection the proxy dials
					// meanwhile (a ready connection replacing the one this
					// session took): documented in docs/proxy-core.md, "What
					// still shows"; Redis alone has no other client.
					got := proxySetupLine.ReplaceAllString(run(h.Addr), "")
					if got != want {
						t.Errorf("proxy:\n%q\ndirect:\n%q", got, want)
					}
				})
			}
		}
	}
}

// TestE2ETrackingSelfInvalidation: a RESP3 connection that invalidates its
// own tracked keys gets the pushes right after the replies (also after an
// EXEC and in BCAST mode), byte for byte as from Redis.
func TestE2ETrackingSelfInvalidation(t *testing.T) {
	h := proxytest.Start(t)
	h.SameAsRedis(t, 3, []proxytest.Step{
		c("CLIENT", "TRACKING", "ON"), c("GET", "k"),
		c("MULTI"), c("SET", "k", "1"), c("GET", "k"), {Args: []string{"EXEC"}, N: 2},
		{Args: []string{"SET", "k", "2"}, N: 2}, c("PING"),
		c("GET", "k"), {Args: []string{"EVAL", "redis.call('set', KEYS[1], 'x') return 1", "1", "k"}, N: 2},
		c("CLIENT", "TRACKING", "OFF"),
		c("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "b:"), {Args: []string{"SET", "b:1", "v"}, N: 2},
		{Args: []string{"MSET", "b:2", "v", "b:3", "v"}, N: 2}, c("SET", "other", "v"), c("PING"),
		c("CLIENT", "TRACKING", "OFF"),
		c("CLIENT", "TRACKING", "ON", "NOLOOP"), c("GET", "k"), c("SET", "k", "3"), c("PING"),
	})
}

// TestE2EPushesInterleavedWithReplies: a RESP3 subscriber keeps issuing
// commands while a publisher floods it; every reply pairs with its command
// and every message arrives, in order.
func TestE2EPushesInterleavedWithReplies(t *testing.T) {
	h := proxytest.Start(t)
	s := h.ProxyRaw(t)
	s.Do("HELLO", "3")
	if got := s.Do("SUBSCRIBE", "flood"); !strings.HasPrefix(got, ">3") {
		t.Fatalf("SUBSCRIBE: %q", got)
	}
	const msgs, cmds = 3000, 2000
	pubDone := make(chan error, 1)
	pub := proxytest.Dial(t, h.Redis.Addr)
	go func() {
		defer pub.Close()
		var b []byte
		for i := 0; i < msgs; i++ {
			b = append(b, proxytest.EncodeCommand("PUBLISH", "flood", strconv.Itoa(i))...)
		}
		if err := pub.WriteE(b); err != nil {
			pubDone <- err
			return
		}
		for i := 0; i < msgs; i++ {
			if _, err := pub.ReadE(); err != nil {
				pubDone <- err
				return
			}
		}
		pubDone <- nil
	}()
	var b []byte
	for i := 0; i < cmds; i++ {
		b = append(b, proxytest.EncodeCommand("INCR", "ctr")...)
	}
	writeDone := make(chan error, 1)
	go func() { writeDone <- s.WriteE(b) }()
	nextMsg, nextReply := 0, 1
	for nextMsg < msgs || nextReply <= cmds {
		v := s.Read()
		if strings.HasPrefix(v, ">3\r\n$7\r\nmessage\r\n") {
			m := strconv.Itoa(nextMsg)
			if want := fmt.Sprintf(">3\r\n$7\r\nmessage\r\n$5\r\nflood\r\n$%d\r\n%s\r\n", len(m), m); v != want {
				t.Fatalf("message %d = %q", nextMsg, v)
			}
			nextMsg++
			continue
		}
		if want := fmt.Sprintf(":%d\r\n", nextReply); v != want {
			t.Fatalf("reply %d = %q (after %d messages)", nextReply, v, nextMsg)
		}
		nextReply++
	}
	if err := <-writeDone; err != nil {
		t.Fatal(err)
	}
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}
	if got := s.Do("PING"); got != "+PONG\r\n" {
		t.Fatalf("PING: %q", got)
	}
}

// TestE2EResp2RelayWithCommands: a RESP2 client pipelines SUBSCRIBE, PINGs
// and UNSUBSCRIBE while messages flood in, then normal commands: after
// the relay ends, replies pair with requests again.
func TestE2EResp2RelayWithCommands(t *testing.T) {
	h := proxytest.Start(t)
	s := h.ProxyRaw(t)
	s.Do("SUBSCRIBE", "flood2")
	pub := h.DirectRaw(t)
	var pb []byte
	for i := 0; i < 1000; i++ {
		pb = append(pb, proxytest.EncodeCommand("PUBLISH", "flood2", strconv.Itoa(i))...)
	}
	pub.Write(pb)
	var b []byte
	for i := 0; i < 50; i++ {
		b = append(b, proxytest.EncodeCommand("PING", "p"+strconv.Itoa(i))...)
	}
	b = append(b, proxytest.EncodeCommand("UNSUBSCRIBE", "flood2")...)
	for i := 0; i < 50; i++ {
		b = append(b, proxytest.EncodeCommand("ECHO", "e"+strconv.Itoa(i))...)
	}
	s.Write(b)
	msgs, pongs := 0, 0
	for {
		v := s.Read()
		switch {
		case strings.HasPrefix(v, "*3\r\n$7\r\nmessage\r\n"):
			msgs++
		case strings.HasPrefix(v, "*2\r\n$4\r\npong\r\n"):
			if want := fmt.Sprintf("*2\r\n$4\r\npong\r\n$%d\r\np%d\r\n", len(strconv.Itoa(pongs))+1, pongs); v != want {
				t.Fatalf("pong %d = %q", pongs, v)
			}
			pongs++
		case strings.HasPrefix(v, "*3\r\n$11\r\nunsubscribe\r\n"):
			if pongs != 50 {
				t.Fatalf("unsubscribe after %d pongs", pongs)
			}
			for i := 0; i < 50; i++ {
				e := "e" + strconv.Itoa(i)
				if got, want := s.Read(), fmt.Sprintf("$%d\r\n%s\r\n", len(e), e); got != want {
					t.Fatalf("ECHO %d after UNSUBSCRIBE = %q, want %q", i, got, want)
				}
			}
			t.Logf("%d messages arrived before UNSUBSCRIBE", msgs)
			if got := s.Do("PING"); got != "+PONG\r\n" {
				t.Fatalf("PING: %q", got)
			}
			return
		default:
			t.Fatalf("unexpected %q", v)
		}
	}
}
