package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/config"
	"github.com/exproxy/exproxy/internal/redistest"
)

// These tests run the real binary, as an operator or a container runtime
// would: exit statuses, stderr and signals are part of its interface.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds cmd/exproxy once per test run into a temporary directory.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "exproxy-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "exproxy")
		out, err := exec.Command("go", "build", "-buildvcs=false", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// exproxyCmd runs the binary with a clean environment plus env.
func exproxyCmd(t *testing.T, env map[string]string, args ...string) *exec.Cmd {
	cmd := exec.Command(binary(t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("running exproxy: %v", err)
	return -1
}

func TestBinaryHelp(t *testing.T) {
	out, err := exproxyCmd(t, nil, "--help").Output()
	if code := exitCode(t, err); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, s := range config.Settings() {
		if s.Flag != "" && !strings.Contains(string(out), "--"+s.Flag) {
			t.Errorf("--help lacks --%s", s.Flag)
		}
	}
}

func TestBinaryBadSettingExits2(t *testing.T) {
	dir := t.TempDir()
	badFile := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badFile, []byte("limits:\n  max-argz: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"flag", nil, []string{"--listen", "nowhere"}, `exproxy: invalid --listen: "nowhere" is not host:port or a unix socket path`},
		{"env", map[string]string{"EXPROXY_LOG_FORMAT": "xml"}, nil, `exproxy: invalid EXPROXY_LOG_FORMAT: must be json or console, got "xml"`},
		{"file", nil, []string{"--config", badFile}, `exproxy: config file ` + badFile + ` line 2: unknown setting "limits.max-argz"`},
		{"env file", map[string]string{"EXPROXY_CONFIG": badFile}, nil, `exproxy: config file ` + badFile + ` line 2: unknown setting "limits.max-argz"`},
		{"upstream secret", nil, []string{"--upstream", "rediss://app:hunter2@redis:6380/x"}, `exproxy: invalid --upstream: database "x" is not a number >= 0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cmd := exproxyCmd(t, tt.env, tt.args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if code := exitCode(t, cmd.Run()); code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if got := stderr.String(); got != tt.want+"\n" {
				t.Errorf("stderr\n got: %q\nwant: %q", got, tt.want+"\n")
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: %q", stdout.String())
			}
		})
	}
}

// proc is a running exproxy.
type proc struct {
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	stderr bytes.Buffer
}

// startProxy starts the binary and waits until /healthz on admin says it
// is serving (or the process exits, which fails the test).
func startProxy(t *testing.T, admin string, env map[string]string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exproxyCmd(t, env, args...), done: make(chan struct{})}
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	// A generous bound on start-up, not a performance assertion: under
	// -race on a loaded machine the first start can be slow.
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-p.done:
			t.Fatalf("exproxy exited at start: %v\n%s", p.err, p.stderr.String())
		default:
		}
		if resp, err := http.Get("http://" + admin + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("exproxy did not become healthy\n%s", p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends sig and returns the exit status.
func (p *proc) stop(t *testing.T, sig os.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	<-p.done
	return exitCode(t, p.err)
}

func freeAddr(t *testing.T) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(redistest.FreePort(t)))
}

func redisCLI(t *testing.T, args ...string) string {
	t.Helper()
	cli := redistest.CLI()
	if cli == "" {
		t.Fatal("redis-cli not found on PATH; install it: sudo apt-get install -y redis-tools (or run make deps)")
	}
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestBinaryServe runs the proxy in front of a password-protected Redis,
// talks to it with redis-cli and go-redis, provokes one aborted EXEC, then
// stops it with SIGTERM: it must exit 0, having written the last
// contention window, and never have logged the password.
func TestBinaryServe(t *testing.T) {
	const password = "pw-never-logged"
	srv := redistest.Start(t, redistest.WithConfig("requirepass", password))
	listen, admin := freeAddr(t), freeAddr(t)
	logFile := filepath.Join(t.TempDir(), "exproxy.log")
	p := startProxy(t, admin,
		map[string]string{"EXPROXY_UPSTREAM_PASSWORD": password, "EXPROXY_CONTENTION_WINDOW": "1h"},
		"--listen", listen, "--upstream", "redis://default:"+password+"@"+srv.Addr,
		"--admin-listen", admin, "--log-file", logFile, "--log-level", "debug")

	host, port, _ := net.SplitHostPort(listen)
	cli := []string{"-h", host, "-p", port, "-a", password, "--no-auth-warning"}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "PONG"},
		{[]string{"SET", "greeting", "hello world"}, "OK"},
		{[]string{"GET", "greeting"}, "hello world"},
	} {
		if got := redisCLI(t, append(cli, tt.args...)...); got != tt.want {
			t.Errorf("redis-cli %v = %q, want %q", tt.args, got, tt.want)
		}
	}

	resp, err := http.Get("http://" + admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz: %s", resp.Status)
	}

	// One WATCH ... EXEC aborted by a write from another connection.
	ctx := context.Background()
	a := redis.NewClient(&redis.Options{Addr: listen, Password: password, Protocol: 2, DisableIdentity: true})
	b := redis.NewClient(&redis.Options{Addr: listen, Password: password, Protocol: 2, DisableIdentity: true})
	defer a.Close()
	defer b.Close()
	err = a.Watch(ctx, func(tx *redis.Tx) error {
		if err := b.Set(ctx, "counter", "1", 0).Err(); err != nil {
			return err
		}
		_, err := tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.Set(ctx, "counter", "2", 0)
			return nil
		})
		return err
	}, "counter")
	if !errors.Is(err, redis.TxFailedErr) {
		t.Fatalf("EXEC after a concurrent write: %v, want redis.TxFailedErr", err)
	}
	a.Close()
	b.Close()

	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0\n%s", code, p.stderr.String())
	}

	logs, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(logs, []byte(password)) || bytes.Contains(p.stderr.Bytes(), []byte(password)) {
		t.Error("the password appears in the logs")
	}
	var started, stopped bool
	var aborts float64
	sc := bufio.NewScanner(bytes.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		switch m["msg"] {
		case "exproxy started":
			started = m["upstream"] == srv.Addr && m["listen"] == listen
		case "exproxy stopped":
			stopped = true
		case "contention.window":
			n, _ := m["aborts"].(float64)
			aborts += n
		}
	}
	if !started || !stopped {
		t.Errorf("start (with listen and upstream) or stop not logged:\n%s", logs)
	}
	// The window is an hour long: only the flush at shutdown can have
	// written this abort.
	if aborts != 1 {
		t.Errorf("contention windows logged %v aborts, want 1:\n%s", aborts, logs)
	}
}

// TestBinaryUnixSocket listens on a unix socket, serves through it and
// removes it on SIGINT.
func TestBinaryUnixSocket(t *testing.T) {
	srv := redistest.Start(t)
	sock := filepath.Join(t.TempDir(), "exproxy.sock")
	admin := freeAddr(t)
	p := startProxy(t, admin, nil, "--listen", sock, "--upstream", srv.Addr, "--admin-listen", admin)
	if got := redisCLI(t, "-s", sock, "PING"); got != "PONG" {
		t.Errorf("PING over %s = %q", sock, got)
	}
	if code := p.stop(t, syscall.SIGINT); code != 0 {
		t.Errorf("exit %d after SIGINT, want 0\n%s", code, p.stderr.String())
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left behind: %v", err)
	}
}

// TestBinaryListenInUse fails with status 1 and one line when the port is
// taken, rather than running without a listener.
func TestBinaryListenInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var stderr bytes.Buffer
	cmd := exproxyCmd(t, nil, "--listen", l.Addr().String(), "--admin-listen=")
	cmd.Stderr = &stderr
	if code := exitCode(t, cmd.Run()); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "exproxy: listen: listen tcp "+l.Addr().String()+": bind: address already in use") {
		t.Errorf("stderr: %q", stderr.String())
	}
}

// TestBinarySecondSignalStopsDrain: while the proxy drains (a BLPOP keeps
// a reply pending, the drain timeout is an hour), a second SIGTERM ends
// the process at once instead of being swallowed.
func TestBinarySecondSignalStopsDrain(t *testing.T) {
	srv := redistest.Start(t)
	listen, admin := freeAddr(t), freeAddr(t)
	p := startProxy(t, admin, nil, "--listen", listen, "--upstream", srv.Addr, "--admin-listen", admin, "--drain-timeout", "1h")

	c, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("PING\r\nBLPOP never-pushed 0\r\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "+PONG\r\n" {
		t.Fatalf("PING: %q, %v", line, err)
	}
	// The drain must find the BLPOP pending: wait until Redis has it
	// (the PING's reply comes before the BLPOP is even sent, since a
	// blocking command moves the session to a connection of its own).
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rc.Close()
	for deadline := time.Now().Add(30 * time.Second); ; {
		info, err := rc.Info(context.Background(), "clients").Result()
		if err == nil && strings.Contains(info, "blocked_clients:1\r\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the BLPOP never blocked in Redis: %q, %v", info, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// /healthz turns 503 once the drain has begun, which is after the
	// default signal handling is restored.
	for {
		resp, err := http.Get("http://" + admin + "/healthz")
		if err != nil {
			t.Fatalf("admin endpoint gone before the drain ended: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-p.done:
		t.Fatalf("exproxy exited (%v) before the second signal, with a BLPOP pending and an hour to drain", p.err)
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.done
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) {
		t.Fatalf("exit: %v, want death by SIGTERM", p.err)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("exit: %v, want death by SIGTERM", p.err)
	}
}

// TestBinaryGoRedisLogsAreJSON: go-redis's own messages (its pool's "failed
// to dial" from exstring's loader client) reach the process log as JSON
// lines, not as stray text on stderr that a log shipper cannot parse.
func TestBinaryGoRedisLogsAreJSON(t *testing.T) {
	admin := freeAddr(t)
	dead := freeAddr(t) // nothing listens there
	p := startProxy(t, admin, nil, "--listen", freeAddr(t), "--upstream", "redis://"+dead,
		"--admin-listen", admin, "--log-level", "debug")
	// go-redis gives up a dial after 5 attempts with backoff: well under 3 s.
	time.Sleep(3 * time.Second)
	p.stop(t, syscall.SIGTERM)
	out := p.stderr.String()
	sawGoRedis := false
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("not a JSON line: %q", line)
			continue
		}
		if m["logger"] == "go-redis" {
			sawGoRedis = true
		}
	}
	if !sawGoRedis {
		t.Errorf("no go-redis message in the log:\n%s", out)
	}
}

// TestBinaryCluster runs the proxy in front of a password-protected Redis
// Cluster (3 primaries): redis-cli, a plain client, uses keys of every
// node through it; /readyz is ready once every slot has a primary and
// /metrics has a row per node; SIGTERM stops it with status 0, and the
// password is never logged.
func TestBinaryCluster(t *testing.T) {
	const password = "cluster-pw-never-logged"
	c := redistest.StartCluster(t, redistest.WithShards(3, 0), redistest.WithAuth("", password))
	listen, admin := freeAddr(t), freeAddr(t)
	logFile := filepath.Join(t.TempDir(), "exproxy.log")
	p := startProxy(t, admin, map[string]string{"EXPROXY_UPSTREAM_PASSWORD": password},
		"--listen", listen, "--upstream", "redis+cluster://"+strings.Join(c.Addrs(), ","),
		"--admin-listen", admin, "--log-file", logFile)

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + admin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := get("/readyz")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never ready: %d %q", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}

	host, port, _ := net.SplitHostPort(listen)
	cli := []string{"-h", host, "-p", port, "-a", password, "--no-auth-warning"}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"MSET", "a", "1", "b", "2", "c", "3", "d", "4"}, "OK"}, // a, b, c: one on each primary
		{[]string{"MGET", "d", "c", "b", "a"}, "4\n3\n2\n1"},
		{[]string{"DBSIZE"}, "4"},
		{[]string{"SELECT", "1"}, "ERR SELECT is not allowed in cluster mode"},
		{[]string{"EXSET", "x", "v"}, "OK"},
		{[]string{"DEL", "a", "b", "c", "d", "x"}, "5"},
	} {
		if got := redisCLI(t, append(cli, tt.args...)...); got != tt.want {
			t.Errorf("redis-cli %v = %q, want %q", tt.args, got, tt.want)
		}
	}
	_, metrics := get("/metrics")
	for _, want := range []string{
		`exproxy_cluster_nodes{role="primary"} 3` + "\n",
		"exproxy_cluster_slots_covered 16384\n",
		`exproxy_cluster_node_commands_total{node="` + c.Addrs()[0] + `"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit status %d after SIGTERM\n%s", code, p.stderr.String())
	}
	log, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(log)+p.stderr.String(), password) {
		t.Error("the log shows the password")
	}
}
