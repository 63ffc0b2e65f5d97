package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/internal/proxytest"
)

// TestE2ELostConnectionRetriedLikeRedis: a BLPOP is in flight when its
// connection to Redis is killed (CLIENT KILL). Directly, go-redis sees
// the connection drop, and its retry runs the BLPOP again on a new
// connection, which an RPUSH then wakes. Through the proxy the client
// must see the same thing — a dropped connection, not an error reply —
// so that the same retry gives the same result.
func TestE2ELostConnectionRetriedLikeRedis(t *testing.T) {
	h := proxytest.Start(t)
	ctx := context.Background()
	for _, proto := range proxytest.Protocols {
		for _, via := range []string{"direct", "proxy"} {
			t.Run(fmt.Sprintf("RESP%d/%s", proto, via), func(t *testing.T) {
				h.ResetRedis(t)
				mod := func(o *redis.Options) {
					o.MaxRetries = 3
					o.MinRetryBackoff, o.MaxRetryBackoff = 10*time.Millisecond, 50*time.Millisecond
				}
				var c *redis.Client
				if via == "direct" {
					c = h.Direct(t, proto, mod)
				} else {
					c = h.Client(t, proto, mod)
				}
				got := make(chan []string, 1)
				errs := make(chan error, 1)
				go func() {
					v, err := c.BLPop(ctx, 0, "q").Result()
					got <- v
					errs <- err
				}()
				h.WaitBlocked(t, 1)
				killBlocked(t, h)
				// The retry blocks again on a new connection.
				h.WaitBlocked(t, 1)
				admin := h.DirectRaw(t)
				defer admin.Close()
				if r := admin.Do("RPUSH", "q", "v"); r != ":1\r\n" {
					t.Fatalf("RPUSH: %q", r)
				}
				select {
				case v := <-got:
					if err := <-errs; err != nil || len(v) != 2 || v[1] != "v" {
						t.Errorf("BLPOP after its connection was killed: %q, %v; want [q v] from the retry", v, err)
					}
				case <-time.After(proxytest.IOTimeout):
					t.Fatal("BLPOP never returned")
				}
			})
		}
	}
}

// killBlocked kills, in Redis, the connection blocked in BLPOP.
func killBlocked(t *testing.T, h *proxytest.Harness) {
	t.Helper()
	for _, l := range h.ClientList(t) {
		// flags b: blocked now. cmd is only the last command, which a
		// ready connection that served an earlier BLPOP still shows.
		if proxytest.ClientField(l, "cmd") == "blpop" && strings.Contains(proxytest.ClientField(l, "flags"), "b") {
			admin := h.DirectRaw(t)
			defer admin.Close()
			if r := admin.Do("CLIENT", "KILL", "ID", proxytest.ClientField(l, "id")); r != ":1\r\n" {
				t.Fatalf("CLIENT KILL: %q", r)
			}
			return
		}
	}
	t.Fatalf("no connection blocked in BLPOP: %s", strings.Join(h.ClientList(t), "\n"))
}

// TestE2ELostConnectionRawClient: on the raw wire, a killed connection
// with commands in flight closes the client with nothing written for
// them — byte for byte what Redis sends (nothing) — and the proxy logs
// why, counting the commands.
func TestE2ELostConnectionRawClient(t *testing.T) {
	h := proxytest.Start(t)
	c := h.ProxyRaw(t)
	c.Do("PING")
	c.Write(append(proxytest.EncodeCommand("BLPOP", "q", "0"), proxytest.EncodeCommand("PING")...))
	h.WaitBlocked(t, 1)
	lost := h.Stats().LostCommands
	killBlocked(t, h)
	out, err := c.ReadUntilEOF()
	if err != nil || out != "" {
		t.Errorf("after the kill: %q, %v; want the close and nothing else", out, err)
	}
	proxytest.Eventually(t, "2 lost commands counted", func() bool { return h.Stats().LostCommands == lost+2 })
	if h.Logs != nil && !strings.Contains(h.Logs.Text(), "upstream connection lost") {
		t.Errorf("no warning logged for the lost connection")
	}
}
