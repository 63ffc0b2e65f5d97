package slowread

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/exproxy/exproxy/internal/redistest"
)

const valueSize = 1 << 20

// setBig stores a value of valueSize bytes at key in the server at addr.
func setBig(t *testing.T, addr, key string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cmd := fmt.Sprintf("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(key), key, valueSize, strings.Repeat("v", valueSize))
	if _, err := c.Write([]byte(cmd)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "+OK\r\n" {
		t.Fatalf("SET: %q, %v", line, err)
	}
}

func TestReplySize(t *testing.T) {
	// "$5\r\nhello\r\n"
	if got := ReplySize(5); got != 11 {
		t.Fatalf("ReplySize(5) = %d, want 11", got)
	}
}

// Every reader that keeps reading gets every reply in full.
func TestFastAndSlowReadEverything(t *testing.T) {
	srv := redistest.Start(t)
	setBig(t, srv.Addr, "big")
	for _, mode := range []Mode{Fast, Slow} {
		t.Run(string(mode), func(t *testing.T) {
			res, err := Run(context.Background(), Config{
				Addr: srv.Addr, Key: "big", ValueSize: valueSize, Clients: 3, GETs: 2, Mode: mode,
				SlowChunk: 128 << 10, SlowPause: time.Millisecond, Timeout: time.Minute,
			})
			if err != nil {
				t.Fatal(err)
			}
			want := 2 * ReplySize(valueSize)
			if res.Want != want || res.Complete != 3 || res.Cut != 0 || res.Read != 3*want {
				t.Fatalf("result %+v, want 3 complete clients of %d bytes", res, want)
			}
		})
	}
}

// A stalled client that Redis disconnects for passing its output limit is
// counted as cut, and the stall callback runs before anything is read.
func TestStalledClientIsCut(t *testing.T) {
	srv := redistest.Start(t, redistest.WithConfig("client-output-buffer-limit", "normal", "2mb", "0", "0"))
	setBig(t, srv.Addr, "big")
	called := false
	res, err := Run(context.Background(), Config{
		Addr: srv.Addr, Key: "big", ValueSize: valueSize, Clients: 2, GETs: 20, Mode: Stalled,
		Stalled: func(context.Context) { called = true; time.Sleep(time.Second) },
		Timeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !called {
		t.Fatal("the Stalled callback was not called")
	}
	if res.Cut != 2 || res.Complete != 0 || res.Read >= res.Want*2 {
		t.Fatalf("result %+v, want both clients cut before their %d bytes", res, res.Want)
	}
}
