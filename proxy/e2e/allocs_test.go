package e2e

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/exproxy/exproxy/internal/proxytest"
)

// TestE2EForwardingAllocatesNothing: a command forwarded to Redis and its
// reply forwarded back cost the proxy no allocation once the session and
// its connections are set up — read, route, write upstream, read the
// reply, write it to the client. The client here is a raw connection
// with fixed buffers, so every allocation counted is the proxy's (the
// proxy runs in this process).
func TestE2EForwardingAllocatesNothing(t *testing.T) {
	h := proxytest.Start(t)
	c, err := net.Dial("tcp", h.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(proxytest.IOTimeout))
	set := []byte("*3\r\n$3\r\nSET\r\n$3\r\nfoo\r\n$3\r\nbar\r\n")
	get := []byte("*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n")
	var buf [16]byte
	roundTrip := func(cmd []byte, want string) {
		if _, err := c.Write(cmd); err != nil {
			t.Fatalf("write: %v", err)
		}
		if _, err := io.ReadFull(c, buf[:len(want)]); err != nil || string(buf[:len(want)]) != want {
			t.Fatalf("reply %q, %v; want %q", buf[:len(want)], err, want)
		}
	}
	both := func() {
		roundTrip(set, "+OK\r\n")
		roundTrip(get, "$3\r\nbar\r\n")
	}
	for i := 0; i < 100; i++ { // connections dialled, buffers grown, lazy state set up
		both()
	}
	if n := testing.AllocsPerRun(2000, both); n != 0 {
		t.Errorf("%v allocations per SET + GET round trip through the proxy, want 0", n)
	}
}
