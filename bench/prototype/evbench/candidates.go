package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/exproxy/exproxy/bench/internal/fixture"
)

// candidate is one proxy (or "direct": redis itself) under test. args
// gets the listen and upstream addresses; prototypes are built from this
// module's folders into --bindir.
type candidate struct {
	name  string
	proto string   // prototype folder to build, "" for none
	env   []string // extra environment
	args  func(dir, listen, upstream string) ([]string, error)
}

func gorArgs(flags ...string) func(dir, listen, upstream string) ([]string, error) {
	return func(_, listen, upstream string) ([]string, error) {
		return append([]string{filepath.Join(*flagProtoDir, "gorproxy"), "--listen", listen, "--upstream", upstream}, flags...), nil
	}
}

func protoArgs(bin string, flags ...string) func(dir, listen, upstream string) ([]string, error) {
	return func(_, listen, upstream string) ([]string, error) {
		return append([]string{filepath.Join(*flagProtoDir, bin), "--listen", listen, "--upstream", upstream}, flags...), nil
	}
}

func expArgs(flags ...string) func(dir, listen, upstream string) ([]string, error) {
	return func(_, listen, upstream string) ([]string, error) {
		admin, err := fixture.FreePort()
		if err != nil {
			return nil, err
		}
		return append([]string{*flagExproxy, "--listen", listen, "--upstream", upstream, "--log-level", "warn",
			"--max-clients", "20000", "--admin-listen", "127.0.0.1:" + strconv.Itoa(admin)}, flags...), nil
	}
}

func twemArgs(dir, listen, upstream string) ([]string, error) {
	conf := filepath.Join(dir, "twem-"+strings.ReplaceAll(listen, ":", "_")+".yml")
	yml := fmt.Sprintf(`alpha:
  listen: %s
  hash: fnv1a_64
  distribution: ketama
  redis: true
  server_connections: 1
  auto_eject_hosts: false
  preconnect: true
  servers:
   - %s:1
`, listen, upstream)
	if err := os.WriteFile(conf, []byte(yml), 0o644); err != nil {
		return nil, err
	}
	stats, err := fixture.FreePort()
	if err != nil {
		return nil, err
	}
	return []string{"/usr/sbin/nutcracker", "-c", conf, "-s", strconv.Itoa(stats), "-a", "127.0.0.1", "-v", "1"}, nil
}

var allCandidates = []candidate{
	{name: "direct"},
	{name: "twem", args: twemArgs},
	{name: "exp", args: expArgs()},
	{name: "exp-pinned", args: expArgs("--upstream-mode", "pinned")},
	{name: "exp-mp2", env: []string{"GOMAXPROCS=2"}, args: expArgs()},
	{name: "exp-gc400", env: []string{"GOGC=400"}, args: expArgs()},
	// gorproxy: the goroutine-per-client floor with exproxy's shared shape.
	{name: "gor", proto: "gorproxy", args: gorArgs()},
	{name: "gor-inline", proto: "gorproxy", args: gorArgs("--write", "inline")},
	{name: "gor-inline-gs", proto: "gorproxy", args: gorArgs("--write", "inline", "--gosched")},
	{name: "gor-nogs", proto: "gorproxy", args: gorArgs("--gosched=false")},
	{name: "gor-handoff", proto: "gorproxy", args: gorArgs("--reply", "handoff")},
	{name: "gor-mp2", proto: "gorproxy", env: []string{"GOMAXPROCS=2"}, args: gorArgs()},
	{name: "gor-gc400", proto: "gorproxy", env: []string{"GOGC=400"}, args: gorArgs()},
	{name: "gor-gcoff", proto: "gorproxy", env: []string{"GOGC=off", "GOMEMLIMIT=512MiB"}, args: gorArgs()},
	{name: "gor-inline-mp2", proto: "gorproxy", env: []string{"GOMAXPROCS=2"}, args: gorArgs("--write", "inline")},
	{name: "gor-plainread", proto: "gorproxy", args: gorArgs("--rawread=false")},
	// gnet: client connections on event loops.
	{name: "gnet", proto: "gnetproxy", args: protoArgs("gnetproxy")},
	{name: "gnet-imm", proto: "gnetproxy", args: protoArgs("gnetproxy", "--upwrite", "immediate")},
	{name: "gnet-2", proto: "gnetproxy", env: []string{"GOMAXPROCS=2"}, args: protoArgs("gnetproxy", "--loops", "2")},
	{name: "gnet-lock", proto: "gnetproxy", args: protoArgs("gnetproxy", "--lock")},
	{name: "gnet-mp2", proto: "gnetproxy", env: []string{"GOMAXPROCS=2"}, args: protoArgs("gnetproxy")},
	// epoll: a hand-written single-threaded event loop (twemproxy's shape).
	{name: "epoll", proto: "epollproxy", args: protoArgs("epollproxy")},
	{name: "epoll-lock", proto: "epollproxy", args: protoArgs("epollproxy", "--lock")},
	{name: "epoll-raw", proto: "epollproxy", args: protoArgs("epollproxy", "--raw")},
	{name: "epoll-mp2", proto: "epollproxy", env: []string{"GOMAXPROCS=2"}, args: protoArgs("epollproxy")},
	// netpoll: cloudwego/netpoll server, handlers on its goroutine pool.
	{name: "netpoll", proto: "netpollproxy", args: protoArgs("netpollproxy")},
}

func pickCandidates(names []string) ([]candidate, error) {
	var out []candidate
	for _, n := range names {
		found := false
		for _, c := range allCandidates {
			if c.name == n {
				out = append(out, c)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown candidate %q", n)
		}
	}
	if len(out) == 0 || out[0].name != "direct" {
		return nil, fmt.Errorf("the first candidate must be direct (the ratios' base)")
	}
	return out, nil
}

func buildPrototypes(cands []candidate) error {
	done := map[string]bool{}
	for _, c := range cands {
		if c.proto == "" || done[c.proto] {
			continue
		}
		done[c.proto] = true
		cmd := exec.Command("go", "build", "-o", filepath.Join(*flagProtoDir, c.proto), "./"+c.proto)
		cmd.Dir = protoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %w: %s", c.proto, err, out)
		}
	}
	return nil
}

// protoRoot is the folder of this module (bench/prototype), found from the
// working directory.
func protoRoot() string {
	wd, _ := os.Getwd()
	for d := wd; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "evbench", "main.go")); err == nil {
			return d
		}
	}
	return wd
}

// proc is a running candidate.
type proc struct {
	name string
	addr string
	pid  int // 0 for direct
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func (c candidate) start(dir, upstream string) (*proc, error) {
	if c.args == nil {
		return &proc{name: c.name, addr: upstream}, nil
	}
	port, err := fixture.FreePort()
	if err != nil {
		return nil, err
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	argv, err := c.args(dir, listen, upstream)
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, c.name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("taskset", append([]string{"-c", "1"}, argv...)...)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &proc{name: c.name, addr: listen, pid: cmd.Process.Pid, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if !p.alive() {
			return nil, fmt.Errorf("exited at start: %s", p.logTail())
		}
		if err := fixture.Ping(listen); err == nil {
			return p, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("no PONG within 15s: %s", p.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proc) alive() bool {
	if p.cmd == nil {
		return true
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) stop() {
	if p.cmd == nil {
		return
	}
	if p.alive() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return strings.TrimSpace(string(b))
}
