//go:build linux

package proxy

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"go.uber.org/zap"
)

// The event loop accepts the clients of a TCP or unix listener itself, the way
// twemproxy does: the listener's descriptor is in the loop's epoll set,
// accept4 runs on the loop's runner, and the session starts there. A
// client that connects for one command then wakes no accepting goroutine,
// and its descriptor is registered once, with the loop — not also with
// Go's netpoller (clientconn.go). Other listeners (TLS, wrappers) keep
// Server.Serve's Accept loop.

// acceptBatch bounds the clients accepted per readiness event, so that a
// flood of connections does not starve the clients already connected; the
// listener stays ready (level-triggered) for the rest.
const acceptBatch = 32

// inheritAfter is how long after listen clients get their socket options
// set on them one by one: past it, all of them inherit the listener's.
const inheritAfter = time.Second

// listener is the loop's accepting state, under eventLoop.mu except
// where noted.
type listener struct {
	fd      atomic.Int32 // the runner's check; -1 when there is none
	rc      syscall.RawConn
	done    chan error // Serve waits on it: nil after Shutdown, else why accepting stopped
	backoff time.Duration
	paused  bool // out of descriptors: out of the epoll set for backoff
	// tcp: a TCP listener, whose clients get socket options; keepalive:
	// they get Go's keepalive settings (not on loopback).
	tcp, keepalive bool
	// fresh: for inheritAfter after listen, clients get their options set
	// one by one as well as inheriting them.
	fresh atomic.Bool

	// The runner's: accept4's results, filled by acceptFn.
	acceptFn func(fd uintptr)
	nfd      int
	errno    syscall.Errno
	sa       syscall.RawSockaddrAny
}

// listen makes the loop accept ln's clients. It reports false for a
// listener it cannot accept from raw, which Serve then serves itself;
// else done delivers Serve's end.
func (l *eventLoop) listen(ln net.Listener) (done <-chan error, ok bool) {
	var rc syscall.RawConn
	var err error
	tcp, keepalive := false, false
	switch tl := ln.(type) {
	case *net.TCPListener:
		rc, err = tl.SyscallConn()
		a, _ := tl.Addr().(*net.TCPAddr)
		tcp, keepalive = true, a != nil && !a.IP.IsLoopback()
	case *net.UnixListener:
		rc, err = tl.SyscallConn()
	default:
		return nil, false
	}
	if err != nil {
		return nil, false
	}
	fd := -1
	if rc.Control(func(f uintptr) { fd = int(f) }) != nil || fd < 0 {
		return nil, false
	}
	// Accepted sockets inherit these from the listener (Linux copies the
	// listener's socket options to each connection it accepts): set
	// once here, not once per client as net.TCPListener.Accept does.
	if tcp && setClientOptions(fd, keepalive) != nil {
		return nil, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released || l.srv.shutdown.Load() || l.ln.rc != nil {
		return nil, false
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
	if syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_ADD, fd, &ev) != nil {
		return nil, false
	}
	l.ln.rc = rc
	l.ln.done = make(chan error, 1)
	l.ln.acceptFn = l.accept4
	l.ln.tcp, l.ln.keepalive = tcp, keepalive
	// Clients that connected before the options were set on the listener
	// (it was listening before Serve) did not inherit them, nor perhaps
	// one that connected while they were being set: for a while, each
	// client gets them set on it too.
	l.ln.fresh.Store(true)
	time.AfterFunc(inheritAfter, func() { l.ln.fresh.Store(false) })
	l.ln.fd.Store(int32(fd))
	return l.ln.done, true
}

// setClientOptions sets on fd, a listener or a client, what
// net.TCPListener.Accept sets on a client: no Nagle delay, and Go's
// keepalive defaults where asked (a client on the same host cannot
// vanish unseen, so loopback listeners have none).
func setClientOptions(fd int, keepalive bool) error {
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1); err != nil {
		return os.NewSyscallError("setsockopt", err)
	}
	if !keepalive {
		return nil
	}
	for _, o := range [...]struct{ level, opt, v int }{
		{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 15},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 15},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 9},
	} {
		if err := syscall.SetsockoptInt(fd, o.level, o.opt, o.v); err != nil {
			return os.NewSyscallError("setsockopt", err)
		}
	}
	return nil
}

// unlisten stops accepting (Shutdown, before it closes the listener, so
// that the descriptor leaves the epoll set while it is still this one).
func (l *eventLoop) unlisten() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unlistenLocked(nil)
}

func (l *eventLoop) unlistenLocked(err error) {
	if l.ln.rc == nil {
		return
	}
	if fd := l.ln.fd.Load(); fd >= 0 && !l.ln.paused {
		_ = syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_DEL, int(fd), nil)
	}
	l.ln.fd.Store(-1)
	l.ln.rc = nil
	l.ln.done <- err
}

// acceptReady accepts what the listener has, on the runner.
func (l *eventLoop) acceptReady() {
	l.mu.Lock()
	rc := l.ln.rc
	l.mu.Unlock()
	if rc == nil {
		return
	}
	for range acceptBatch {
		if err := rc.Control(l.ln.acceptFn); err != nil {
			l.acceptStopped(err) // closed under us
			return
		}
		switch errno := l.ln.errno; errno {
		case 0:
			l.ln.backoff = 0
			if l.ln.tcp && l.ln.fresh.Load() {
				_ = setClientOptions(l.ln.nfd, l.ln.keepalive)
			}
			l.srv.admit(rawConn(l.ln.nfd, sockaddrString(&l.ln.sa), l.ln.tcp))
			continue
		case syscall.EAGAIN:
			return
		case syscall.EINTR, syscall.ECONNABORTED, syscall.EPROTO, syscall.EPERM:
			continue // that client is gone, or refused by a firewall rule
		case syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM:
			l.acceptPause(os.NewSyscallError("accept4", errno))
			return
		default:
			l.acceptStopped(os.NewSyscallError("accept4", errno))
			return
		}
	}
}

// accept4 is the RawConn.Control callback (bound once) of acceptReady.
// accept4 on a non-blocking listener does not block, so the scheduler is
// not told of it.
func (l *eventLoop) accept4(fd uintptr) {
	// An unnamed unix socket's address is the family alone: the rest
	// must read as empty, not as the last client's.
	l.ln.sa = syscall.RawSockaddrAny{}
	n := uint32(syscall.SizeofSockaddrAny)
	r, _, errno := syscall.RawSyscall6(syscall.SYS_ACCEPT4, fd, uintptr(unsafe.Pointer(&l.ln.sa)),
		uintptr(unsafe.Pointer(&n)), syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0, 0)
	l.ln.nfd, l.ln.errno = int(r), errno
}

func (l *eventLoop) acceptStopped(err error) {
	if !l.srv.shutdown.Load() {
		l.srv.log.Error("accept", zap.Error(err))
	}
	l.mu.Lock()
	l.unlistenLocked(err)
	l.mu.Unlock()
}

// acceptPause takes the listener out of the epoll set for a while when the
// process is out of descriptors or memory: a level-triggered listener would
// otherwise make the loop spin.
func (l *eventLoop) acceptPause(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fd := l.ln.fd.Load()
	if fd < 0 || l.ln.paused {
		return
	}
	_ = syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_DEL, int(fd), nil)
	l.ln.paused = true
	l.ln.backoff = min(max(2*l.ln.backoff, 5*time.Millisecond), time.Second)
	l.srv.log.Warn("accept", zap.Error(err), zap.Duration("retry_in", l.ln.backoff))
	time.AfterFunc(l.ln.backoff, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.ln.paused = false
		if fd := l.ln.fd.Load(); fd >= 0 {
			ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: fd}
			_ = syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_ADD, int(fd), &ev)
		}
	})
}

// sockaddrString is a client's address as net.Conn.RemoteAddr would show
// it.
func sockaddrString(sa *syscall.RawSockaddrAny) string {
	switch sa.Addr.Family {
	case syscall.AF_INET:
		p := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), ntohs(p.Port)).String()
	case syscall.AF_INET6:
		p := (*syscall.RawSockaddrInet6)(unsafe.Pointer(sa))
		a := netip.AddrFrom16(p.Addr).Unmap()
		if p.Scope_id != 0 {
			zone := strconv.FormatUint(uint64(p.Scope_id), 10)
			if ifi, err := net.InterfaceByIndex(int(p.Scope_id)); err == nil {
				zone = ifi.Name
			}
			a = a.WithZone(zone)
		}
		return netip.AddrPortFrom(a, ntohs(p.Port)).String()
	case syscall.AF_UNIX:
		// As net.UnixAddr.String shows it: an abstract name (and an
		// unnamed client) with a leading @.
		p := (*syscall.RawSockaddrUnix)(unsafe.Pointer(sa))
		b := make([]byte, 0, len(p.Path))
		for i, c := range p.Path {
			if c == 0 && i > 0 {
				break
			}
			if c == 0 {
				c = '@'
			}
			b = append(b, byte(c))
		}
		return string(b)
	}
	return ""
}

// ntohs turns a port in network byte order, as the kernel fills it in,
// into a number.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}
