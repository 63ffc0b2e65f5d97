package e2e

import (
	"strconv"
	"strings"
	"testing"

	"github.com/exproxy/exproxy/internal/proxytest"
)

// Before AUTH, Redis's own limits: a client that has not authenticated to
// a Redis that requires a password may send at most 10 arguments and
// bulks of at most 16384 bytes; beyond them Redis answers with its
// "unauthenticated" protocol errors and closes at once, without waiting
// for the rest of the command. Through the proxy the client sees the same,
// and the proxy does not read (or forward) the large command either.

func TestE2EUnauthenticatedLimits(t *testing.T) {
	h := passwordHarness(t)
	big := strings.Repeat("x", 16384)
	refused := []struct{ name, input string }{
		{"eleven arguments", "*11\r\n"},
		{"a hundred arguments", "*100\r\n"},
		{"a 100 MB bulk", "*1\r\n$100000000\r\n"},
		{"a bulk of 16385 bytes", "*2\r\n$4\r\nECHO\r\n$16385\r\n"},
		{"after a refused AUTH", string(proxytest.EncodeCommand("AUTH", "wrong")) + "*11\r\n"},
		{"invalid before unauthenticated", "*-x\r\n"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			want := closeExchange(t, h.Redis.Addr, tc.input)
			if !strings.Contains(want, "Protocol error") {
				t.Fatalf("test assumption: Redis answered %q", want)
			}
			if got := closeExchange(t, h.Addr, tc.input); got != want {
				t.Errorf("through proxy %q, Redis %q", got, want)
			}
		})
	}
	// At the limits Redis reads the command and refuses it with NOAUTH,
	// keeping the connection.
	atLimit := []struct{ name, input string }{
		{"ten arguments", string(proxytest.EncodeCommand("DEL", "a", "b", "c", "d", "e", "f", "g", "h", "i"))},
		{"a bulk of 16384 bytes", string(proxytest.EncodeCommand("ECHO", big))},
	}
	for _, tc := range atLimit {
		t.Run(tc.name, func(t *testing.T) {
			for _, addr := range []string{h.Redis.Addr, h.Addr} {
				c := proxytest.Dial(t, addr)
				c.WriteString(tc.input)
				if got := c.Read(); !strings.HasPrefix(got, "-NOAUTH") {
					t.Errorf("%s: %q, want NOAUTH", addr, got)
				}
				if got := c.Do("PING"); !strings.HasPrefix(got, "-NOAUTH") {
					t.Errorf("%s: connection not kept: %q", addr, got)
				}
				c.Close()
			}
		})
	}
	// Once AUTH (or HELLO ... AUTH) succeeds, the normal limits apply.
	keys := make([]string, 0, 101)
	keys = append(keys, "DEL")
	for i := 0; i < 100; i++ {
		keys = append(keys, "k"+strconv.Itoa(i))
	}
	for _, login := range [][]string{{"AUTH", testPass}, {"AUTH", "alice", "alice-pw"}, {"HELLO", "2", "AUTH", "default", testPass}} {
		t.Run("after "+login[0]+" "+login[1], func(t *testing.T) {
			c := h.ProxyRaw(t)
			if got := c.Do(login...); strings.HasPrefix(got, "-") {
				t.Fatalf("%v: %q", login, got)
			}
			if got := c.Do(keys...); got != ":0\r\n" {
				t.Errorf("DEL of 100 keys after %s: %q", login[0], got)
			}
			if got := c.Do("ECHO", big+big); got != "$32768\r\n"+big+big+"\r\n" {
				t.Errorf("ECHO of 32768 bytes after %s: %.40q", login[0], got)
			}
		})
	}
	// AUTH and the over-limit command in one write: Redis reads the second
	// with the outcome of the first.
	t.Run("pipelined after AUTH", func(t *testing.T) {
		in := string(proxytest.EncodeCommand("AUTH", testPass)) + string(proxytest.EncodeCommand(keys...))
		for _, addr := range []string{h.Redis.Addr, h.Addr} {
			c := proxytest.Dial(t, addr)
			c.WriteString(in)
			if got := c.ReadN(2); got[0] != "+OK\r\n" || got[1] != ":0\r\n" {
				t.Errorf("%s: %q", addr, got)
			}
			c.Close()
		}
	})
}
