package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/exproxy/exproxy/config"
	"github.com/exproxy/exproxy/extensions/contention"
	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
	"github.com/exproxy/exproxy/proxy/resp"
)

// runIn runs the command in-process with an empty environment plus env.
func runIn(vars map[string]string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, env{strings.NewReader(""), &out, &errb, func(k string) (string, bool) { v, ok := vars[k]; return v, ok }})
	return code, out.String(), errb.String()
}

func TestHelpListsEveryFlag(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"serve", "--help"}, {"help", "serve"}} {
		code, out, _ := runIn(nil, args...)
		if code != exitOK {
			t.Errorf("%v: exit %d, want 0", args, code)
		}
		for _, s := range config.Settings() {
			if s.Flag == "" {
				continue
			}
			if !strings.Contains(out, "--"+s.Flag) || !strings.Contains(out, s.Env) {
				t.Errorf("%v: help lacks --%s or %s", args, s.Flag, s.Env)
			}
		}
		if !strings.Contains(out, "--config FILE") {
			t.Errorf("%v: help lacks --config", args)
		}
	}
	_, out, _ := runIn(nil, "--help")
	for _, c := range commands() {
		if !strings.Contains(out, "  "+c.name+" ") {
			t.Errorf("top-level help lacks command %s", c.name)
		}
	}
}

// TestUsageErrors checks that every bad command line exits 2 with one line
// on stderr and nothing on stdout.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"unknown command", nil, []string{"frobnicate"}, `exproxy: unknown command "frobnicate" (see exproxy --help)`},
		{"unknown flag", nil, []string{"--nope"}, `exproxy: flag provided but not defined: -nope (see exproxy --help)`},
		{"flag without value", nil, []string{"serve", "--listen"}, `exproxy: flag needs an argument: -listen (see exproxy --help)`},
		{"extra argument", nil, []string{"serve", "extra"}, `exproxy: unexpected argument "extra" (see exproxy --help)`},
		{"bad flag value", nil, []string{"--max-clients", "0"}, `exproxy: invalid --max-clients: must be at least 1, got 0`},
		{"bad env value", map[string]string{"EXPROXY_DIAL_TIMEOUT": "2"}, nil, `exproxy: invalid EXPROXY_DIAL_TIMEOUT: not a duration: "2" (use e.g. 500ms, 2s, 1m)`},
		{"bad upstream keeps secret", nil, []string{"--upstream", "redis://u:hunter2@h:0"}, `exproxy: invalid --upstream: port "0" is not a number from 1 to 65535`},
		{"missing config file", nil, []string{"--config", "/nonexistent.yaml"}, `exproxy: config file: cannot read: open /nonexistent.yaml: no such file or directory`},
		{"log file not writable", nil, []string{"--log-file", "/nonexistent/dir/x.log", "--admin-listen="}, `exproxy: invalid --log-file: cannot open: open /nonexistent/dir/x.log: no such file or directory`},
		{"help unknown", nil, []string{"help", "nope"}, `exproxy: unknown command "nope" (see exproxy --help)`},
		{"lua args", nil, []string{"lua", "x"}, `exproxy: lua takes no arguments (see exproxy lua --help)`},
		{"cluster setting without a cluster", nil, []string{"--cluster-max-redirects", "3"}, `exproxy: invalid --cluster-max-redirects: set, but the upstream is not a cluster (use a redis+cluster:// URL)`},
		{"cluster database", nil, []string{"--upstream", "redis+cluster://u:hunter2@h:1,h:2/1"}, `exproxy: invalid --upstream: database 1: Redis Cluster has only database 0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runIn(tt.env, tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want 2", code)
			}
			if got := strings.TrimSuffix(errOut, "\n"); got != tt.want {
				t.Errorf("stderr\n got: %q\nwant: %q", got, tt.want)
			}
			if out != "" {
				t.Errorf("stdout not empty: %q", out)
			}
		})
	}
}

func TestVersionAndLua(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, _ := runIn(nil, args...)
		if code != exitOK || out != "exproxy "+version+"\n" {
			t.Errorf("%v: exit %d, output %q", args, code, out)
		}
	}
	code, out, _ := runIn(nil, "lua")
	if code != exitOK || !strings.HasPrefix(out, "#!lua name=exstring_") || !strings.Contains(out, "register_function") {
		t.Errorf("lua: exit %d, output starts %q", code, out[:min(len(out), 60)])
	}
	code, out, _ = runIn(nil, "lua", "--help")
	if code != exitOK || !strings.Contains(out, "FUNCTION LOAD") {
		t.Errorf("lua --help: exit %d, output %q", code, out)
	}
}

// TestLuaLoadsIntoRedis checks the README's recipe: what `exproxy lua`
// prints loads into a real Redis with FUNCTION LOAD.
func TestLuaLoadsIntoRedis(t *testing.T) {
	srv := redistest.Start(t)
	_, lib, _ := runIn(nil, "lua")
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, Protocol: 2})
	defer client.Close()
	name, err := client.FunctionLoad(context.Background(), lib).Result()
	if err != nil {
		t.Fatalf("FUNCTION LOAD: %v", err)
	}
	if !strings.HasPrefix(name, "exstring_") {
		t.Errorf("library name %q", name)
	}
}

func TestProxyOptionsMapping(t *testing.T) {
	cfg := config.Default()
	cfg.Limits = config.Limits{ProtoMaxBulkLen: 1, InlineMaxLen: 2, MaxArgs: 3, MaxPending: 4, ClientOutputLimit: 5}
	cfg.MaxClients, cfg.DialTimeout, cfg.WriteTimeout, cfg.DrainTimeout = 6, 7, 8, 9
	up := proxy.Upstream{Network: "unix", Addr: "/x"}
	got := proxyOptions(cfg, up, nil)
	want := proxy.Options{
		Listen: cfg.Listen, Upstream: up, DialTimeout: 7, WriteTimeout: 8, MaxClients: 6,
		Cluster: proxy.ClusterOptions{
			RefreshInterval: cfg.Cluster.RefreshInterval, MinRefreshInterval: cfg.Cluster.MinRefreshInterval,
			FailoverWait: cfg.Cluster.FailoverWait, MaxRedirects: cfg.Cluster.MaxRedirects,
		},
		Limits:     resp.Limits{MaxBulkLen: 1, MaxInlineLen: 2, MaxArgs: 3},
		MaxPending: 4, ClientOutputLimit: 5, DrainTimeout: 9,
		Mode: proxy.SharedUpstream, SharedConns: 1, ReadyConns: 2,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	cfg.ReadyConns = 0 // the setting's "none" is the option's "negative"
	if got := proxyOptions(cfg, up, nil); got.ReadyConns != -1 {
		t.Errorf("ready-conns 0: Options.ReadyConns = %d, want -1", got.ReadyConns)
	}
}

func TestHealthEndpoints(t *testing.T) {
	srv := redistest.Start(t, redistest.WithConfig("requirepass", "s3cret"))
	tests := []struct {
		name     string
		up       proxy.Upstream
		serving  bool
		path     string
		code     int
		contains string
	}{
		{"healthz before serving", proxy.Upstream{Network: "tcp", Addr: srv.Addr, Password: "s3cret"}, false, "/healthz", 503, "not serving"},
		{"healthz serving", proxy.Upstream{Network: "tcp", Addr: srv.Addr, Password: "s3cret"}, true, "/healthz", 200, "ok"},
		{"readyz upstream up", proxy.Upstream{Network: "tcp", Addr: srv.Addr, Password: "s3cret"}, true, "/readyz", 200, "ok"},
		{"readyz wrong password", proxy.Upstream{Network: "tcp", Addr: srv.Addr, Password: "wrong-pw"}, true, "/readyz", 503, "upstream " + srv.Addr + ": WRONGPASS"},
		{"readyz not serving", proxy.Upstream{Network: "tcp", Addr: srv.Addr, Password: "s3cret"}, false, "/readyz", 503, "not serving"},
		{"readyz upstream down", proxy.Upstream{Network: "tcp", Addr: "127.0.0.1:1"}, true, "/readyz", 503, "upstream 127.0.0.1:1: dial tcp 127.0.0.1:1"},
		{"contention off", proxy.Upstream{Network: "tcp", Addr: srv.Addr}, true, "/contention", 404, "contention tracking is off"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHealth(func() proxy.Stats { return proxy.Stats{} }, tt.up, 2*time.Second)
			defer h.close()
			h.serving.Store(tt.serving)
			rec := httptest.NewRecorder()
			adminMux(h, nil, adminOptions{}).ServeHTTP(rec, httptest.NewRequest("GET", tt.path, nil))
			if rec.Code != tt.code || !strings.Contains(rec.Body.String(), tt.contains) {
				t.Errorf("got %d %q, want %d containing %q", rec.Code, rec.Body.String(), tt.code, tt.contains)
			}
			for _, secret := range []string{"s3cret", "wrong-pw"} {
				if strings.Contains(rec.Body.String(), secret) {
					t.Errorf("body shows a password: %q", rec.Body.String())
				}
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	stats := proxy.Stats{ClientsConnected: 3, ClientsTotal: 10, ClientsRejected: 1, Commands: 42, UpstreamErrors: 2, ProtocolErrors: 5, OutputLimitClosed: 7}
	h := &health{stats: func() proxy.Stats { return stats }}
	tracker, err := contention.New(contention.DefaultConfig(), contention.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer tracker.Close()
	mux := adminMux(h, tracker.Handler(), adminOptions{pprof: true})

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		"exproxy_clients_connected 3\n", "exproxy_clients_total 10\n", "exproxy_clients_rejected_total 1\n",
		"exproxy_commands_total 42\n", "exproxy_upstream_errors_total 2\n", "exproxy_protocol_errors_total 5\n",
		"exproxy_output_limit_closed_total 7\n", `exproxy_build_info{version="` + version + `"} 1`,
		"# TYPE exproxy_commands_total counter", "# TYPE exproxy_clients_connected gauge",
		"go_goroutines ", "process_resident_memory_bytes ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "exproxy_cluster_") {
		t.Errorf("/metrics of a single Redis upstream has cluster rows")
	}

	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/contention", nil))
	var state map[string]json.RawMessage
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &state) != nil || state["current"] == nil {
		t.Errorf("/contention: %d %q", rec.Code, rec.Body.String())
	}

	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "goroutine") {
		t.Errorf("/debug/pprof/: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	adminMux(h, nil, adminOptions{}).ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/", nil))
	if rec.Code != 404 {
		t.Errorf("/debug/pprof/ with pprof off: %d, want 404", rec.Code)
	}
}

func TestLogger(t *testing.T) {
	dir := t.TempDir()
	logFile := filepath.Join(dir, "exproxy.log")
	if err := os.WriteFile(logFile, []byte("{\"old\":1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, level, format, file string
		check                     func(t *testing.T, stdout, stderr, file string)
	}{
		{"json to stderr", "info", "json", "stderr", func(t *testing.T, stdout, stderr, _ string) {
			var m map[string]any
			line, _, _ := strings.Cut(stderr, "\n")
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("not JSON: %q", stderr)
			}
			if m["msg"] != "hello" || m["level"] != "info" || m["k"] != "v" || m["ts"] == nil {
				t.Errorf("fields: %v", m)
			}
			if strings.Contains(stderr, "hidden") || stdout != "" {
				t.Errorf("debug line logged at info, or wrote stdout: %q %q", stderr, stdout)
			}
		}},
		{"console to stdout at debug", "debug", "console", "stdout", func(t *testing.T, stdout, stderr, _ string) {
			if !strings.Contains(stdout, "INFO\thello\t") || !strings.Contains(stdout, "DEBUG\thidden") || stderr != "" {
				t.Errorf("stdout %q stderr %q", stdout, stderr)
			}
		}},
		{"file is appended to", "warn", "json", logFile, func(t *testing.T, stdout, stderr, file string) {
			if !strings.HasPrefix(file, "{\"old\":1}\n") || !strings.Contains(file, `"msg":"warned"`) || strings.Contains(file, "hello") {
				t.Errorf("file %q", file)
			}
			if stdout != "" || stderr != "" {
				t.Errorf("wrote to stdout/stderr: %q %q", stdout, stderr)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Log = config.Log{Level: tt.level, Format: tt.format, File: tt.file}
			var out, errb bytes.Buffer
			log, closeLog, err := newLogger(cfg, &out, &errb)
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("hidden")
			log.Info("hello", zap.String("k", "v"))
			log.Warn("warned")
			closeLog()
			var file string
			if b, err := os.ReadFile(logFile); err == nil {
				file = string(b)
			}
			tt.check(t, out.String(), errb.String(), file)
		})
	}
}

// TestClusterUpstream: `exproxy config` shows a cluster upstream with the
// password masked, and serve refuses it, saying why, until cluster routing
// is wired in.
func TestClusterUpstream(t *testing.T) {
	vars := map[string]string{"EXPROXY_UPSTREAM": "rediss+cluster://app:hunter33@10.0.0.1:7000,10.0.0.2:7000", "EXPROXY_CLUSTER_FAILOVER_WAIT": "20s"}
	code, out, errOut := runIn(vars, "config")
	if code != exitOK {
		t.Fatalf("config: exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		`upstream: "rediss+cluster://app:xxxxx@10.0.0.1:7000,10.0.0.2:7000"  # EXPROXY_UPSTREAM` + "\n",
		"cluster:\n  refresh-interval: 5s  # default\n",
		"  failover-wait: 20s  # EXPROXY_CLUSTER_FAILOVER_WAIT\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("config output lacks %q:\n%s", want, out)
		}
	}
	// Serving in front of a cluster: TestBinaryCluster.
	if strings.Contains(out+errOut, "hunter") {
		t.Errorf("a password is shown: %s%s", out, errOut)
	}
}

// TestConfigCommand checks that `exproxy config` shows each value with its
// source, hides passwords, and prints YAML that loads back to the same
// settings.
func TestConfigCommand(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "in.yaml")
	in := "log:\n  level: warn\ncontention:\n  patterns:\n    - {match: '^a: #b$', pattern: 'yes'}\n"
	if err := os.WriteFile(file, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"EXPROXY_UPSTREAM_PASSWORD": "hunter22", "EXPROXY_LISTEN": "127.0.0.1:7777", "EXPROXY_ADMIN_TOKEN": "hunter33-0123456789"}
	code, out, errOut := runIn(vars, "config", "--config", file, "--max-clients", "5", "--upstream", "redis://u:hunter11@h:1/2")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"listen: 127.0.0.1:7777  # EXPROXY_LISTEN\n",
		"max-clients: 5  # --max-clients\n",
		"  level: warn  # " + file + " line 2\n",
		"upstream: redis://u:xxxxx@h:1/2  # --upstream\n",
		"# upstream-password: xxxxx  # EXPROXY_UPSTREAM_PASSWORD\n",
		"  # token: xxxxx  # EXPROXY_ADMIN_TOKEN\n",
		"  pprof: false  # default\n",
		"dial-timeout: 2s  # default\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hunter") {
		t.Errorf("output shows a password:\n%s", out)
	}

	// Read the output back as a file: every setting but the credentials
	// must come out the same.
	back := filepath.Join(dir, "back.yaml")
	if err := os.WriteFile(back, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := flagSet()
	flags := config.RegisterFlags(fs)
	if err := fs.Parse([]string{"--config", back}); err != nil {
		t.Fatal(err)
	}
	got, err := config.Load(flags, nil)
	if err != nil {
		t.Fatalf("output does not load back: %v\n%s", err, out)
	}
	fs = flagSet()
	flags = config.RegisterFlags(fs)
	if err := fs.Parse([]string{"--config", file, "--max-clients", "5", "--upstream", "redis://u:hunter11@h:1/2"}); err != nil {
		t.Fatal(err)
	}
	want, err := config.Load(flags, func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range config.Settings() {
		if s.Secret || s.Type == "upstream" {
			continue
		}
		if g, w := s.Value(got), s.Value(want); g != w {
			t.Errorf("%s: read back %q, want %q", s.Key, g, w)
		}
	}
	if !reflect.DeepEqual(got.Contention.Patterns, want.Contention.Patterns) {
		t.Errorf("patterns: read back %v, want %v", got.Contention.Patterns, want.Contention.Patterns)
	}
}

func flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// In front of a Redis Cluster, /readyz says whether every slot has a
// primary, and /metrics has a row per node of the slot map.
func TestClusterAdmin(t *testing.T) {
	ready, why := false, "2 slot ranges have no primary (first: 0-99)"
	cs := proxy.ClusterStats{
		Refreshes: 7, SlotsCovered: 16284,
		Nodes: []proxy.NodeStats{
			{Addr: "10.0.0.1:7000", Primary: true, Conns: 3, Commands: 100, Errors: 1, Moved: 4, Asks: 2},
			{Addr: "10.0.0.2:7000", Primary: true, Conns: 2, Commands: 50},
			{Addr: "10.0.0.3:7000", Replica: true},
		},
	}
	h := &health{stats: func() proxy.Stats { return proxy.Stats{} }}
	h.clusterReady(func() (bool, string) { return ready, why }, func() (proxy.ClusterStats, bool) { return cs, true })
	h.timeout = time.Second
	h.upstream = "redis+cluster://10.0.0.1:7000"
	h.serving.Store(true)
	mux := adminMux(h, nil, adminOptions{})
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, why) {
		t.Errorf("/readyz with slots uncovered: %d %q", code, body)
	}
	ready = true
	if code, body := get("/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("/readyz with every slot covered: %d %q", code, body)
	}
	_, body := get("/metrics")
	for _, want := range []string{
		`exproxy_cluster_nodes{role="primary"} 2`, `exproxy_cluster_nodes{role="replica"} 1`,
		"exproxy_cluster_slots_covered 16284", "exproxy_cluster_slot_map_refreshes_total 7",
		`exproxy_cluster_node_upstream_connections{node="10.0.0.1:7000"} 3`,
		`exproxy_cluster_node_commands_total{node="10.0.0.2:7000"} 50`,
		`exproxy_cluster_node_errors_total{node="10.0.0.1:7000"} 1`,
		`exproxy_cluster_node_redirects_total{kind="moved",node="10.0.0.1:7000"} 4`,
		`exproxy_cluster_node_redirects_total{kind="ask",node="10.0.0.1:7000"} 2`,
		`exproxy_cluster_node_upstream_connections{node="10.0.0.3:7000"} 0`,
		"# TYPE exproxy_cluster_node_commands_total counter",
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
