package proxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/exproxy/exproxy/extensions/exstring"
	"github.com/exproxy/exproxy/proxy"
)

// withExstring puts the exstring extension in front of the harness's
// Redis, its library loaded.
func withExstring(t *testing.T) *harness {
	t.Helper()
	var ext *exstring.Extension
	h := newHarness(t, withOptions(func(o *proxy.Options) {
		var err error
		ext, err = exstring.New(exstring.Config{Upstream: o.Upstream})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ext.Close() })
		o.Rewriters = []proxy.Rewriter{ext}
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ext.Load(ctx); err != nil {
		t.Fatal(err)
	}
	return h
}

const maxInt64 = "9223372036854775807"

// TestExecElementsGoThroughReplyHandlers: inside MULTI, the replies of
// rewritten commands arrive as elements of EXEC's reply; they must come
// out exactly as they would outside MULTI. exstring's Lua can return
// integers beyond 2^53 only as strings, and its ReplyHandler turns them
// back into the module's integer replies — in EXEC's elements too.
func TestExecElementsGoThroughReplyHandlers(t *testing.T) {
	h := withExstring(t)
	for _, proto := range []string{"2", "3"} {
		c := h.proxyRaw(t)
		if got := c.do("HELLO", proto); got[0] != '%' && got[0] != '*' {
			t.Fatalf("HELLO %s: %q", proto, got)
		}
		key := "big" + proto
		steps := [][2]string{
			{"MULTI", "+OK\r\n"},
			{"EXSET " + key + " v ABS " + maxInt64 + " WITHVERSION", "+QUEUED\r\n"},
			{"EXINCRBY n" + proto + " 0 DEF " + maxInt64, "+QUEUED\r\n"},
			{"EXGET " + key, "+QUEUED\r\n"},
			{"EXEC", "*3\r\n:" + maxInt64 + "\r\n:" + maxInt64 + "\r\n*2\r\n$1\r\nv\r\n:" + maxInt64 + "\r\n"},
		}
		for _, s := range steps {
			if got := c.do(strings.Fields(s[0])...); got != s[1] {
				t.Errorf("RESP%s %s = %q, want %q", proto, s[0], got, s[1])
			}
		}
	}
}

// TestLongReplyIntegersExact: a reply longer than what Check sees (a long
// value before the version) is buffered and fixed whole.
func TestLongReplyIntegersExact(t *testing.T) {
	h := withExstring(t)
	c := h.proxyRaw(t)
	val := strings.Repeat("x", 1000)
	if got := c.do("EXSET", "k", val, "ABS", maxInt64); got != "+OK\r\n" {
		t.Fatalf("EXSET = %q", got)
	}
	if got, want := c.do("EXGET", "k"), "*2\r\n$1000\r\n"+val+"\r\n:"+maxInt64+"\r\n"; got != want {
		t.Fatalf("EXGET of a long value = %q, want %q", got, want)
	}
}
