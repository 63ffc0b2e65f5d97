package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/internal/proxytest"
)

func TestE2EBlockingCommands(t *testing.T) {
	h := proxytest.Start(t)
	ctx := context.Background()
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("BLPOP_0_RESP%d", proto), func(t *testing.T) {
			cl := h.Client(t, proto, func(o *redis.Options) { o.ReadTimeout = -1 })
			q := fmt.Sprintf("q%d", proto)
			res := make(chan []string, 1)
			errc := make(chan error, 1)
			go func() {
				v, err := cl.BLPop(ctx, 0, q).Result()
				errc <- err
				res <- v
			}()
			h.WaitBlocked(t, 1)
			if err := h.Client(t, proto).LPush(ctx, q, "pushed").Err(); err != nil {
				t.Fatalf("LPUSH: %v", err)
			}
			if err := <-errc; err != nil {
				t.Fatalf("BLPOP: %v", err)
			}
			if v := <-res; len(v) != 2 || v[0] != q || v[1] != "pushed" {
				t.Fatalf("BLPOP = %q", v)
			}
			// The connection carries on normally.
			if err := cl.Ping(ctx).Err(); err != nil {
				t.Fatalf("PING after BLPOP: %v", err)
			}
		})
		t.Run(fmt.Sprintf("BLPOP_raw_pipelined_behind_RESP%d", proto), func(t *testing.T) {
			// Commands pipelined behind a blocked one wait for it.
			r := h.ProxyRaw(t)
			if proto == 3 {
				r.Do("HELLO", "3")
			}
			q := fmt.Sprintf("rq%d", proto)
			r.Write(append(proxytest.EncodeCommand("BLPOP", q, "0"), proxytest.EncodeCommand("ECHO", "after")...))
			h.WaitBlocked(t, 1)
			h.DirectRaw(t).Do("RPUSH", q, "v")
			want := fmt.Sprintf("*2\r\n$3\r\n%s\r\n$1\r\nv\r\n", q)
			if got := r.Read(); got != want {
				t.Fatalf("BLPOP = %q, want %q", got, want)
			}
			if got := r.Read(); got != "$5\r\nafter\r\n" {
				t.Fatalf("ECHO = %q", got)
			}
			// A blocking command that times out: nil in the client's protocol.
			wantNil := "*-1\r\n"
			if proto == 3 {
				wantNil = "_\r\n"
			}
			if got := r.Do("BLPOP", "never", "0.01"); got != wantNil {
				t.Fatalf("BLPOP timeout = %q, want %q", got, wantNil)
			}
		})
		t.Run(fmt.Sprintf("XREAD_BLOCK_RESP%d", proto), func(t *testing.T) {
			cl := h.Client(t, proto, func(o *redis.Options) { o.ReadTimeout = -1 })
			st := fmt.Sprintf("xs%d", proto)
			res := make(chan []redis.XStream, 1)
			errc := make(chan error, 1)
			go func() {
				v, err := cl.XRead(ctx, &redis.XReadArgs{Streams: []string{st, "$"}, Block: 0}).Result()
				errc <- err
				res <- v
			}()
			h.WaitBlocked(t, 1)
			if err := h.Direct(t, 2).XAdd(ctx, &redis.XAddArgs{Stream: st, ID: "5-1", Values: []string{"f", "v"}}).Err(); err != nil {
				t.Fatalf("XADD: %v", err)
			}
			if err := <-errc; err != nil {
				t.Fatalf("XREAD: %v", err)
			}
			v := <-res
			if len(v) != 1 || v[0].Stream != st || len(v[0].Messages) != 1 || v[0].Messages[0].ID != "5-1" {
				t.Fatalf("XREAD = %+v", v)
			}
		})
		t.Run(fmt.Sprintf("WAIT_RESP%d", proto), func(t *testing.T) {
			h.SameAsRedis(t, proto, []proxytest.Step{c("SET", "a", "1"), c("WAIT", "0", "100"), c("WAIT", "1", "50"), c("WAITAOF", "0", "0", "0")})
		})
	}
}

// TestE2EClientReply: CLIENT REPLY OFF/ON/SKIP; the byte stream the client
// receives is exactly Redis's.
func TestE2EClientReply(t *testing.T) {
	h := proxytest.Start(t)
	in := string(proxytest.EncodeCommand("CLIENT", "REPLY", "OFF")) + string(proxytest.EncodeCommand("SET", "a", "1")) +
		string(proxytest.EncodeCommand("GET", "a")) + string(proxytest.EncodeCommand("NOSUCHCMD")) +
		string(proxytest.EncodeCommand("CLIENT", "REPLY", "ON")) +
		string(proxytest.EncodeCommand("CLIENT", "REPLY", "SKIP")) + string(proxytest.EncodeCommand("SET", "b", "2")) +
		string(proxytest.EncodeCommand("GET", "a")) +
		string(proxytest.EncodeCommand("CLIENT", "REPLY", "SKIP")) + string(proxytest.EncodeCommand("CLIENT", "REPLY", "SKIP")) +
		string(proxytest.EncodeCommand("GET", "b")) +
		"CLIENT REPLY OFF\r\nPING\r\nCLIENT REPLY ON\r\n" +
		string(proxytest.EncodeCommand("GET", "b"))
	for _, proto := range proxytest.Protocols {
		for _, oneWrite := range []bool{true, false} {
			t.Run(fmt.Sprintf("RESP%d_onewrite_%v", proto, oneWrite), func(t *testing.T) {
				run := func(addr string) string {
					h.ResetRedis(t)
					r := proxytest.Dial(t, addr)
					defer r.Close()
					if proto == 3 {
						r.Do("HELLO", "3")
					}
					if oneWrite {
						r.WriteString(in)
					} else {
						// Command by command, so the proxy sees each alone.
						for _, part := range splitCommands(in) {
							r.WriteString(part)
						}
					}
					r.Send("ECHO", "--end--")
					var out strings.Builder
					for {
						v := r.Read()
						if v == "$7\r\n--end--\r\n" {
							return out.String()
						}
						out.WriteString(v)
					}
				}
				want := run(h.Redis.Addr)
				got := run(h.Addr)
				if got != want {
					t.Errorf("proxy %q\ndirect %q", got, want)
				}
			})
		}
	}
}

// splitCommands splits the test input of TestE2EClientReply into
// commands (multibulk via proxytest.EncodeCommand, inline by line).
func splitCommands(in string) []string {
	var out []string
	for len(in) > 0 {
		if in[0] != '*' {
			i := strings.Index(in, "\r\n") + 2
			out = append(out, in[:i])
			in = in[i:]
			continue
		}
		var n int
		fmt.Sscanf(in, "*%d\r\n", &n)
		end := strings.Index(in, "\r\n") + 2
		for j := 0; j < n; j++ {
			end += strings.Index(in[end:], "\r\n") + 2 // $len line
			end += strings.Index(in[end:], "\r\n") + 2 // body
		}
		out = append(out, in[:end])
		in = in[end:]
	}
	return out
}

func TestE2EClientNameIDResetQuit(t *testing.T) {
	h := proxytest.Start(t)
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("same_as_redis_RESP%d", proto), func(t *testing.T) {
			h.SameAsRedis(t, proto, []proxytest.Step{
				c("CLIENT", "GETNAME"), c("CLIENT", "SETNAME", "my-app"), c("CLIENT", "GETNAME"), c("CLIENT", "SETNAME", "bad name"),
				c("SELECT", "2"), c("SET", "k", "v"), c("MULTI"), c("SET", "k", "x"),
				c("RESET"), // leaves MULTI, db 0, RESP2, no name
				c("GET", "k"), c("CLIENT", "GETNAME"), c("HGETALL", "nope"), c("GET", "nope"), c("EXEC"),
				c("HELLO", "3", "SETNAME", "n3"), c("RESET"), c("GET", "nope"), c("CLIENT", "GETNAME"),
			})
		})
		t.Run(fmt.Sprintf("client_id_RESP%d", proto), func(t *testing.T) {
			r := h.ProxyRaw(t)
			if proto == 3 {
				r.Do("HELLO", "3")
			}
			name := fmt.Sprintf("named-%d", proto)
			if got := r.Do("CLIENT", "SETNAME", name); got != "+OK\r\n" {
				t.Fatalf("SETNAME: %q", got)
			}
			id := strings.TrimSuffix(strings.TrimPrefix(r.Do("CLIENT", "ID"), ":"), "\r\n")
			found := false
			for _, l := range h.ClientList(t) {
				if strings.Contains(l, " name="+name+" ") {
					found = true
					if !strings.HasPrefix(l, "id="+id+" ") {
						t.Errorf("CLIENT ID through proxy %s, but Redis lists %q", id, l)
					}
				}
			}
			if !found {
				t.Errorf("Redis has no client named %s", name)
			}
		})
		t.Run(fmt.Sprintf("quit_RESP%d", proto), func(t *testing.T) {
			in := string(proxytest.EncodeCommand("SET", "q", "1")) + string(proxytest.EncodeCommand("QUIT")) + string(proxytest.EncodeCommand("SET", "q", "2"))
			if proto == 3 {
				in = string(proxytest.EncodeCommand("HELLO", "3")) + in
			}
			want := proxytest.HelloMask(closeExchange(t, h.Redis.Addr, in))
			got := proxytest.HelloMask(closeExchange(t, h.Addr, in))
			if got != want {
				t.Errorf("QUIT: proxy %q, direct %q", got, want)
			}
			if v := h.DirectRaw(t).Do("GET", "q"); v != "$1\r\n1\r\n" {
				t.Errorf("command after QUIT was executed: GET q = %q", v)
			}
			// Inline quit, as typed.
			if got := closeExchange(t, h.Addr, "quit\r\n"); got != "+OK\r\n" {
				t.Errorf("inline quit: %q", got)
			}
		})
	}
}

// TestE2ENoPhantomPendingReplies: after sequences where Redis suppresses
// or refuses things (CLIENT REPLY ON refused in RESP2 subscribe mode while
// replies are off, PING suppressed), the proxy must not expect replies
// that never come. With everything answered, losing the upstream closes
// the client without "outcome unknown" errors for phantom commands.
func TestE2ENoPhantomPendingReplies(t *testing.T) {
	// (CLIENT REPLY inside MULTI is left out: Redis 7.0 itself then sends
	// an EXEC array with the wrong element count.)
	cases := map[string][][]string{
		"refused_reply_on_in_sub": {{"CLIENT", "REPLY", "OFF"}, {"SUBSCRIBE", "a"}, {"CLIENT", "REPLY", "ON"}, {"PING"},
			{"UNSUBSCRIBE"}, {"PING"}, {"CLIENT", "REPLY", "ON"}, {"PING"}},
		"reply_off_ping":  {{"CLIENT", "REPLY", "OFF"}, {"PING"}, {"CLIENT", "REPLY", "ON"}, {"PING"}},
		"skip_in_sub":     {{"SUBSCRIBE", "a"}, {"CLIENT", "REPLY", "SKIP"}, {"PING"}, {"UNSUBSCRIBE"}, {"PING"}},
		"reset_reply_off": {{"CLIENT", "REPLY", "OFF"}, {"RESET"}, {"PING"}},
		"subscribe_denied": {{"AUTH", "nochan", "pw"}, {"SUBSCRIBE", "ch"}, {"PING"}, {"PSUBSCRIBE", "p*"}, {"SSUBSCRIBE", "s"},
			{"GET", "x"}},
		"subscribe_no_args":     {{"SUBSCRIBE"}, {"PING"}, {"UNSUBSCRIBE"}, {"PING"}},
		"subscribe_discarded":   {{"MULTI"}, {"SUBSCRIBE", "a"}, {"DISCARD"}, {"PING"}},
		"subscribe_via_exec":    {{"MULTI"}, {"SUBSCRIBE", "a"}, {"PSUBSCRIBE", "p"}, {"EXEC"}, {"PING"}, {"UNSUBSCRIBE"}, {"PUNSUBSCRIBE"}, {"PING"}},
		"subscribe_execabort":   {{"MULTI"}, {"SUBSCRIBE", "a"}, {"SET"}, {"EXEC"}, {"PING"}},
		"unsubscribe_in_exec":   {{"SUBSCRIBE", "a"}, {"PING"}, {"RESET"}, {"MULTI"}, {"UNSUBSCRIBE", "a"}, {"EXEC"}, {"PING"}},
		"monitor_denied":        {{"AUTH", "nochan", "pw"}, {"MONITOR"}, {"PING"}},
		"hello3_then_subscribe": {{"HELLO", "3"}, {"SUBSCRIBE", "a"}, {"PING"}, {"GET", "x"}, {"UNSUBSCRIBE"}, {"PING"}},
	}
	for name, cmds := range cases {
		t.Run(name, func(t *testing.T) {
			h := proxytest.Start(t)
			// A user with no channel permissions and no MONITOR.
			if got := h.DirectRaw(t).Do("ACL", "SETUSER", "nochan", "on", ">pw", "~*", "resetchannels", "+@all", "-monitor"); got != "+OK\r\n" {
				t.Fatalf("ACL SETUSER: %q", got)
			}
			var in []byte
			for _, c := range cmds {
				in = append(in, proxytest.EncodeCommand(c...)...)
			}
			in = append(in, proxytest.EncodeCommand("ECHO", "--end--")...)
			run := func(addr string) (*proxytest.Conn, string) {
				r := proxytest.Dial(t, addr)
				r.Write(in)
				var out strings.Builder
				for {
					v, err := r.ReadE()
					if err != nil {
						t.Fatalf("%s: %v after %q", addr, err, out.String())
					}
					if v == "$7\r\n--end--\r\n" {
						return r, out.String()
					}
					out.WriteString(v)
				}
			}
			d, want := run(h.Redis.Addr)
			d.Close()
			p, got := run(h.Addr)
			if proxytest.HelloMask(got) != proxytest.HelloMask(want) {
				t.Errorf("replies: proxy %q, direct %q", got, want)
			}
			h.Redis.Stop()
			if out, err := p.ReadUntilEOF(); err != nil || out != "" {
				t.Errorf("after every command was answered, losing the upstream gave %q, %v; want a plain close", out, err)
			}
		})
	}
}
