// Command epollproxy is twemproxy's shape written in Go with no framework:
// one goroutine runs one epoll loop over the listener, every client and
// one upstream connection (level-triggered, non-blocking sockets). Client
// reads are framed with resp.CommandParser and appended to the upstream
// buffer, which is written once at the end of each poll batch; replies
// are framed with resp.Framer and written to their client at once. It is
// the floor of an event-loop core in Go on this machine: a measurement
// tool, not product code. See README.md.
package main

import (
	"errors"
	"flag"
	"log"
	"net"
	"runtime"
	"syscall"
	"unsafe"

	"github.com/exproxy/exproxy/proxy/resp"
)

var (
	listen   = flag.String("listen", "127.0.0.1:7402", "address to serve on")
	upstream = flag.String("upstream", "127.0.0.1:6379", "redis address")
	lock     = flag.Bool("lock", false, "runtime.LockOSThread the loop goroutine")
	raw      = flag.Bool("raw", false, "call epoll_wait with RawSyscall6: the runtime never sees the goroutine enter a syscall, so sysmon neither retakes its P nor hands it to another thread (signals for preemption and GC interrupt the wait with EINTR)")
)

type client struct {
	fd     int
	buf    []byte
	r, w   int
	out    []byte // replies the socket did not take yet
	parser resp.CommandParser
	argv   [][]byte
	closed bool
}

type waiter struct {
	c *client
	n int
}

type loop struct {
	ep, lfd, upfd int
	clients       map[int]*client
	pending       []byte // commands not yet written upstream
	upOut         bool   // EPOLLOUT armed on upfd
	fifo          []waiter
	framer        resp.Framer
	upbuf         []byte
	ur, uw        int
}

func main() {
	flag.Parse()
	if *lock {
		runtime.LockOSThread()
	}
	l := &loop{clients: map[int]*client{}, upbuf: make([]byte, 64<<10)}
	var err error
	if l.lfd, err = listenFD(*listen); err != nil {
		log.Fatal(err)
	}
	if l.upfd, err = dialFD(*upstream); err != nil {
		log.Fatal(err)
	}
	if l.ep, err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC); err != nil {
		log.Fatal(err)
	}
	l.ctl(syscall.EPOLL_CTL_ADD, l.lfd, syscall.EPOLLIN)
	l.ctl(syscall.EPOLL_CTL_ADD, l.upfd, syscall.EPOLLIN)
	l.run()
}

func (l *loop) ctl(op, fd int, events uint32) {
	ev := syscall.EpollEvent{Events: events, Fd: int32(fd)}
	if err := syscall.EpollCtl(l.ep, op, fd, &ev); err != nil {
		log.Fatalf("epoll_ctl %d: %v", fd, err)
	}
}

func (l *loop) run() {
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := l.wait(events)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			log.Fatalf("epoll_wait: %v", err)
		}
		for i := 0; i < n; i++ {
			fd, ev := int(events[i].Fd), events[i].Events
			switch fd {
			case l.lfd:
				l.accept()
			case l.upfd:
				if ev&syscall.EPOLLOUT != 0 {
					l.flushUp()
				}
				if ev&(syscall.EPOLLIN|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
					l.readUp()
				}
			default:
				c := l.clients[fd]
				if c == nil {
					continue
				}
				if ev&syscall.EPOLLOUT != 0 {
					l.flushClient(c)
				}
				if ev&(syscall.EPOLLIN|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
					l.readClient(c)
				}
			}
		}
		l.flushUp()
	}
}

func (l *loop) wait(events []syscall.EpollEvent) (int, error) {
	if !*raw {
		return syscall.EpollWait(l.ep, events, -1)
	}
	r, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(l.ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), ^uintptr(0), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func (l *loop) accept() {
	for {
		fd, _, err := syscall.Accept4(l.lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		if err == syscall.EAGAIN {
			return
		}
		if err != nil {
			log.Printf("accept: %v", err)
			return
		}
		_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		l.clients[fd] = &client{fd: fd, buf: make([]byte, 16<<10), argv: make([][]byte, 0, 8)}
		l.ctl(syscall.EPOLL_CTL_ADD, fd, syscall.EPOLLIN)
	}
}

func (l *loop) readClient(c *client) {
	if c.w == len(c.buf) {
		if c.r > 0 {
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		} else {
			nb := make([]byte, 2*len(c.buf))
			copy(nb, c.buf)
			c.buf = nb
		}
	}
	n, err := syscall.Read(c.fd, c.buf[c.w:])
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return
	}
	if err != nil || n == 0 {
		l.closeClient(c)
		return
	}
	c.w += n
	start, cmds := c.r, 0
	for c.r < c.w {
		m, args, _, perr := c.parser.Parse(c.buf[c.r:c.w], c.argv)
		if perr != nil {
			l.closeClient(c)
			return
		}
		if m == 0 {
			break
		}
		c.r += m
		if len(args) > 0 {
			cmds++
		}
	}
	if cmds > 0 {
		if k := len(l.fifo); k > 0 && l.fifo[k-1].c == c {
			l.fifo[k-1].n += cmds
		} else {
			l.fifo = append(l.fifo, waiter{c, cmds})
		}
	}
	l.pending = append(l.pending, c.buf[start:c.r]...)
	if c.r == c.w {
		c.r, c.w = 0, 0
	}
}

func (l *loop) closeClient(c *client) {
	c.closed = true
	delete(l.clients, c.fd)
	_ = syscall.Close(c.fd) // also leaves the epoll set
}

// flushUp writes the commands queued during this poll batch.
func (l *loop) flushUp() {
	for len(l.pending) > 0 {
		n, err := syscall.Write(l.upfd, l.pending)
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			if !l.upOut {
				l.upOut = true
				l.ctl(syscall.EPOLL_CTL_MOD, l.upfd, syscall.EPOLLIN|syscall.EPOLLOUT)
			}
			return
		}
		if err != nil {
			log.Fatalf("upstream write: %v", err)
		}
		l.pending = l.pending[:copy(l.pending, l.pending[n:])]
	}
	if l.upOut {
		l.upOut = false
		l.ctl(syscall.EPOLL_CTL_MOD, l.upfd, syscall.EPOLLIN)
	}
}

// readUp frames replies and writes each run of one client's replies.
func (l *loop) readUp() {
	if l.uw == len(l.upbuf) {
		if l.ur > 0 {
			l.uw = copy(l.upbuf, l.upbuf[l.ur:l.uw])
			l.ur = 0
		} else {
			nb := make([]byte, 2*len(l.upbuf))
			copy(nb, l.upbuf)
			l.upbuf = nb
		}
	}
	n, err := syscall.Read(l.upfd, l.upbuf[l.uw:])
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return
	}
	if err != nil || n == 0 {
		log.Fatalf("upstream read: %v (n=%d)", err, n)
	}
	l.uw += n
	buf := l.upbuf[:l.uw]
	r, start := l.ur, l.ur
	var held *client
	for r < len(buf) {
		m, done, ferr := l.framer.Next(buf[r:])
		if ferr != nil {
			log.Fatalf("upstream reply: %v", ferr)
		}
		if m == 0 && !done {
			break
		}
		if len(l.fifo) == 0 {
			log.Fatal("reply with nobody waiting")
		}
		c := l.fifo[0].c
		if c != held {
			l.toClient(held, buf[start:r])
			held, start = c, r
		}
		r += m
		if done {
			l.fifo[0].n--
			if l.fifo[0].n == 0 {
				l.fifo[0].c = nil
				l.fifo = l.fifo[1:]
			}
		}
	}
	l.toClient(held, buf[start:r])
	l.ur = r
	if l.ur == l.uw {
		l.ur, l.uw = 0, 0
	}
}

// toClient writes b to c, or queues it behind what c has not taken yet.
func (l *loop) toClient(c *client, b []byte) {
	if c == nil || c.closed || len(b) == 0 {
		return
	}
	if len(c.out) > 0 {
		c.out = append(c.out, b...)
		return
	}
	for {
		n, err := syscall.Write(c.fd, b)
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			n = 0
		} else if err != nil {
			l.closeClient(c)
			return
		}
		if n < len(b) {
			c.out = append(c.out, b[n:]...)
			l.ctl(syscall.EPOLL_CTL_MOD, c.fd, syscall.EPOLLIN|syscall.EPOLLOUT)
		}
		return
	}
}

func (l *loop) flushClient(c *client) {
	for len(c.out) > 0 {
		n, err := syscall.Write(c.fd, c.out)
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			return
		}
		if err != nil {
			l.closeClient(c)
			return
		}
		c.out = c.out[:copy(c.out, c.out[n:])]
	}
	l.ctl(syscall.EPOLL_CTL_MOD, c.fd, syscall.EPOLLIN)
}

func sockaddr(addr string) (*syscall.SockaddrInet4, error) {
	a, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return nil, err
	}
	ip := a.IP.To4()
	if ip == nil {
		return nil, errors.New("IPv4 addresses only")
	}
	sa := &syscall.SockaddrInet4{Port: a.Port}
	copy(sa.Addr[:], ip)
	return sa, nil
}

func listenFD(addr string) (int, error) {
	sa, err := sockaddr(addr)
	if err != nil {
		return -1, err
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if err := syscall.Bind(fd, sa); err != nil {
		return -1, err
	}
	return fd, syscall.Listen(fd, 4096)
}

func dialFD(addr string) (int, error) {
	sa, err := sockaddr(addr)
	if err != nil {
		return -1, err
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := syscall.Connect(fd, sa); err != nil {
		return -1, err
	}
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	return fd, syscall.SetNonblock(fd, true)
}
