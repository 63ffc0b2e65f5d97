package proxy

import (
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// clientConn is a session's client connection. Accepted by the event
// loop (loopaccept.go) it is a bare descriptor: reads, writes that never
// wait, shutdown and close are system calls on it, and nothing registers
// it with Go's netpoller — a client that connects for one command then
// costs one epoll registration, not two. Only what must block (a backlog
// written to a slow reader, a command streamed through, a read loop of
// its own) needs a net.Conn: blocking makes one on first use, over a
// duplicate of the descriptor. Accepted by net.Listener.Accept (TLS, a
// listener the loop cannot take) it wraps that net.Conn, as before.
type clientConn struct {
	fd    int  // the descriptor the event loop reads; -1 when there is none
	owned bool // fd is the session's own: no net.Conn holds it
	tcp   bool // an owned fd is a TCP socket (else a unix one)
	addr  string

	mu          sync.Mutex
	conn        net.Conn // for what blocks; made lazily when owned
	interrupted bool     // reads were interrupted (Shutdown): a net.Conn made later starts so
	closed      bool
}

// wrapConn is the clientConn of a connection net.Listener.Accept gave.
func wrapConn(c net.Conn) *clientConn {
	cc := &clientConn{fd: -1, conn: c, addr: c.RemoteAddr().String()}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { cc.fd = int(fd) })
		}
	}
	return cc
}

// rawConn is the clientConn of a descriptor accepted raw; it is
// non-blocking and close-on-exec.
func rawConn(fd int, addr string, tcp bool) *clientConn {
	return &clientConn{fd: fd, owned: true, tcp: tcp, addr: addr}
}

// blocking returns a net.Conn for what has to wait on the client. For a
// raw descriptor it is made on first use over a duplicate (the event
// loop's epoll set keeps the original), and registers with Go's
// netpoller only then.
func (c *clientConn) blocking() (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil || !c.owned {
		return c.conn, nil
	}
	if c.closed {
		return nil, net.ErrClosed
	}
	dup, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(c.fd), syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		return nil, os.NewSyscallError("fcntl", errno)
	}
	f := os.NewFile(dup, "client")
	conn, err := net.FileConn(f) // a descriptor of its own again
	_ = f.Close()
	if err != nil {
		return nil, err
	}
	if c.interrupted {
		_ = conn.SetReadDeadline(time.Now())
	}
	c.conn = conn
	return conn, nil
}

// hasBlocking reports whether a net.Conn was made for a raw descriptor
// (or there is only the net.Conn).
func (c *clientConn) hasBlocking() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn != nil
}

// soleFD reports whether fd is the socket's only descriptor, so that
// closing it takes it out of every epoll set.
func (c *clientConn) soleFD() bool {
	return c.owned && !c.hasBlocking()
}

// interruptReads makes a read waiting on the client return now, and any
// later one at once: Shutdown stops reading clients. A raw descriptor is
// read only by the event loop, which Shutdown stops itself.
func (c *clientConn) interruptReads() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.interrupted = true
	if c.conn != nil {
		_ = c.conn.SetReadDeadline(time.Now())
	}
}

// writeNoWait writes what the socket takes now, for a raw descriptor.
func (c *clientConn) writeNoWait(b []byte) (int, error) {
	for {
		n, errno := rawWrite(c.fd, b)
		switch errno {
		case 0:
			return n, nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, nil
		}
		return 0, os.NewSyscallError("write", errno)
	}
}

// shutdown ends both directions without closing the descriptor (close
// does that): the client sees the end at once, and whatever reads it
// sees the end of its input.
func (c *clientConn) shutdown() {
	if !c.owned {
		shutdownConn(c.conn)
		return
	}
	_ = syscall.Shutdown(c.fd, syscall.SHUT_WR)
	_ = syscall.Shutdown(c.fd, syscall.SHUT_RD)
}

// resetOnClose makes close reset the connection (linger 0) rather than
// send a FIN behind data the client never read, and ends the reading
// side now. It reports false when the connection cannot be reset.
func (c *clientConn) resetOnClose() bool {
	if !c.owned {
		tc, ok := c.conn.(interface{ SetLinger(int) error })
		return ok && tc.SetLinger(0) == nil
	}
	// A unix socket has no reset, as net.UnixConn has no SetLinger.
	return c.tcp && syscall.SetsockoptLinger(c.fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1}) == nil
}

// closeRead ends the reading side: a reader of the client sees the end
// of its input (for a connection that is reset on close).
func (c *clientConn) closeRead() {
	if !c.owned {
		if cr, ok := c.conn.(interface{ CloseRead() error }); ok {
			_ = cr.CloseRead()
		} else {
			_ = c.conn.Close()
		}
		return
	}
	_ = syscall.Shutdown(c.fd, syscall.SHUT_RD)
}

// close closes the connection, its net.Conn too if one was made. Only
// when nothing reads or writes the raw descriptor any more: its number
// may be reused at once.
func (c *clientConn) close() {
	c.mu.Lock()
	conn, closed := c.conn, c.closed
	c.closed = true
	c.mu.Unlock()
	if closed {
		return
	}
	if conn != nil {
		_ = conn.Close()
	}
	if c.owned {
		// Closing a socket does not block unless it lingers with a
		// timeout, which no client's does: no need to tell the scheduler.
		_, _, _ = syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(c.fd), 0, 0)
	}
}

// reject writes a last error line to a client turned away, and closes it.
func (c *clientConn) reject(line string) {
	if c.owned {
		_, _ = c.writeNoWait([]byte(line)) // a fresh socket takes a line
	} else {
		_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.conn.Write([]byte(line))
	}
	c.close()
}
