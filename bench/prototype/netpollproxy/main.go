// Command netpollproxy is the smallest RESP proxy on cloudwego/netpoll:
// netpoll's pollers read every socket into its buffers and run the
// OnRequest handler of a connection with data on a goroutine from its
// pool. A client's handler frames its commands (resp.CommandParser) and
// queues them on one shared upstream connection, writing them itself when
// no write is in progress; the upstream connection's handler frames the
// replies (resp.Framer) and writes each run of one client's replies to
// it. A measurement tool, not product code: see README.md.
package main

import (
	"context"
	"flag"
	"log"
	"sync"
	"time"

	"github.com/cloudwego/netpoll"

	"github.com/exproxy/exproxy/proxy/resp"
)

var (
	listen   = flag.String("listen", "127.0.0.1:7403", "address to serve on")
	upstream = flag.String("upstream", "127.0.0.1:6379", "redis address")
)

type ctxKey struct{}

type client struct {
	conn   netpoll.Connection
	parser resp.CommandParser
	argv   [][]byte
}

type waiter struct {
	c *client
	n int
}

// upConn is the shared upstream connection.
type upConn struct {
	conn    netpoll.Connection
	mu      sync.Mutex
	out     []byte
	spare   []byte
	fifo    []waiter
	writing bool

	// reply handler state (one handler runs at a time per connection)
	framer resp.Framer
	local  []waiter
}

func main() {
	flag.Parse()
	c, err := netpoll.DialConnection("tcp", *upstream, 3*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	up := &upConn{conn: c}
	if err := c.SetOnRequest(up.onReply); err != nil {
		log.Fatal(err)
	}
	ln, err := netpoll.CreateListener("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	el, err := netpoll.NewEventLoop(
		func(ctx context.Context, conn netpoll.Connection) error {
			return up.onRequest(ctx.Value(ctxKey{}).(*client))
		},
		netpoll.WithOnPrepare(func(conn netpoll.Connection) context.Context {
			return context.WithValue(context.Background(), ctxKey{}, &client{conn: conn, argv: make([][]byte, 0, 8)})
		}),
	)
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(el.Serve(ln))
}

// onRequest queues every complete command the client sent and writes the
// shared buffer upstream if no other handler is writing it.
func (u *upConn) onRequest(c *client) error {
	r := c.conn.Reader()
	buf, err := r.Peek(r.Len())
	if err != nil {
		return err
	}
	off, n := 0, 0
	for off < len(buf) {
		m, args, _, perr := c.parser.Parse(buf[off:], c.argv)
		if perr != nil {
			return c.conn.Close()
		}
		if m == 0 {
			break
		}
		off += m
		if len(args) > 0 {
			n++
		}
	}
	if off == 0 {
		return nil
	}
	u.mu.Lock()
	if n > 0 {
		if k := len(u.fifo); k > 0 && u.fifo[k-1].c == c {
			u.fifo[k-1].n += n
		} else {
			u.fifo = append(u.fifo, waiter{c, n})
		}
	}
	u.out = append(u.out, buf[:off]...)
	_ = r.Skip(off)
	_ = r.Release()
	if u.writing {
		u.mu.Unlock()
		return nil
	}
	u.writing = true
	for len(u.out) > 0 {
		out := u.out
		u.out = u.spare[:0]
		u.mu.Unlock()
		w := u.conn.Writer()
		if _, err := w.WriteBinary(out); err != nil {
			log.Fatalf("upstream write: %v", err)
		}
		if err := w.Flush(); err != nil {
			log.Fatalf("upstream flush: %v", err)
		}
		u.mu.Lock()
		u.spare = out[:0]
	}
	u.writing = false
	u.mu.Unlock()
	return nil
}

// onReply frames replies and writes each run of one client's replies.
func (u *upConn) onReply(_ context.Context, conn netpoll.Connection) error {
	r := conn.Reader()
	buf, err := r.Peek(r.Len())
	if err != nil {
		return err
	}
	off, start := 0, 0
	var held *client
	out := func(end int) {
		if held != nil && end > start {
			w := held.conn.Writer()
			if _, err := w.WriteBinary(buf[start:end]); err == nil {
				_ = w.Flush()
			}
		}
	}
	for off < len(buf) {
		m, done, ferr := u.framer.Next(buf[off:])
		if ferr != nil {
			log.Fatalf("upstream reply: %v", ferr)
		}
		if m == 0 && !done {
			break
		}
		if len(u.local) == 0 {
			u.mu.Lock()
			u.local = append(u.local, u.fifo...)
			clear(u.fifo)
			u.fifo = u.fifo[:0]
			u.mu.Unlock()
		}
		c := u.local[0].c
		if c != held {
			out(off)
			held, start = c, off
		}
		off += m
		if done {
			u.local[0].n--
			if u.local[0].n == 0 {
				u.local[0].c = nil
				u.local = u.local[1:]
			}
		}
	}
	out(off)
	_ = r.Skip(off)
	return r.Release()
}
