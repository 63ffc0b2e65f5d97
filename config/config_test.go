package config

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// load runs the whole pipeline the way cmd/exproxy does: parse args into a
// flag set, then Load with env.
func load(t *testing.T, file string, env map[string]string, args ...string) (*Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("exproxy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := RegisterFlags(fs)
	if file != "" {
		path := filepath.Join(t.TempDir(), "exproxy.yaml")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"--config", path}, args...)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatalf("flag parse %v: %v", args, err)
	}
	return Load(f, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
}

func TestPrecedence(t *testing.T) {
	const file = "listen: 127.0.0.1:7001\nmax-clients: 11\nlimits:\n  client-output-limit: 1mb\nlog:\n  level: warn\n"
	tests := []struct {
		name       string
		file       string
		env        map[string]string
		args       []string
		listen     string
		maxClients int
		outLimit   int64
		level      string
		origin     string // of listen
	}{
		{name: "defaults", listen: "127.0.0.1:6380", maxClients: 10000, outLimit: 64 << 20, level: "info", origin: "default"},
		{name: "file over defaults", file: file, listen: "127.0.0.1:7001", maxClients: 11, outLimit: 1 << 20, level: "warn", origin: "exproxy.yaml line 1"},
		{
			name: "env over file", file: file,
			env:    map[string]string{"EXPROXY_LISTEN": "127.0.0.1:7002", "EXPROXY_CLIENT_OUTPUT_LIMIT": "2mb"},
			listen: "127.0.0.1:7002", maxClients: 11, outLimit: 2 << 20, level: "warn", origin: "EXPROXY_LISTEN",
		},
		{
			name: "flags over env and file", file: file,
			env:    map[string]string{"EXPROXY_LISTEN": "127.0.0.1:7002", "EXPROXY_LOG_LEVEL": "error"},
			args:   []string{"--listen", "127.0.0.1:7003", "-max-clients=12"},
			listen: "127.0.0.1:7003", maxClients: 12, outLimit: 1 << 20, level: "error", origin: "--listen",
		},
		{
			name: "last flag wins", args: []string{"--listen", "127.0.0.1:7004", "--listen", "/tmp/x.sock"},
			listen: "/tmp/x.sock", maxClients: 10000, outLimit: 64 << 20, level: "info", origin: "--listen",
		},
		{
			name: "env without file", env: map[string]string{"EXPROXY_MAX_CLIENTS": "5"},
			listen: "127.0.0.1:6380", maxClients: 5, outLimit: 64 << 20, level: "info", origin: "default",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(t, tt.file, tt.env, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if c.Listen != tt.listen || c.MaxClients != tt.maxClients || c.Limits.ClientOutputLimit != tt.outLimit || c.Log.Level != tt.level {
				t.Errorf("got listen=%q max-clients=%d client-output-limit=%d level=%q, want %q %d %d %q",
					c.Listen, c.MaxClients, c.Limits.ClientOutputLimit, c.Log.Level, tt.listen, tt.maxClients, tt.outLimit, tt.level)
			}
			if got := c.Origin("listen"); !strings.HasSuffix(got, tt.origin) {
				t.Errorf("Origin(listen) = %q, want suffix %q", got, tt.origin)
			}
		})
	}
}

func TestConfigFileFromEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("max-clients: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := load(t, "", map[string]string{ConfigEnv: path})
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxClients != 3 {
		t.Errorf("max-clients = %d, want 3 from $%s", c.MaxClients, ConfigEnv)
	}
}

// TestEverySettingFromEverySource sets each setting to a non-default value
// through the file, the environment and a flag, and checks it arrives.
func TestEverySettingFromEverySource(t *testing.T) {
	values := map[string]string{
		"listen": "0.0.0.0:7000", "upstream": "rediss://10.0.0.1:6390/2",
		"upstream-username": "app", "upstream-password": "pw",
		"tls.ca-file": "", "tls.cert-file": "", "tls.key-file": "",
		"tls.server-name": "redis.internal", "tls.insecure-skip-verify": "true",
		"dial-timeout": "3s", "write-timeout": "4s", "drain-timeout": "5s", "max-clients": "6",
		"limits.proto-max-bulk-len": "2mb", "limits.inline-max-len": "8kb", "limits.max-args": "9",
		"limits.max-pending": "10", "limits.client-output-limit": "11mb",
		"upstream-mode": "pinned", "shared-conns": "4", "ready-conns": "3", "client-io": "goroutine",
		"log.level": "debug", "log.format": "console", "log.file": "stdout", "instance-name": "sidecar-7",
		"admin.listen": "", "contention.enabled": "false", "contention.window": "12s",
		"contention.top": "13", "admin.pprof": "true",
		"admin.token": "0123456789abcdef-token", "admin.allow-unauthenticated": "true", "exstring.enabled": "false", "exstring.scripts": "true", "exstring.answer-stale": "false",
		"contention.max-keys": "16", "contention.max-patterns": "17", "contention.max-clients": "18", "contention.threshold": "14", "contention.abort-events": "true",
		"contention.abort-sample-rate": "0.5", "contention.abort-rate-limit": "15",
		"contention.attribution": "false", "contention.attribution-max-keys": "19", "contention.attribution-ttl": "21s", "contention.metrics-patterns": "22",
		"cluster.refresh-interval": "20s", "cluster.min-refresh-interval": "1s", "cluster.failover-wait": "30s", "cluster.max-redirects": "7",
	}
	for _, s := range Settings() {
		if s.Flag == "" {
			continue
		}
		v, ok := values[s.Key]
		if !ok {
			t.Fatalf("test has no value for setting %s", s.Key)
		}
		def := Default()
		if s.get(def) == v && v != "" {
			t.Fatalf("test value for %s equals the default", s.Key)
		}
		// YAML: nest the key into its sections.
		parts := strings.Split(s.Key, ".")
		var yml strings.Builder
		for i, p := range parts[:len(parts)-1] {
			yml.WriteString(strings.Repeat("  ", i) + p + ":\n")
		}
		yml.WriteString(strings.Repeat("  ", len(parts)-1) + parts[len(parts)-1] + ": \"" + v + "\"\n")
		sources := []struct {
			name string
			file string
			env  map[string]string
			args []string
		}{
			{"file", yml.String(), nil, nil},
			{"env", "", map[string]string{s.Env: v}, nil},
			{"flag", "", nil, []string{"--" + s.Flag + "=" + v}},
		}
		for _, src := range sources {
			t.Run(s.Key+"/"+src.name, func(t *testing.T) {
				env := src.env
				// TLS settings need a TLS upstream to validate.
				if strings.HasPrefix(s.Key, "tls.") {
					if env == nil {
						env = map[string]string{}
					}
					env["EXPROXY_UPSTREAM"] = "rediss://127.0.0.1:6379"
				}
				// Cluster settings need a cluster upstream.
				if strings.HasPrefix(s.Key, "cluster.") {
					if env == nil {
						env = map[string]string{}
					}
					env["EXPROXY_UPSTREAM"] = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"
				}
				c, err := load(t, src.file, env, src.args...)
				if err != nil {
					t.Fatal(err)
				}
				if got := s.get(c); got != v {
					t.Errorf("%s = %q, want %q", s.Key, got, v)
				}
			})
		}
	}
}

func TestPatternsFromFile(t *testing.T) {
	c, err := load(t, "contention:\n  patterns:\n    - match: '^order:[0-9]+:lock$'\n      pattern: 'order:*:lock'\n    - {match: '^s:', pattern: 'session'}\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []PatternRule{{Match: `^order:[0-9]+:lock$`, Pattern: "order:*:lock"}, {Match: "^s:", Pattern: "session"}}
	if !reflect.DeepEqual(c.Contention.Patterns, want) {
		t.Errorf("patterns = %v, want %v", c.Contention.Patterns, want)
	}
}

// TestErrors checks the one-line message of every way a setting can be bad.
func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  map[string]string
		args []string
		want string
	}{
		{name: "listen flag", args: []string{"--listen", "nope"}, want: `invalid --listen: "nope" is not host:port or a unix socket path`},
		{name: "listen port", args: []string{"--listen", "127.0.0.1:99999"}, want: `invalid --listen: port "99999" is not a number from 0 to 65535`},
		{name: "listen from file", file: "\nlisten: nope\n", want: `invalid listen (exproxy.yaml line 2): "nope" is not host:port or a unix socket path`},
		{name: "listen from env", env: map[string]string{"EXPROXY_LISTEN": ""}, want: `invalid EXPROXY_LISTEN: "" is not host:port or a unix socket path`},
		{name: "upstream empty", args: []string{"--upstream="}, want: `invalid --upstream: empty: give host:port, a redis:// URL or a socket path`},
		{name: "upstream scheme", args: []string{"--upstream", "http://x:1"}, want: `invalid --upstream: unsupported scheme "http" (use redis://, rediss://, unix://, redis+cluster:// or rediss+cluster://)`},
		{name: "upstream port", args: []string{"--upstream", "redis://u:secret@h:0"}, want: `invalid --upstream: port "0" is not a number from 1 to 65535`},
		{name: "upstream db", args: []string{"--upstream", "redis://u:secret@h:1/x"}, want: `invalid --upstream: database "x" is not a number >= 0`},
		{name: "upstream bad url", args: []string{"--upstream", "redis://u:secret@h:1/%zz"}, want: `invalid --upstream: not a valid URL "redis://u:xxxxx@h:1/%zz": invalid URL escape "%zz"`},
		{name: "upstream param", args: []string{"--upstream", "redis://h:1?timeout=1"}, want: `invalid --upstream: unsupported URL parameter "timeout" (only db is known)`},
		{name: "cluster setting without a cluster", args: []string{"--cluster-failover-wait", "1s"}, want: `invalid --cluster-failover-wait: set, but the upstream is not a cluster (use a redis+cluster:// URL)`},
		{name: "cluster setting in file without a cluster", file: "cluster:\n  max-redirects: 3\n", want: `invalid cluster.max-redirects (exproxy.yaml line 2): set, but the upstream is not a cluster (use a redis+cluster:// URL)`},
		{name: "cluster refresh interval", env: map[string]string{"EXPROXY_UPSTREAM": "redis+cluster://h:1"}, args: []string{"--cluster-refresh-interval", "10ms"}, want: `invalid --cluster-refresh-interval: must be at least 100ms, got 10ms`},
		{name: "cluster min refresh interval", env: map[string]string{"EXPROXY_UPSTREAM": "redis+cluster://h:1", "EXPROXY_CLUSTER_MIN_REFRESH_INTERVAL": "10s"}, want: `invalid EXPROXY_CLUSTER_MIN_REFRESH_INTERVAL: must be from 0 to cluster.refresh-interval (5s), got 10s`},
		{name: "cluster failover wait", env: map[string]string{"EXPROXY_UPSTREAM": "redis+cluster://h:1"}, args: []string{"--cluster-failover-wait", "-1s"}, want: `invalid --cluster-failover-wait: must not be negative, got -1s`},
		{name: "cluster max redirects", env: map[string]string{"EXPROXY_UPSTREAM": "redis+cluster://h:1"}, args: []string{"--cluster-max-redirects", "0"}, want: `invalid --cluster-max-redirects: must be 1 to 100, got 0`},
		{name: "cluster db", args: []string{"--upstream", "redis+cluster://u:secret@h:1/3"}, want: `invalid --upstream: database 3: Redis Cluster has only database 0`},
		{name: "tls without rediss", args: []string{"--tls-ca-file", "/x"}, want: `invalid --tls-ca-file: set, but the upstream does not use TLS (use a rediss:// or rediss+cluster:// URL)`},
		{name: "tls ca missing", args: []string{"--upstream", "rediss://h:1", "--tls-ca-file", "/nonexistent/ca.pem"}, want: `invalid --tls-ca-file: cannot read: open /nonexistent/ca.pem: no such file or directory`},
		{name: "tls cert without key", args: []string{"--upstream", "rediss://h:1", "--tls-cert-file", "/x"}, want: `invalid --tls-cert-file: set without tls.key-file`},
		{name: "tls key without cert", args: []string{"--upstream", "rediss://h:1", "--tls-key-file", "/x"}, want: `invalid --tls-key-file: set without tls.cert-file`},
		{name: "dial timeout syntax", args: []string{"--dial-timeout", "2"}, want: `invalid --dial-timeout: not a duration: "2" (use e.g. 500ms, 2s, 1m)`},
		{name: "dial timeout zero", args: []string{"--dial-timeout", "0s"}, want: `invalid --dial-timeout: must be greater than 0, got 0s`},
		{name: "write timeout", env: map[string]string{"EXPROXY_WRITE_TIMEOUT": "-1s"}, want: `invalid EXPROXY_WRITE_TIMEOUT: must be greater than 0, got -1s`},
		{name: "drain timeout", args: []string{"--drain-timeout=-1s"}, want: `invalid --drain-timeout: must not be negative, got -1s`},
		{name: "max clients syntax", args: []string{"--max-clients", "many"}, want: `invalid --max-clients: not an integer: "many"`},
		{name: "max clients zero", args: []string{"--max-clients", "0"}, want: `invalid --max-clients: must be at least 1, got 0`},
		{name: "bulk len syntax", args: []string{"--proto-max-bulk-len", "lots"}, want: `invalid --proto-max-bulk-len: not a size: "lots" (use bytes or e.g. 64kb, 512mb, 1gb)`},
		{name: "bulk len small", file: "limits:\n  proto-max-bulk-len: 1000\n", want: `invalid limits.proto-max-bulk-len (exproxy.yaml line 2): must be at least 1mb, got 1000`},
		{name: "inline len", args: []string{"--inline-max-len", "100"}, want: `invalid --inline-max-len: must be from 1kb to 1gb, got 100`},
		{name: "max args", args: []string{"--max-args", "0"}, want: `invalid --max-args: must be at least 1, got 0`},
		{name: "max pending", args: []string{"--max-pending", "0"}, want: `invalid --max-pending: must be at least 1, got 0`},
		{name: "output limit", args: []string{"--client-output-limit", "0"}, want: `invalid --client-output-limit: must be greater than 0, got 0`},
		{name: "log level", args: []string{"--log-level", "loud"}, want: `invalid --log-level: must be debug, info, warn or error, got "loud"`},
		{name: "log format", args: []string{"--log-format", "xml"}, want: `invalid --log-format: must be json or console, got "xml"`},
		{name: "log file", args: []string{"--log-file="}, want: `invalid --log-file: must be stderr, stdout or a file path, got ""`},
		{name: "admin listen", args: []string{"--admin-listen", "/tmp/a.sock"}, want: `invalid --admin-listen: "/tmp/a.sock" is not host:port`},
		{name: "admin token short", env: map[string]string{"EXPROXY_ADMIN_TOKEN": "hunter2"}, want: `invalid EXPROXY_ADMIN_TOKEN: must be at least 16 characters (e.g. openssl rand -hex 32), got 7`},
		{name: "admin token space", file: "admin:\n  token: \"hunter2 hunter2 hunter2\"\n", want: `invalid admin.token (exproxy.yaml line 2): must be printable ASCII without spaces; character 8 is not`},
		{name: "admin token control", args: []string{"--admin-token", "hunter2hunter2hunter2\n"}, want: `invalid --admin-token: must be printable ASCII without spaces; character 22 is not`},
		{name: "contention bool", args: []string{"--contention=maybe"}, want: `invalid --contention: not a boolean: "maybe" (use true or false)`},
		{name: "window", args: []string{"--contention-window", "50ms"}, want: `invalid --contention-window: must be at least 100ms, got 50ms`},
		{name: "max keys", args: []string{"--contention-max-keys", "0"}, want: `invalid --contention-max-keys: must be at least 1, got 0`},
		{name: "max patterns", args: []string{"--contention-max-patterns", "0"}, want: `invalid --contention-max-patterns: must be at least 1, got 0`},
		{name: "contention max clients", args: []string{"--contention-max-clients", "-1"}, want: `invalid --contention-max-clients: must be at least 1, got -1`},
		{name: "exstring bool", env: map[string]string{"EXPROXY_EXSTRING": "nah"}, want: `invalid EXPROXY_EXSTRING: not a boolean: "nah" (use true or false)`},
		{name: "top", args: []string{"--contention-top", "0"}, want: `invalid --contention-top: must be at least 1, got 0`},
		{name: "threshold", args: []string{"--contention-threshold", "-1"}, want: `invalid --contention-threshold: must not be negative, got -1`},
		{name: "sample rate", args: []string{"--contention-abort-sample-rate", "1.5"}, want: `invalid --contention-abort-sample-rate: must be greater than 0 and at most 1, got 1.5`},
		{name: "sample rate zero", args: []string{"--contention-abort-sample-rate", "0"}, want: `invalid --contention-abort-sample-rate: must be greater than 0 and at most 1, got 0`},
		{name: "sample rate syntax", args: []string{"--contention-abort-sample-rate", "half"}, want: `invalid --contention-abort-sample-rate: not a number: "half"`},
		{name: "rate limit", args: []string{"--contention-abort-rate-limit", "-2"}, want: `invalid --contention-abort-rate-limit: must be greater than 0, got -2`},
		{name: "pattern regex", file: "contention:\n  patterns:\n    - {match: '(', pattern: x}\n", want: "invalid contention.patterns (exproxy.yaml line 2): rule 1: match \"(\" does not compile: error parsing regexp: missing closing ): `(`"},
		{name: "pattern empty", file: "contention:\n  patterns:\n    - {match: 'a'}\n", want: `invalid contention.patterns (exproxy.yaml line 2): rule 1: pattern is empty`},
		{name: "pattern field", file: "contention:\n  patterns:\n    - {regex: 'a'}\n", want: `config file exproxy.yaml line 3: contention.patterns: unknown field "regex" (use match and pattern)`},
		{name: "unknown key", file: "listen: 127.0.0.1:1\nmax-client: 3\n", want: `config file exproxy.yaml line 2: unknown setting "max-client"`},
		{name: "misplaced key", file: "max-args: 3\n", want: `config file exproxy.yaml line 1: unknown setting "max-args" (did you mean limits.max-args?)`},
		{name: "unknown nested key", file: "limits:\n  max-argz: 3\n", want: `config file exproxy.yaml line 2: unknown setting "limits.max-argz"`},
		{name: "duplicate key", file: "listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n", want: `config file exproxy.yaml line 2: setting "listen" given twice`},
		{name: "section not mapping", file: "limits: 3\n", want: `config file exproxy.yaml line 1: "limits" is a section: expected a mapping`},
		{name: "value not scalar", file: "listen: [a, b]\n", want: `invalid listen (exproxy.yaml line 1): expected a single value`},
		{name: "not a mapping", file: "- a\n", want: `config file exproxy.yaml line 1: expected a mapping of settings`},
		{name: "bad yaml", file: "listen: \"x\n", want: `config file exproxy.yaml: yaml: line 2: found unexpected end of stream`},
		{name: "secret not echoed", env: map[string]string{"EXPROXY_UPSTREAM": "redis://h:1", "EXPROXY_UPSTREAM_PASSWORD": "hunter2"}, args: []string{"--tls-server-name", "x"}, want: `invalid --tls-server-name: set, but the upstream does not use TLS (use a rediss:// or rediss+cluster:// URL)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.file, tt.env, tt.args...)
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			got := stripTemp(err.Error())
			if got != tt.want {
				t.Errorf("error\n got: %s\nwant: %s", got, tt.want)
			}
			if strings.Contains(got, "\n") {
				t.Errorf("error is more than one line: %q", got)
			}
			for _, secret := range []string{"secret", "hunter2"} {
				if strings.Contains(got, secret) {
					t.Errorf("error shows a password: %s", got)
				}
			}
		})
	}
}

// stripTemp removes the test's temporary directory from file names.
func stripTemp(s string) string {
	i := strings.Index(s, "exproxy.yaml")
	if i < 0 {
		return s
	}
	j := strings.LastIndex(s[:i], " ")
	if k := strings.LastIndex(s[:i], "("); k > j {
		j = k
	}
	return s[:j+1] + s[i:]
}

func TestMissingConfigFile(t *testing.T) {
	_, err := load(t, "", nil, "--config", "/nonexistent/exproxy.yaml")
	want := "config file: cannot read: open /nonexistent/exproxy.yaml: no such file or directory"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}

func TestEmptyConfigFile(t *testing.T) {
	for _, file := range []string{"\n", "# only a comment\n", "~\n"} {
		c, err := load(t, file, nil)
		if err != nil {
			t.Fatalf("%q: %v", file, err)
		}
		if !reflect.DeepEqual(c.Limits, Default().Limits) {
			t.Errorf("%q changed settings", file)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"0", 0, false}, {"1024", 1024, false}, {"1k", 1000, false}, {"1kb", 1024, false},
		{"64mb", 64 << 20, false}, {"64MB", 64 << 20, false}, {"2m", 2e6, false}, {"1gb", 1 << 30, false},
		{"3g", 3e9, false}, {" 5 kb ", 5 << 10, false}, {"7b", 7, false},
		{"", 0, true}, {"mb", 0, true}, {"-1", 0, true}, {"1.5mb", 0, true}, {"1tb", 0, true},
		{"9999999999999gb", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
	for _, n := range []int64{0, 1, 1000, 1024, 64 << 20, 3 << 30, 1<<20 + 1} {
		if got, err := ParseSize(FormatSize(n)); err != nil || got != n {
			t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", n, got, err)
		}
	}
}

func TestDurationsAndBools(t *testing.T) {
	c, err := load(t, "drain-timeout: 1m30s\ncontention:\n  abort-events: yes\n  enabled: off\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.DrainTimeout != 90*time.Second || !c.Contention.AbortEvents || c.Contention.Enabled {
		t.Errorf("got drain-timeout=%s abort-events=%v enabled=%v", c.DrainTimeout, c.Contention.AbortEvents, c.Contention.Enabled)
	}
	// A bool flag given alone means true.
	c, err = load(t, "", nil, "--contention-abort-events", "--tls-insecure-skip-verify", "--upstream", "rediss://h:1")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Contention.AbortEvents || !c.TLS.InsecureSkipVerify {
		t.Errorf("bare bool flags not true: %+v %+v", c.Contention, c.TLS)
	}
}

// TestSettingsMatchStruct checks that the table and the Config struct
// describe the same settings: every yaml leaf is in the table, with the
// same key, and every table row has a leaf.
func TestSettingsMatchStruct(t *testing.T) {
	var leaves []string
	var walk func(reflect.Type, string)
	walk = func(typ reflect.Type, prefix string) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			tag := f.Tag.Get("yaml")
			if tag == "" {
				continue
			}
			if f.Type.Kind() == reflect.Struct && f.Type.String() != "time.Duration" {
				walk(f.Type, prefix+tag+".")
				continue
			}
			leaves = append(leaves, prefix+tag)
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	var keys []string
	seenFlag := map[string]bool{}
	for _, s := range Settings() {
		keys = append(keys, s.Key)
		if s.Flag != "" {
			if seenFlag[s.Flag] {
				t.Errorf("flag --%s used twice", s.Flag)
			}
			seenFlag[s.Flag] = true
			if s.set == nil || s.get == nil || s.Env == "" || s.Usage == "" {
				t.Errorf("setting %s is incomplete", s.Key)
			}
		}
	}
	if !reflect.DeepEqual(leaves, keys) {
		t.Errorf("struct yaml keys and settings table differ:\nstruct: %v\ntable:  %v", leaves, keys)
	}
}

var update = flag.Bool("update", false, "rewrite the settings table in docs/configuration.md")

const (
	tableBegin = "<!-- settings table: generated by go test ./config -update; do not edit -->\n"
	tableEnd   = "<!-- end of settings table -->\n"
)

// settingsTable renders the reference table of docs/configuration.md.
func settingsTable() string {
	var b strings.Builder
	b.WriteString("| YAML key | Flag | Environment variable | Default | Meaning |\n")
	b.WriteString("| --- | --- | --- | --- | --- |\n")
	for _, s := range Settings() {
		flag, env := "(file only)", "(file only)"
		if s.Flag != "" {
			flag, env = "`--"+s.Flag+"`", "`"+s.Env+"`"
		}
		def := s.Default()
		switch {
		case s.Key == "contention.patterns":
			def = "none"
		case def == "":
			def = `""`
		}
		usage := strings.ReplaceAll(s.Usage, "|", "\\|")
		fmt.Fprintf(&b, "| `%s` | %s | %s | `%s` | %s (%s) |\n", s.Key, flag, env, def, usage, s.Type)
	}
	return b.String()
}

// TestDocsListEverySetting keeps the table in docs/configuration.md equal
// to the settings table in the code.
func TestDocsListEverySetting(t *testing.T) {
	const path = "../docs/configuration.md"
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	i, j := strings.Index(text, tableBegin), strings.Index(text, tableEnd)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the settings table markers", path)
	}
	want := settingsTable()
	if got := text[i+len(tableBegin) : j]; got != want {
		if !*update {
			t.Fatalf("%s: settings table is out of date; run go test ./config -update", path)
		}
		text = text[:i+len(tableBegin)] + want + text[j:]
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFlagUsageListsEveryFlag(t *testing.T) {
	var b strings.Builder
	WriteFlagUsage(&b)
	for _, s := range Settings() {
		if s.Flag == "" {
			continue
		}
		if !strings.Contains(b.String(), "--"+s.Flag+" ") && !strings.Contains(b.String(), "--"+s.Flag+"[") {
			t.Errorf("usage lacks --%s", s.Flag)
		}
		if !strings.Contains(b.String(), s.Env) {
			t.Errorf("usage lacks %s", s.Env)
		}
	}
	if strings.Contains(b.String(), "hunter2") {
		t.Error("usage shows a secret")
	}
}

// TestShippedExamplesLoad keeps the example configuration files valid.
func TestShippedExamplesLoad(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "## Example file\n\n```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```\n")
	if !ok || !ok2 {
		t.Fatal("docs/configuration.md has no example YAML block under \"## Example file\"")
	}
	_, rest, ok = strings.Cut(string(doc), "### Redis Cluster\n")
	_, rest, ok2 = strings.Cut(rest, "```yaml\n")
	clusterExample, _, ok3 := strings.Cut(rest, "```\n")
	if !ok || !ok2 || !ok3 {
		t.Fatal("docs/configuration.md has no example YAML block under \"### Redis Cluster\"")
	}
	deploy, err := os.ReadFile("../deploy/exproxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"docs/configuration.md example":         example,
		"docs/configuration.md cluster example": clusterExample,
		"deploy/exproxy.yaml":                   string(deploy),
	} {
		c := Default()
		if err := c.loadYAML(name, []byte(text)); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		// The docs example names CA files that do not exist here; check
		// everything but the TLS files.
		c.TLS = TLS{}
		c.Upstream = strings.Replace(c.Upstream, "rediss://", "redis://", 1)
		c.Upstream = strings.Replace(c.Upstream, "rediss+cluster://", "redis+cluster://", 1)
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
