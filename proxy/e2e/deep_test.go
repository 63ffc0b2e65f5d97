package e2e

// Replies nested far deeper than any client library expects: a Lua table
// that contains itself makes Redis 7.0 answer with about 8,000 nested
// arrays ending in "-ERR reached lua stack limit", and keep the
// connection (Redis's own unit/scripting "Script return recursive
// object"). The proxy must pass those bytes through, and — on a shared
// upstream connection — without disturbing anyone else's commands.

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/exproxy/exproxy/internal/proxytest"
)

const recursiveScript = "local a = {}; local b = {a}; a[1] = b; return a"

// TestDeepReplySameAsRedis: the recursive reply, and the commands after
// it on the same connection, byte for byte as Redis sends them, alone and
// pipelined.
func TestDeepReplySameAsRedis(t *testing.T) {
	h := proxytest.Start(t)
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			steps := []proxytest.Step{
				c("EVAL", recursiveScript, "0"),
				c("PING"),
				c("EVAL", "return {1, {2, {3, {4}}}}", "0"),
				c("EVAL", recursiveScript, "0"),
				c("SET", "k", "v"),
				c("GET", "k"),
			}
			h.SameAsRedis(t, proto, steps)
			h.SameAsRedisPipelined(t, proto, steps)
		})
	}
	// The reply really is that deep: a regression to a shallow script
	// would make this test pointless.
	r := h.DirectRaw(t)
	if v := r.Do("EVAL", recursiveScript, "0"); strings.Count(v, "*1\r\n") < 5000 || !strings.HasSuffix(v, "-ERR reached lua stack limit\r\n") {
		t.Fatalf("direct reply is not the deep one: %.100q ... (%d bytes)", v, len(v))
	}
	if st := h.Stats(); st.UpstreamErrors != 0 {
		t.Fatalf("%d upstream errors: the proxy dropped an upstream connection", st.UpstreamErrors)
	}
}

// TestDeepReplyLeavesOthersAlone runs the recursive script over and over
// on one client while another client pipelines ordinary commands through
// the same proxy — in shared mode over the same upstream connection. The
// bystander's replies must all arrive, correct and in order, and no
// upstream connection may be lost.
func TestDeepReplyLeavesOthersAlone(t *testing.T) {
	h := proxytest.Start(t)
	direct := h.DirectRaw(t)
	want := direct.Do("EVAL", recursiveScript, "0")
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			deep := h.ProxyRaw(t)
			bystander := h.ProxyRaw(t)
			if proto == 3 {
				for _, r := range []*proxytest.Conn{deep, bystander} {
					if v := r.Do("HELLO", "3"); !strings.HasPrefix(v, "%") {
						t.Fatalf("HELLO 3: %q", v)
					}
				}
			}
			before := h.Stats()
			const rounds, pipeline = 20, 500
			key := "bystander" + strconv.Itoa(proto)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				var in []byte
				for i := 0; i < rounds; i++ {
					in = append(in, proxytest.EncodeCommand("EVAL", recursiveScript, "0")...)
				}
				if err := deep.WriteE(in); err != nil {
					t.Errorf("deep client write: %v", err)
					return
				}
				for i := 0; i < rounds; i++ {
					v, err := deep.ReadE()
					if err != nil {
						t.Errorf("deep client, reply %d: %v", i, err)
						return
					}
					if v != want {
						t.Errorf("deep client, reply %d differs from Redis's: %s", i, proxytest.Clip(v))
						return
					}
				}
			}()
			for round := 0; round < rounds; round++ {
				var in []byte
				for i := 0; i < pipeline; i++ {
					in = append(in, proxytest.EncodeCommand("INCR", key)...)
					in = append(in, proxytest.EncodeCommand("ECHO", "m"+strconv.Itoa(i))...)
				}
				bystander.Write(in)
				for i := 0; i < pipeline; i++ {
					n := round*pipeline + i + 1
					if v := bystander.Read(); v != ":"+strconv.Itoa(n)+"\r\n" {
						t.Fatalf("bystander round %d, INCR %d: %q", round, i, v)
					}
					m := "m" + strconv.Itoa(i)
					if v := bystander.Read(); v != "$"+strconv.Itoa(len(m))+"\r\n"+m+"\r\n" {
						t.Fatalf("bystander round %d, ECHO %d: %q", round, i, v)
					}
				}
			}
			wg.Wait()
			if v := bystander.Do("PING"); v != "+PONG\r\n" {
				t.Fatalf("bystander after: %q", v)
			}
			if v := deep.Do("PING"); v != "+PONG\r\n" {
				t.Fatalf("deep client after: %q", v)
			}
			after := h.Stats()
			if after.UpstreamErrors != before.UpstreamErrors {
				t.Fatalf("upstream errors %d -> %d: an upstream connection was lost", before.UpstreamErrors, after.UpstreamErrors)
			}
			if h.Shared() && (after.SessionsPinned != before.SessionsPinned) {
				t.Fatalf("sessions pinned %d -> %d: the clients did not share a connection", before.SessionsPinned, after.SessionsPinned)
			}
		})
	}
}
