package proxy_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/exproxy/exproxy/extensions/exstring"
	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
)

// TestExecElementsGoThroughReplyHandlers: inside MULTI, the replies of
// rewritten commands arrive as elements of EXEC's reply; they must come
// out exactly as they would outside MULTI. exstring's Lua can return
// integers beyond 2^53 only as strings, and its ReplyHandler turns them
// back into the module's integer replies — in EXEC's elements too.
func TestExecElementsGoThroughReplyHandlers(t *testing.T) {
	r := redistest.Start(t)
	ext, err := exstring.New(exstring.Config{Upstream: proxy.Upstream{Network: "tcp", Addr: r.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ext.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ext.Load(ctx); err != nil {
		t.Fatal(err)
	}
	addr := smokeProxy(t, r.Addr, func(o *proxy.Options) { o.Rewriters = []proxy.Rewriter{ext} })

	const max = "9223372036854775807"
	for _, proto := range []string{"2", "3"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		send := func(args ...string) {
			var b strings.Builder
			b.WriteString("*" + itoa(len(args)) + "\r\n")
			for _, a := range args {
				b.WriteString("$" + itoa(len(a)) + "\r\n" + a + "\r\n")
			}
			if _, err := c.Write([]byte(b.String())); err != nil {
				t.Fatal(err)
			}
		}
		line := func() string {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("RESP%s: read: %v", proto, err)
			}
			return l
		}
		send("HELLO", proto)
		// Skip HELLO's map/array: count its top-level entries.
		h := line()
		n := atoi(h[1 : len(h)-2])
		if h[0] == '%' {
			n *= 2
		}
		for i := 0; i < n; i++ {
			skipValue(t, br, line)
		}
		key := "big" + proto
		send("MULTI")
		send("EXSET", key, "v", "ABS", max, "WITHVERSION")
		send("EXINCRBY", "n"+proto, "0", "DEF", max)
		send("EXGET", key)
		send("EXEC")
		var got strings.Builder
		for i := 0; i < 4; i++ { // +OK, 3 × +QUEUED
			got.WriteString(line())
		}
		if want := "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n"; got.String() != want {
			t.Fatalf("RESP%s: MULTI and queueing = %q", proto, got.String())
		}
		got.Reset()
		for i := 0; i < 7; i++ { // *3, :max, :max, *2, $1, v, :max
			got.WriteString(line())
		}
		want := "*3\r\n:" + max + "\r\n:" + max + "\r\n*2\r\n$1\r\nv\r\n:" + max + "\r\n"
		if got.String() != want {
			t.Errorf("RESP%s: EXEC = %q, want %q", proto, got.String(), want)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// skipValue reads one RESP value whose first line line() returns.
func skipValue(t *testing.T, br *bufio.Reader, line func() string) {
	t.Helper()
	l := line()
	switch l[0] {
	case '$', '=':
		if n := atoi(l[1 : len(l)-2]); l[1] != '-' {
			buf := make([]byte, n+2)
			if _, err := br.Read(buf); err != nil {
				t.Fatal(err)
			}
		}
	case '*', '~':
		for i, n := 0, atoi(l[1:len(l)-2]); i < n; i++ {
			skipValue(t, br, line)
		}
	case '%':
		for i, n := 0, atoi(l[1:len(l)-2]); i < 2*n; i++ {
			skipValue(t, br, line)
		}
	}
}

// TestLongReplyIntegersExact: a reply longer than what Check sees (a long
// value before the version) is buffered and fixed whole.
func TestLongReplyIntegersExact(t *testing.T) {
	r := redistest.Start(t)
	ext, err := exstring.New(exstring.Config{Upstream: proxy.Upstream{Network: "tcp", Addr: r.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ext.Close() })
	addr := smokeProxy(t, r.Addr, func(o *proxy.Options) { o.Rewriters = []proxy.Rewriter{ext} })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	val := strings.Repeat("x", 1000)
	const max = "9223372036854775807"
	cmds := "*5\r\n$5\r\nEXSET\r\n$1\r\nk\r\n$1000\r\n" + val + "\r\n$3\r\nABS\r\n$19\r\n" + max + "\r\n" +
		"*2\r\n$5\r\nEXGET\r\n$1\r\nk\r\n"
	if _, err := c.Write([]byte(cmds)); err != nil {
		t.Fatal(err)
	}
	want := "+OK\r\n*2\r\n$1000\r\n" + val + "\r\n:" + max + "\r\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v (got %q)", err, got)
	}
	if string(got) != want {
		t.Fatalf("EXGET of a long value = %q", got)
	}
}
