package clients

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exproxy/exproxy/internal/proxytest"
)

// scriptTimeout bounds one run of a library script; the scripts bound
// each of their own waits by 20 s, so this only catches a hang.
const scriptTimeout = 90 * time.Second

// library is one client library and how to run its script.
type library struct {
	name string
	argv []string // the script, before SCENARIO HOST PORT PROTO ARGS
	skip string   // why it cannot run here, with the command that fixes it
}

// unsupportedExit is the status a script exits with when the installed
// library cannot speak the requested RESP version.
const unsupportedExit = 3

// libraries lists the libraries under test, each with skip set when it is
// not installed.
func libraries() []library {
	py := library{name: "redis-py", argv: []string{pythonWithRedis(), "py/scenarios.py"}}
	if py.argv[0] == "" {
		py.skip = "no python3 with redis-py; install it with: apt-get update && apt-get install -y python3-redis"
	}
	node, _ := exec.LookPath("node")
	nodeLib := func(name, module, script string) library {
		l := library{name: name, argv: []string{node, script}}
		switch {
		case node == "":
			l.skip = "node not found; install it with: apt-get update && apt-get install -y nodejs npm, then: cd proxy/e2e/clients/node && npm ci"
		case !exists("node/node_modules/" + module + "/package.json"):
			l.skip = module + " not installed; install it with: cd proxy/e2e/clients/node && npm ci"
		}
		return l
	}
	return []library{py, nodeLib("ioredis", "ioredis", "node/ioredis.js"), nodeLib("node-redis", "redis", "node/noderedis.js")}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// pythonWithRedis finds a python3 that can import redis-py (Debian's
// python3-redis installs it for /usr/bin/python3, which a pyenv or venv
// python3 on PATH may shadow), or "".
func pythonWithRedis() string {
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(py, "-c", "import redis").Run() == nil {
			return py
		}
	}
	return ""
}

// probes caches, per library and protocol, why the library cannot run
// ("" when it can), so the tests ask each script once.
var probes sync.Map

// need skips the test unless lib is installed and speaks proto.
func need(t *testing.T, lib library, proto int) {
	t.Helper()
	if lib.skip != "" {
		t.Skip(lib.skip)
	}
	key := fmt.Sprint(lib.name, proto)
	why, ok := probes.Load(key)
	if !ok {
		ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
		defer cancel()
		argv := append(append([]string{}, lib.argv...), "probe", "127.0.0.1", "0", fmt.Sprint(proto), "{}")
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).Output()
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit) && exit.ExitCode() == unsupportedExit:
			why = strings.TrimSpace(string(out))
		case err != nil:
			t.Fatalf("%s probe: %v\n%s", lib.name, err, out)
		default:
			why = ""
		}
		probes.Store(key, why)
	}
	if why != "" {
		t.Skipf("%s in RESP%d: %s", lib.name, proto, why)
	}
}

// run is one script run in progress.
type run struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan struct{} // closed when the script has ended
	err            error         // what Wait returned, once done is closed
}

// start runs lib's script for scenario against addr in RESP proto.
func start(t *testing.T, lib library, scenario, addr string, proto int, args map[string]any) *run {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	a, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	r := &run{done: make(chan struct{})}
	argv := append(append([]string{}, lib.argv...), scenario, host, port, fmt.Sprint(proto), string(a))
	r.cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
	r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
	if err := r.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("%s: %v", lib.name, err)
	}
	go func() {
		r.err = r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// exited reports whether the script has ended, without waiting.
func (r *run) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// result waits for the script and returns the JSON object it printed. A
// script whose library cannot speak proto skips the test.
func (r *run) result(t *testing.T, lib library) map[string]any {
	t.Helper()
	<-r.done
	err := r.err
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == unsupportedExit {
		t.Skipf("%s: %s", lib.name, strings.TrimSpace(r.stdout.String()))
	}
	if err != nil {
		t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", lib.name, err, r.stdout.String(), r.stderr.String())
	}
	var out map[string]any
	if err := json.Unmarshal(r.stdout.Bytes(), &out); err != nil {
		t.Fatalf("%s: output is not one JSON object: %v\n%s", lib.name, err, r.stdout.String())
	}
	if s := strings.TrimSpace(r.stderr.String()); s != "" {
		t.Logf("%s stderr: %s", lib.name, s)
	}
	return out
}

// runScript runs lib's script to its end and returns its outcomes.
func runScript(t *testing.T, lib library, scenario, addr string, proto int, args map[string]any) map[string]any {
	t.Helper()
	return start(t, lib, scenario, addr, proto, args).result(t, lib)
}

// sameOutcome fails the test when the library saw something through the
// proxy that it did not see from Redis.
func sameOutcome(t *testing.T, lib library, direct, proxied map[string]any) {
	t.Helper()
	if !reflect.DeepEqual(direct, proxied) {
		d, _ := json.MarshalIndent(direct, "", "  ")
		p, _ := json.MarshalIndent(proxied, "", "  ")
		t.Errorf("%s sees a difference.\ndirect to Redis:\n%s\nthrough the proxy:\n%s", lib.name, d, p)
	}
	if b, _ := json.Marshal(proxied); bytes.Contains(b, []byte("exproxy")) {
		t.Errorf("%s saw a reply of the proxy's own: %s", lib.name, b)
	}
}

// addrs are the two places every script runs against, in order.
func addrs(h *proxytest.Harness) []struct{ via, addr string } {
	return []struct{ via, addr string }{{"direct", h.Redis.Addr}, {"proxy", h.Addr}}
}
