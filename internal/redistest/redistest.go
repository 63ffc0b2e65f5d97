// Package redistest starts real redis-server processes for tests, each on a
// free loopback port with its own working directory, so tests never touch a
// shared 6379 and never mock Redis.
package redistest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is one redis-server process owned by a test.
type Server struct {
	Addr string // host:port on 127.0.0.1
	Port int
	Dir  string // working directory (dump files, logs)

	tb   testing.TB
	args []string
	tls  *tls.Config // non-nil: the port speaks TLS
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Option adjusts the server's configuration.
type Option func(*Server)

// WithConfig adds a redis.conf directive, e.g. WithConfig("requirepass", "s3cret").
func WithConfig(name string, values ...string) Option {
	return func(s *Server) { s.args = append(s.args, append([]string{"--" + name}, values...)...) }
}

// WithTLS makes the server's port speak TLS only, with the given PEM files;
// clients need no certificate of their own.
func WithTLS(certFile, keyFile, caFile string) Option {
	return func(s *Server) {
		s.tls = &tls.Config{InsecureSkipVerify: true} // readiness probe only
		s.args = append(s.args, "--tls-cert-file", certFile, "--tls-key-file", keyFile,
			"--tls-ca-cert-file", caFile, "--tls-auth-clients", "no")
	}
}

// Binary returns the redis-server path, or "" when it is not installed.
func Binary() string {
	if p := os.Getenv("REDIS_SERVER"); p != "" {
		return p
	}
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return ""
	}
	return p
}

// Start launches redis-server on a free loopback port and stops it when the
// test ends. It fails the test (not skips) when redis-server is missing:
// silently skipping would let CI pass without testing anything.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	bin := Binary()
	if bin == "" {
		tb.Fatal("redistest: redis-server not found on PATH; install it: sudo apt-get install -y redis-server (or run make deps)")
	}
	s := &Server{tb: tb, Dir: tb.TempDir()}
	args := []string{
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.Dir,
		"--logfile", filepath.Join(s.Dir, "redis.log"),
		"--daemonize", "no",
		"--protected-mode", "no",
	}
	s.args = args
	for _, o := range opts {
		o(s)
	}
	// A port can be taken between FreePort and the bind; retry a few times.
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		s.Port = FreePort(tb)
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
		if err = s.start(bin); err == nil {
			break
		}
	}
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

func (s *Server) start(bin string) error {
	ports := []string{"--port", strconv.Itoa(s.Port)}
	if s.tls != nil {
		ports = []string{"--port", "0", "--tls-port", strconv.Itoa(s.Port)}
	}
	args := append(ports, s.args...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = s.Dir
	// Its own process group, so that Stop also kills a forked RDB child
	// (a replication sync), which would otherwise outlive the server and
	// write into Dir while the test's cleanup removes it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("redis-server on port %d exited at start: %s", s.Port, s.logTail())
		default:
		}
		if pingOK(s.Addr, s.tls) {
			s.mu.Lock()
			s.cmd, s.done = cmd, done
			s.mu.Unlock()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("redis-server on port %d did not answer within 10s: %s", s.Port, s.logTail())
}

// pingOK reports whether the server answers at all (+PONG, or -NOAUTH when
// a password is set: both mean it is up).
func pingOK(addr string, tlsConfig *tls.Config) bool {
	var c net.Conn
	var err error
	d := &net.Dialer{Timeout: 200 * time.Millisecond}
	if tlsConfig != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, tlsConfig)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return false
	}
	return strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH")
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Stop kills the server and waits for it to exit. It is safe to call twice.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
	<-done
}

// Signal sends sig to the running server (SIGSTOP freezes it: it reads
// nothing more, and what clients write waits in the kernel; SIGCONT
// thaws it).
func (s *Server) Signal(sig syscall.Signal) {
	s.tb.Helper()
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		s.tb.Fatalf("redistest: signal %v: the server is not running", sig)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		s.tb.Fatalf("redistest: signal %v: %v", sig, err)
	}
}

// Restart stops the server and starts it again on the same port, losing all
// data (no persistence): the same as a crash and restart of Redis.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		if err = s.start(Binary()); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond) // the port may linger briefly
	}
	s.tb.Fatalf("redistest: restart: %v", err)
}

// StartAgain starts a stopped server on its old port.
func (s *Server) StartAgain() {
	s.tb.Helper()
	s.Restart()
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	port, err := freePort()
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	return port
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// CLI returns the redis-cli path, or "" when it is not installed.
func CLI() string {
	p, err := exec.LookPath("redis-cli")
	if err != nil {
		return ""
	}
	return p
}
