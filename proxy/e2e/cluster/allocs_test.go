package cluster

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/exproxy/exproxy/internal/proxytest"
)

// TestForwardingAllocatesNothing: in front of a Redis Cluster too, a
// command routed to its node and its reply forwarded back cost the proxy
// no allocation once the session and its node connections are set up.
func TestForwardingAllocatesNothing(t *testing.T) {
	h := proxytest.StartCluster(t, theCluster(t))
	h.WaitReady(t)
	c, err := net.Dial("tcp", h.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(proxytest.IOTimeout))
	// Two keys on different nodes ({a} and {b} hash to slots 15495 and
	// 3300), so the round trips move between node connections.
	cmds := [][]byte{
		[]byte("*3\r\n$3\r\nSET\r\n$6\r\n{a}foo\r\n$3\r\nbar\r\n"),
		[]byte("*2\r\n$3\r\nGET\r\n$6\r\n{a}foo\r\n"),
		[]byte("*3\r\n$3\r\nSET\r\n$6\r\n{b}foo\r\n$3\r\nbaz\r\n"),
		[]byte("*2\r\n$3\r\nGET\r\n$6\r\n{b}foo\r\n"),
	}
	wants := []string{"+OK\r\n", "$3\r\nbar\r\n", "+OK\r\n", "$3\r\nbaz\r\n"}
	var buf [16]byte
	all := func() {
		for i, cmd := range cmds {
			if _, err := c.Write(cmd); err != nil {
				t.Fatalf("write: %v", err)
			}
			want := wants[i]
			if _, err := io.ReadFull(c, buf[:len(want)]); err != nil || string(buf[:len(want)]) != want {
				t.Fatalf("reply %q, %v; want %q", buf[:len(want)], err, want)
			}
		}
	}
	for i := 0; i < 100; i++ {
		all()
	}
	if n := testing.AllocsPerRun(1000, all); n != 0 {
		t.Errorf("%v allocations per 4 round trips through the proxy to two nodes, want 0", n)
	}
}
