// Command gnetproxy is the smallest event-loop RESP proxy on gnet v2:
// client connections live on gnet event loops, and each loop has one
// upstream connection of its own, registered on the same loop
// (EventLoop.Register), so a command and its reply never leave the loop's
// goroutine. Commands are framed with resp.CommandParser and queued on
// the loop's upstream buffer and FIFO; replies are framed with
// resp.Framer and written to their client from the loop. A measurement
// tool, not product code: see README.md.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"sync"

	"github.com/panjf2000/gnet/v2"

	"github.com/exproxy/exproxy/proxy/resp"
)

var (
	listen   = flag.String("listen", "127.0.0.1:7401", "address to serve on")
	upstream = flag.String("upstream", "127.0.0.1:6379", "redis address")
	loops    = flag.Int("loops", 1, "event loops (each with its own upstream connection)")
	lock     = flag.Bool("lock", false, "lock each event loop to its OS thread")
	upwrite  = flag.String("upwrite", "deferred", "upstream writes: deferred (one write per poll batch, via a task the loop runs after the batch) or immediate (a write per client read)")
)

func main() {
	flag.Parse()
	if *upwrite != "deferred" && *upwrite != "immediate" {
		log.Fatalf("--upwrite %q: want deferred or immediate", *upwrite)
	}
	addr, err := net.ResolveTCPAddr("tcp", *upstream)
	if err != nil {
		log.Fatal(err)
	}
	h := &handler{upAddr: addr, states: map[gnet.EventLoop]*loopState{}}
	err = gnet.Run(h, "tcp://"+*listen,
		gnet.WithMulticore(*loops > 1),
		gnet.WithNumEventLoop(*loops),
		gnet.WithLockOSThread(*lock),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogLevel(2), // warn
	)
	log.Fatal(err)
}

type handler struct {
	gnet.BuiltinEventEngine
	upAddr net.Addr
	mu     sync.Mutex
	states map[gnet.EventLoop]*loopState
}

// loopState is one event loop's upstream connection, its FIFO and the
// commands not yet written. Only the loop's goroutine touches it.
type loopState struct {
	el       gnet.EventLoop
	up       gnet.Conn // nil until registered
	dialing  bool
	pending  []byte
	queued   bool // a flush task is queued
	fifo     []waiter
	framer   resp.Framer
	flushTsk gnet.RunnableFunc
}

type waiter struct {
	c *client
	n int
}

type client struct {
	conn   gnet.Conn
	ls     *loopState
	parser resp.CommandParser
	argv   [][]byte
	closed bool
}

// upstreamCtx marks the upstream connection's context.
type upstreamCtx struct{ ls *loopState }

func (h *handler) state(el gnet.EventLoop) *loopState {
	h.mu.Lock()
	defer h.mu.Unlock()
	ls := h.states[el]
	if ls == nil {
		ls = &loopState{el: el}
		ls.flushTsk = func(context.Context) error {
			ls.queued = false
			ls.flush()
			return nil
		}
		h.states[el] = ls
	}
	return ls
}

func (h *handler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if u, ok := c.Context().(*upstreamCtx); ok {
		u.ls.up = c
		u.ls.flush()
		return nil, gnet.None
	}
	ls := h.state(c.EventLoop())
	if ls.up == nil && !ls.dialing {
		ls.dialing = true
		ctx := gnet.NewContext(context.Background(), &upstreamCtx{ls: ls})
		if _, err := c.EventLoop().Register(ctx, h.upAddr); err != nil {
			log.Fatalf("register upstream: %v", err)
		}
	}
	c.SetContext(&client{conn: c, ls: ls, argv: make([][]byte, 0, 8)})
	return nil, gnet.None
}

func (h *handler) OnClose(c gnet.Conn, err error) gnet.Action {
	switch x := c.Context().(type) {
	case *client:
		x.closed = true
	case *upstreamCtx:
		log.Fatalf("upstream connection closed: %v", err)
	}
	return gnet.None
}

func (h *handler) OnTraffic(c gnet.Conn) gnet.Action {
	switch x := c.Context().(type) {
	case *client:
		return x.traffic()
	case *upstreamCtx:
		x.ls.replies(c)
	}
	return gnet.None
}

// traffic queues every complete command the client sent.
func (cl *client) traffic() gnet.Action {
	buf, _ := cl.conn.Peek(-1)
	r, n := 0, 0
	for r < len(buf) {
		m, args, _, err := cl.parser.Parse(buf[r:], cl.argv)
		if err != nil {
			return gnet.Close
		}
		if m == 0 {
			break
		}
		r += m
		if len(args) > 0 {
			n++
		}
	}
	if r == 0 {
		return gnet.None
	}
	ls := cl.ls
	if n > 0 {
		if k := len(ls.fifo); k > 0 && ls.fifo[k-1].c == cl {
			ls.fifo[k-1].n += n
		} else {
			ls.fifo = append(ls.fifo, waiter{cl, n})
		}
	}
	if *upwrite == "immediate" && ls.up != nil && len(ls.pending) == 0 {
		_, _ = ls.up.Write(buf[:r])
	} else {
		ls.pending = append(ls.pending, buf[:r]...)
		if !ls.queued && ls.up != nil {
			ls.queued = true
			_ = ls.el.Execute(context.Background(), ls.flushTsk)
		}
	}
	_, _ = cl.conn.Discard(r)
	return gnet.None
}

func (ls *loopState) flush() {
	if ls.up == nil || len(ls.pending) == 0 {
		return
	}
	_, _ = ls.up.Write(ls.pending)
	ls.pending = ls.pending[:0]
}

// replies frames what Redis sent and writes each run of one client's
// replies to it.
func (ls *loopState) replies(up gnet.Conn) {
	buf, _ := up.Peek(-1)
	r := 0
	start := 0
	var held *client
	out := func(end int) {
		if held != nil && !held.closed && end > start {
			_, _ = held.conn.Write(buf[start:end])
		}
	}
	for r < len(buf) {
		m, done, err := ls.framer.Next(buf[r:])
		if err != nil {
			log.Fatalf("upstream reply: %v", err)
		}
		if m == 0 && !done {
			break
		}
		if len(ls.fifo) == 0 {
			log.Fatalf("reply with nobody waiting")
		}
		c := ls.fifo[0].c
		if c != held {
			out(r)
			held, start = c, r
		}
		r += m
		if done {
			ls.fifo[0].n--
			if ls.fifo[0].n == 0 {
				ls.fifo[0].c = nil
				ls.fifo = ls.fifo[1:]
			}
		}
	}
	out(r)
	_, _ = up.Discard(r)
}
