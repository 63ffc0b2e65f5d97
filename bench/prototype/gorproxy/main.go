// Command gorproxy is the smallest goroutine-per-client RESP proxy with
// exproxy's shared-mode shape: one goroutine per client reads and frames
// commands (resp.CommandParser) and appends them, under a mutex, to one
// shared upstream connection's buffer and FIFO; a writer goroutine sends
// that buffer; one reader goroutine frames the replies (resp.Framer) and
// writes each run of one client's replies to that client without
// waiting. It has none of exproxy's routing, limits or error handling:
// it is a measurement tool for the floor of the design. See README.md.
package main

import (
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/exproxy/exproxy/proxy/resp"
)

var (
	listen   = flag.String("listen", "127.0.0.1:7400", "address to serve on")
	upstream = flag.String("upstream", "127.0.0.1:6379", "redis address")
	conns    = flag.Int("conns", 1, "shared upstream connections")
	write    = flag.String("write", "writer", "who writes upstream: writer (a goroutine per upstream connection, as exproxy) or inline (the client goroutine that finds no write in progress)")
	gosched  = flag.Bool("gosched", true, "yield once before each upstream write, so other ready clients append first (writer mode: as exproxy; inline mode: opt-in)")
	reply    = flag.String("reply", "reader", "who writes replies to a client: reader (the upstream reader, without waiting) or handoff (a writer goroutine per client, woken by the reader)")
	rawread  = flag.Bool("rawread", true, "read clients inside RawConn.Read, waiting for readiness after a short read instead of reading EAGAIN (as exproxy)")
)

func main() {
	flag.Parse()
	if *write != "writer" && *write != "inline" {
		log.Fatalf("--write %q: want writer or inline", *write)
	}
	if *reply != "reader" && *reply != "handoff" {
		log.Fatalf("--reply %q: want reader or handoff", *reply)
	}
	if *write == "inline" && !isSet("gosched") {
		*gosched = false // inline mode yields only when asked
	}
	ups := make([]*upConn, *conns)
	for i := range ups {
		c, err := net.Dial("tcp", *upstream)
		if err != nil {
			log.Fatal(err)
		}
		ups[i] = &upConn{conn: c, kick: make(chan struct{}, 1)}
		if *write == "writer" {
			go ups[i].writer()
		}
		go ups[i].reader()
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	for i := 0; ; i++ {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		cl := newClient(c)
		go cl.serve(ups[i%len(ups)])
	}
}

func isSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// upConn is one upstream connection shared by many clients.
type upConn struct {
	conn    net.Conn
	mu      sync.Mutex
	out     []byte
	spare   []byte
	fifo    []waiter
	writing bool
	kick    chan struct{}
}

// waiter is a run of one client's commands in the FIFO.
type waiter struct {
	c *client
	n int
}

// send queues n commands of c (their bytes in data).
func (u *upConn) send(c *client, data []byte, n int) {
	u.mu.Lock()
	if k := len(u.fifo); k > 0 && u.fifo[k-1].c == c {
		u.fifo[k-1].n += n
	} else {
		u.fifo = append(u.fifo, waiter{c, n})
	}
	u.out = append(u.out, data...)
	if u.writing {
		u.mu.Unlock()
		return
	}
	u.writing = true
	if *write == "writer" {
		u.mu.Unlock()
		select {
		case u.kick <- struct{}{}:
		default:
		}
		return
	}
	// Inline: this goroutine writes, for every client that appends
	// meanwhile too.
	if *gosched {
		u.mu.Unlock()
		runtime.Gosched()
		u.mu.Lock()
	}
	u.drainLocked()
	u.mu.Unlock()
}

// drainLocked writes u.out until it stays empty; u.mu is held.
func (u *upConn) drainLocked() {
	for len(u.out) > 0 {
		out := u.out
		u.out = u.spare[:0]
		u.mu.Unlock()
		if _, err := u.conn.Write(out); err != nil {
			log.Fatalf("upstream write: %v", err)
		}
		u.mu.Lock()
		u.spare = out[:0]
	}
	u.writing = false
}

func (u *upConn) writer() {
	for range u.kick {
		if *gosched {
			runtime.Gosched()
		}
		u.mu.Lock()
		u.drainLocked()
		u.mu.Unlock()
	}
}

// reader frames replies and hands each run of one client's replies to it.
func (u *upConn) reader() {
	buf := make([]byte, 64<<10)
	var f resp.Framer
	var local []waiter
	var held *client
	r, w := 0, 0
	for {
		if w == len(buf) {
			if r == 0 {
				nb := make([]byte, 2*len(buf))
				copy(nb, buf)
				buf = nb
			} else {
				w = copy(buf, buf[r:w])
				r = 0
			}
		}
		n, err := u.conn.Read(buf[w:])
		if err != nil {
			log.Fatalf("upstream read: %v", err)
		}
		w += n
		for r < w {
			m, done, ferr := f.Next(buf[r:w])
			if ferr != nil {
				log.Fatalf("upstream reply: %v", ferr)
			}
			if m == 0 && !done {
				break
			}
			chunk := buf[r : r+m]
			r += m
			if len(local) == 0 {
				u.mu.Lock()
				local = append(local, u.fifo...)
				clear(u.fifo)
				u.fifo = u.fifo[:0]
				u.mu.Unlock()
			}
			c := local[0].c
			if c != held {
				held.flush()
				held = c
			}
			c.out = append(c.out, chunk...)
			if done {
				local[0].n--
				if local[0].n == 0 {
					local[0].c = nil
					local = local[1:]
				}
			}
		}
		held.flush()
		held = nil
		if r == w {
			r, w = 0, 0
		}
	}
}

// client is one client connection.
type client struct {
	conn net.Conn
	raw  syscall.RawConn
	out  []byte // replies collected by the upstream reader

	// Slow path (reply=reader) or hand-off (reply=handoff).
	mu      sync.Mutex
	slow    atomic.Bool
	pending []byte
	wake    chan struct{}
	closed  bool
}

func newClient(c net.Conn) *client {
	cl := &client{conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		cl.raw, _ = sc.SyscallConn()
	}
	if *reply == "handoff" {
		cl.wake = make(chan struct{}, 1)
		go cl.handoffWriter()
	}
	return cl
}

// flush sends what the reader collected for c.
func (c *client) flush() {
	if c == nil || len(c.out) == 0 {
		return
	}
	if *reply == "handoff" {
		c.mu.Lock()
		if !c.closed {
			c.pending = append(c.pending, c.out...)
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
		c.mu.Unlock()
		c.out = c.out[:0]
		return
	}
	if c.slow.Load() && c.toSlow(c.out) {
		c.out = c.out[:0]
		return
	}
	n := 0
	_ = c.raw.Write(func(fd uintptr) bool {
		for {
			m, err := syscall.Write(int(fd), c.out)
			if err == syscall.EINTR {
				continue
			}
			if m > 0 {
				n = m
			}
			if err != nil && err != syscall.EAGAIN {
				n = len(c.out) // gone: drop the replies
			}
			return true
		}
	})
	if n < len(c.out) {
		c.mu.Lock()
		c.pending = append(c.pending, c.out[n:]...)
		if !c.slow.Load() {
			c.slow.Store(true)
			go c.slowWriter()
		}
		c.mu.Unlock()
	}
	c.out = c.out[:0]
}

// toSlow appends b to the slow writer's backlog if it still runs.
func (c *client) toSlow(b []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.slow.Load() {
		return false
	}
	c.pending = append(c.pending, b...)
	return true
}

func (c *client) slowWriter() {
	var chunk []byte
	for {
		c.mu.Lock()
		if len(c.pending) == 0 {
			c.slow.Store(false)
			c.mu.Unlock()
			return
		}
		chunk, c.pending = c.pending, chunk[:0]
		c.mu.Unlock()
		if _, err := c.conn.Write(chunk); err != nil {
			c.mu.Lock()
			c.pending = c.pending[:0]
			c.mu.Unlock()
		}
	}
}

func (c *client) handoffWriter() {
	var chunk []byte
	for range c.wake {
		c.mu.Lock()
		chunk, c.pending = c.pending, chunk[:0]
		c.mu.Unlock()
		if len(chunk) > 0 {
			_, _ = c.conn.Write(chunk)
		}
	}
}

func (c *client) close() {
	_ = c.conn.Close()
	if c.wake != nil {
		c.mu.Lock()
		c.closed = true
		close(c.wake)
		c.mu.Unlock()
	}
}

// serve reads and frames the client's commands and queues them upstream.
func (c *client) serve(up *upConn) {
	defer c.close()
	buf := make([]byte, 16<<10)
	var p resp.CommandParser
	argv := make([][]byte, 0, 8)
	r, w := 0, 0
	// process queues every complete command in buf[r:w].
	process := func() bool {
		start, n := r, 0
		for r < w {
			m, args, _, err := p.Parse(buf[r:w], argv)
			if err != nil {
				return false
			}
			if m == 0 {
				break
			}
			r += m
			if len(args) > 0 {
				n++
			}
		}
		if n > 0 {
			up.send(c, buf[start:r], n)
		}
		if r == w {
			r, w = 0, 0
		} else if w == len(buf) {
			if r > 0 {
				w = copy(buf, buf[r:w])
				r = 0
			} else {
				nb := make([]byte, 2*len(buf))
				copy(nb, buf)
				buf = nb
			}
		}
		return true
	}
	if !*rawread || c.raw == nil {
		for {
			n, err := c.conn.Read(buf[w:])
			w += n
			if n > 0 && !process() {
				return
			}
			if err != nil {
				return
			}
		}
	}
	var ended bool
	err := c.raw.Read(func(fd uintptr) bool {
		for {
			space := len(buf) - w
			n, err := syscall.Read(int(fd), buf[w:])
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				return false
			case err != nil || n == 0:
				ended = true
				return true
			}
			w += n
			if !process() {
				ended = true
				return true
			}
			if n < space {
				// The client sent all it had: wait for readiness rather
				// than read EAGAIN. (A FIN that came with the last data
				// raises no new event; redis-benchmark never does that.)
				return false
			}
		}
	})
	if err != nil && !ended && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		log.Printf("client read: %v", err)
	}
}
