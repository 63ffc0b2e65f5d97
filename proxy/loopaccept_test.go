//go:build linux

package proxy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/exproxy/exproxy/internal/redistest"
)

// startLoopServer serves a real Redis on a listener bound to addr and
// returns the server and the address clients dial.
func startLoopServer(t *testing.T, addr string) (*Server, string) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := serveLoop(t, l)
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return srv, net.JoinHostPort("127.0.0.1", port)
}

// serveLoop serves l with the event loop in front of a Redis of its own,
// until the test ends.
func serveLoop(t *testing.T, l net.Listener) *Server {
	t.Helper()
	r := redistest.Start(t)
	srv, err := New(Options{Upstream: Upstream{Addr: r.Addr}, ClientIO: EventLoop})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return srv
}

// oneSession returns the server's only session once it has one.
func oneSession(t *testing.T, srv *Server) *session {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		srv.mu.Lock()
		for s := range srv.sessions {
			srv.mu.Unlock()
			return s
		}
		srv.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no session")
	return nil
}

func ping(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "+PONG\r\n" {
		t.Fatalf("PING: %q, %v", line, err)
	}
}

func sockopt(t *testing.T, fd, level, opt int) int {
	t.Helper()
	v, err := syscall.GetsockoptInt(fd, level, opt)
	if err != nil {
		t.Fatalf("getsockopt %d/%d: %v", level, opt, err)
	}
	return v
}

// TestLoopAcceptsRaw: a TCP listener's clients are accepted by the event
// loop as bare descriptors, with the options net.TCPListener.Accept would
// have set (inherited from the listener), and the address Go would show.
func TestLoopAcceptsRaw(t *testing.T) {
	for _, tc := range []struct {
		name, listen string
		keepalive    bool
		inherited    bool // past inheritAfter: the options come from the listener only
	}{
		{"loopback", "127.0.0.1:0", false, false},
		{"any address", "0.0.0.0:0", true, false},
		{"loopback, inherited", "127.0.0.1:0", false, true},
		{"any address, inherited", "0.0.0.0:0", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, addr := startLoopServer(t, tc.listen)
			if tc.inherited {
				for srv.loop.ln.fd.Load() < 0 {
					time.Sleep(time.Millisecond)
				}
				srv.loop.ln.fresh.Store(false)
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ping(t, c)
			s := oneSession(t, srv)
			if !s.client.owned {
				t.Fatal("the session's client was not accepted by the event loop")
			}
			if s.client.hasBlocking() {
				t.Error("a client that sent one command got a net.Conn")
			}
			if got, want := s.rinfo.Addr, c.LocalAddr().String(); got != want {
				t.Errorf("client address %q, want %q", got, want)
			}
			if sockopt(t, s.fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY) == 0 {
				t.Error("TCP_NODELAY not set on the accepted client")
			}
			ka := sockopt(t, s.fd, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE) != 0
			if ka != tc.keepalive {
				t.Errorf("SO_KEEPALIVE %v, want %v", ka, tc.keepalive)
			}
			if tc.keepalive {
				if idle := sockopt(t, s.fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE); idle != 15 {
					t.Errorf("TCP_KEEPIDLE %d, want Go's 15", idle)
				}
			}
		})
	}
}

// TestLoopAcceptsUnix: a unix listener's clients are accepted raw too,
// with the address net.UnixConn.RemoteAddr would show.
func TestLoopAcceptsUnix(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "proxy.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := serveLoop(t, l)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ping(t, c)
	s := oneSession(t, srv)
	if !s.client.owned || s.client.tcp {
		t.Fatalf("owned %v, tcp %v: want a raw unix client", s.client.owned, s.client.tcp)
	}
	// What Go shows for an unnamed client socket.
	ref, err := net.Listen("unix", filepath.Join(t.TempDir(), "ref.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	rc, err := net.Dial("unix", ref.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	acc, err := ref.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer acc.Close()
	if got, want := s.rinfo.Addr, acc.RemoteAddr().String(); got != want {
		t.Errorf("client address %q, want %q", got, want)
	}
}

// TestLoopAcceptBlocking: a raw client that must be written to while it
// does not read gets a net.Conn of its own, and closing the session closes
// both descriptors.
func TestLoopAcceptBlocking(t *testing.T) {
	srv, addr := startLoopServer(t, "127.0.0.1:0")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ping(t, c)
	s := oneSession(t, srv)
	conn, err := s.client.blocking()
	if err != nil || conn == nil {
		t.Fatalf("blocking: %v, %v", conn, err)
	}
	if again, _ := s.client.blocking(); again != conn {
		t.Error("a second net.Conn was made")
	}
	if !s.client.hasBlocking() || s.client.soleFD() {
		t.Error("the descriptor is not shared with the net.Conn")
	}
	ping(t, c) // the loop still reads the client
	_ = c.Close()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the session did not end after its client closed")
	}
	if _, err := conn.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write to the net.Conn after the end: %v, want net.ErrClosed", err)
	}
}

// TestSockaddrString: the address of a client accepted raw reads as
// net.TCPAddr.String gives it.
func TestSockaddrString(t *testing.T) {
	for _, tc := range []struct {
		ip   string
		v6   bool // as an AF_INET6 address
		port int
	}{
		{"127.0.0.1", false, 6380},
		{"10.1.2.3", false, 1},
		{"::1", true, 65535},
		{"2001:db8::7", true, 443},
		{"::ffff:192.0.2.1", true, 5000}, // an IPv4 client of a dual-stack listener
	} {
		ip := net.ParseIP(tc.ip)
		var raw syscall.RawSockaddrAny
		if tc.v6 {
			p := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&raw))
			p.Family = syscall.AF_INET6
			copy(p.Addr[:], ip.To16())
			p.Port = htons(uint16(tc.port))
		} else {
			p := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&raw))
			p.Family = syscall.AF_INET
			copy(p.Addr[:], ip.To4())
			p.Port = htons(uint16(tc.port))
		}
		want := (&net.TCPAddr{IP: ip, Port: tc.port}).String()
		if got := sockaddrString(&raw); got != want {
			t.Errorf("sockaddrString(%s) = %q, want %q", tc.ip, got, want)
		}
	}
}

// TestSockaddrStringUnix: unix addresses read as net.UnixAddr shows an
// accepted connection's peer: its path, or @ and an abstract name (an
// unnamed client: @ alone).
func TestSockaddrStringUnix(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"", "@"},
		{"/run/app/client.sock", "/run/app/client.sock"},
		{"\x00abstract", "@abstract"},
	} {
		var raw syscall.RawSockaddrAny
		p := (*syscall.RawSockaddrUnix)(unsafe.Pointer(&raw))
		p.Family = syscall.AF_UNIX
		for i := range len(tc.path) {
			p.Path[i] = int8(tc.path[i])
		}
		if got := sockaddrString(&raw); got != tc.want {
			t.Errorf("sockaddrString(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

func htons(p uint16) uint16 {
	var v uint16
	b := (*[2]byte)(unsafe.Pointer(&v))
	b[0], b[1] = byte(p>>8), byte(p)
	return v
}
