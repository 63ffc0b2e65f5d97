package config

import (
	"strconv"
	"strings"
	"time"
)

// Setting describes one configuration setting: its names in each source,
// its type and its meaning.
type Setting struct {
	Key   string // YAML key path, e.g. "limits.max-args"
	Flag  string // flag name without dashes, e.g. "max-args"; "" when file-only
	Env   string // environment variable, e.g. "EXPROXY_MAX_ARGS"; "" when file-only
	Type  string // value syntax: string, address, upstream, duration, size, int, float, bool, list
	Usage string // one line for --help and the docs
	// Secret settings are never echoed in errors or help.
	Secret bool

	set func(c *Config, v string) error
	get func(c *Config) string
}

// Default is the setting's default value as text ("" when empty).
func (s Setting) Default() string {
	if s.get == nil {
		return ""
	}
	return s.get(Default())
}

// Value is the setting's value in c as text. Secret settings show as
// "xxxxx" when set; the upstream is shown redacted.
func (s Setting) Value(c *Config) string {
	if s.get == nil {
		return ""
	}
	v := s.get(c)
	switch {
	case s.Secret && v != "":
		return "xxxxx"
	case s.Type == "upstream":
		return RedactURL(v)
	}
	return v
}

// ConfigEnv names the environment variable that gives the configuration
// file when --config is not used.
const ConfigEnv = "EXPROXY_CONFIG"

func str(p func(*Config) *string) (func(*Config, string) error, func(*Config) string) {
	return func(c *Config, v string) error { *p(c) = v; return nil },
		func(c *Config) string { return *p(c) }
}

func dur(p func(*Config) *time.Duration) (func(*Config, string) error, func(*Config) string) {
	return func(c *Config, v string) error {
			d, err := parseDuration(v)
			*p(c) = d
			return err
		}, func(c *Config) string {
			return p(c).String()
		}
}

func size(p func(*Config) *int64) (func(*Config, string) error, func(*Config) string) {
	return func(c *Config, v string) error {
			n, err := ParseSize(v)
			*p(c) = n
			return err
		}, func(c *Config) string {
			return FormatSize(*p(c))
		}
}

func integer(p func(*Config) *int) (func(*Config, string) error, func(*Config) string) {
	return func(c *Config, v string) error {
			n, err := parseInt(v)
			*p(c) = n
			return err
		}, func(c *Config) string {
			return strconv.Itoa(*p(c))
		}
}

func float(p func(*Config) *float64) (func(*Config, string) error, func(*Config) string) {
	return func(c *Config, v string) error {
			f, err := parseFloat(v)
			*p(c) = f
			return err
		}, func(c *Config) string {
			return strconv.FormatFloat(*p(c), 'g', -1, 64)
		}
}

func boolean(p func(*Config) *bool) (func(*Config, string) error, func(*Config) string) {
	return func(c *Config, v string) error {
			b, err := parseBool(v)
			*p(c) = b
			return err
		}, func(c *Config) string {
			return strconv.FormatBool(*p(c))
		}
}

// setting builds a table row; the flag and environment names follow from
// the flag name, so they stay consistent.
func setting(key, flag, typ, usage string, set func(*Config, string) error, get func(*Config) string) Setting {
	s := Setting{Key: key, Flag: flag, Type: typ, Usage: usage, set: set, get: get}
	if flag != "" {
		s.Env = "EXPROXY_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
	}
	return s
}

var settings = buildSettings()

// Settings returns every setting, in the order --help and the docs list
// them.
func Settings() []Setting {
	return append([]Setting(nil), settings...)
}

// clusterSettings are the settings of the cluster section, which only a
// cluster upstream uses.
func clusterSettings() []Setting {
	var out []Setting
	for _, s := range settings {
		if strings.HasPrefix(s.Key, "cluster.") {
			out = append(out, s)
		}
	}
	return out
}

// Lookup finds a setting by its YAML key.
func Lookup(key string) (Setting, bool) {
	for _, s := range settings {
		if s.Key == key {
			return s, true
		}
	}
	return Setting{}, false
}

func buildSettings() []Setting {
	var out []Setting
	add := func(s Setting) { out = append(out, s) }
	row := func(key, flag, typ, usage string, set func(*Config, string) error, get func(*Config) string) {
		add(setting(key, flag, typ, usage, set, get))
	}

	set, get := str(func(c *Config) *string { return &c.Listen })
	row("listen", "listen", "address", "where clients connect: host:port, or a unix socket path (contains /)", set, get)
	set, get = str(func(c *Config) *string { return &c.Upstream })
	row("upstream", "upstream", "upstream", "the Redis server: host:port, redis://[user:pass@]host:port/db, rediss://... (TLS), unix:///path or /path/redis.sock; a Redis Cluster: redis+cluster://[user:pass@]host1:port,host2:port,... or rediss+cluster://...", set, get)
	set, get = str(func(c *Config) *string { return &c.UpstreamUsername })
	row("upstream-username", "upstream-username", "string", "ACL user for the proxy's own upstream connections; overrides the one in the upstream URL", set, get)
	set, get = str(func(c *Config) *string { return &c.UpstreamPassword })
	s := setting("upstream-password", "upstream-password", "string", "password for the proxy's own upstream connections; overrides the URL's (prefer the env var or file: flags show in ps)", set, get)
	s.Secret = true
	add(s)

	set, get = str(func(c *Config) *string { return &c.TLS.CAFile })
	row("tls.ca-file", "tls-ca-file", "string", "PEM file of CAs that sign the upstream's certificate (default: system roots)", set, get)
	set, get = str(func(c *Config) *string { return &c.TLS.CertFile })
	row("tls.cert-file", "tls-cert-file", "string", "client certificate (PEM) for mutual TLS; needs tls-key-file", set, get)
	set, get = str(func(c *Config) *string { return &c.TLS.KeyFile })
	row("tls.key-file", "tls-key-file", "string", "client private key (PEM) for mutual TLS; needs tls-cert-file", set, get)
	set, get = str(func(c *Config) *string { return &c.TLS.ServerName })
	row("tls.server-name", "tls-server-name", "string", "name to verify in the upstream's certificate (default: the upstream host)", set, get)
	bset, bget := boolean(func(c *Config) *bool { return &c.TLS.InsecureSkipVerify })
	row("tls.insecure-skip-verify", "tls-insecure-skip-verify", "bool", "do not verify the upstream's certificate (testing only)", bset, bget)

	dset, dget := dur(func(c *Config) *time.Duration { return &c.DialTimeout })
	row("dial-timeout", "dial-timeout", "duration", "how long connecting to the upstream may take", dset, dget)
	dset, dget = dur(func(c *Config) *time.Duration { return &c.WriteTimeout })
	row("write-timeout", "write-timeout", "duration", "how long one write to a client or the upstream may block", dset, dget)
	dset, dget = dur(func(c *Config) *time.Duration { return &c.DrainTimeout })
	row("drain-timeout", "drain-timeout", "duration", "on SIGTERM/SIGINT, how long in-flight replies may take before connections are closed", dset, dget)
	iset, iget := integer(func(c *Config) *int { return &c.MaxClients })
	row("max-clients", "max-clients", "int", "most client connections at once; more get \"-ERR max number of clients reached\"", iset, iget)

	sset, sget := size(func(c *Config) *int64 { return &c.Limits.ProtoMaxBulkLen })
	row("limits.proto-max-bulk-len", "proto-max-bulk-len", "size", "largest bulk string a client may send (Redis's proto-max-bulk-len)", sset, sget)
	sset, sget = size(func(c *Config) *int64 { return &c.Limits.InlineMaxLen })
	row("limits.inline-max-len", "inline-max-len", "size", "longest inline command line (Redis's 64kb)", sset, sget)
	iset, iget = integer(func(c *Config) *int { return &c.Limits.MaxArgs })
	row("limits.max-args", "max-args", "int", "most arguments in one command", iset, iget)
	iset, iget = integer(func(c *Config) *int { return &c.Limits.MaxPending })
	row("limits.max-pending", "max-pending", "int", "commands per client sent upstream and not yet answered; past it the proxy stops reading that client", iset, iget)
	sset, sget = size(func(c *Config) *int64 { return &c.Limits.ClientOutputLimit })
	row("limits.client-output-limit", "client-output-limit", "size", "reply bytes buffered for a client that does not read them; past it the client is disconnected", sset, sget)

	set, get = str(func(c *Config) *string { return &c.UpstreamMode })
	row("upstream-mode", "upstream-mode", "string", "shared: clients share upstream connections, and take one of their own only while they hold connection state (a transaction, a subscription, a blocking command, ...); pinned: one upstream connection per client", set, get)
	iset, iget = integer(func(c *Config) *int { return &c.SharedConns })
	row("shared-conns", "shared-conns", "int", "upstream connections per pool (user, protocol, database) shared by clients in upstream-mode shared", iset, iget)
	set, get = str(func(c *Config) *string { return &c.ClientIO })
	row("client-io", "client-io", "string", "how clients are read: loop (one event loop reads them all; the default, on Linux) or goroutine (a goroutine per client)", set, get)
	iset, iget = integer(func(c *Config) *int { return &c.ReadyConns })
	row("ready-conns", "ready-conns", "int", "upstream connections kept dialled and set up (AUTH, SELECT, HELLO) before they are wanted, per pool of connections in use, so a client that needs one of its own gets it without waiting for a connect (0: none)", iset, iget)

	dset, dget = dur(func(c *Config) *time.Duration { return &c.Cluster.RefreshInterval })
	row("cluster.refresh-interval", "cluster-refresh-interval", "duration", "redis+cluster upstream: how often the slot map is read again without a reason", dset, dget)
	dset, dget = dur(func(c *Config) *time.Duration { return &c.Cluster.MinRefreshInterval })
	row("cluster.min-refresh-interval", "cluster-min-refresh-interval", "duration", "redis+cluster upstream: least time between two reads of the slot map prompted by MOVED, ASK, CLUSTERDOWN or a lost node", dset, dget)
	dset, dget = dur(func(c *Config) *time.Duration { return &c.Cluster.FailoverWait })
	row("cluster.failover-wait", "cluster-failover-wait", "duration", "redis+cluster upstream: how long a command for a slot without a reachable primary waits for a failover before the client gets an error", dset, dget)
	iset, iget = integer(func(c *Config) *int { return &c.Cluster.MaxRedirects })
	row("cluster.max-redirects", "cluster-max-redirects", "int", "redis+cluster upstream: most MOVED/ASK redirections one command follows", iset, iget)

	set, get = str(func(c *Config) *string { return &c.Log.Level })
	row("log.level", "log-level", "string", "log level: debug, info, warn or error", set, get)
	set, get = str(func(c *Config) *string { return &c.Log.Format })
	row("log.format", "log-format", "string", "log format: json, or console for humans", set, get)
	set, get = str(func(c *Config) *string { return &c.Log.File })
	row("log.file", "log-file", "string", "where logs go: stderr, stdout, or a file path (appended to)", set, get)
	set, get = str(func(c *Config) *string { return &c.InstanceName })
	row("instance-name", "instance-name", "string", "this proxy's name in its contention log events (the instance field), so a report over many sidecars' logs tells them apart; \"\" means the host name (in Kubernetes, the pod name)", set, get)

	set, get = str(func(c *Config) *string { return &c.Admin.Listen })
	row("admin.listen", "admin-listen", "address", "HTTP address for /healthz, /readyz, /metrics, /contention and /debug/pprof/; \"\" disables it", set, get)
	bset, bget = boolean(func(c *Config) *bool { return &c.Admin.Pprof })
	row("admin.pprof", "admin-pprof", "bool", "serve Go's profiler under /debug/pprof/ on the admin address (a private path, like /contention)", bset, bget)
	set, get = str(func(c *Config) *string { return &c.Admin.Token })
	s = setting("admin.token", "admin-token", "string", "bearer token required on the admin endpoint's private paths (/contention, /debug/pprof/); at least 16 characters (prefer the env var or file: flags show in ps)", set, get)
	s.Secret = true
	add(s)
	bset, bget = boolean(func(c *Config) *bool { return &c.Admin.AllowUnauthenticated })
	row("admin.allow-unauthenticated", "admin-allow-unauthenticated", "bool", "serve the private paths without admin.token when admin.listen is not a loopback address (anyone who reaches it reads key names and profiles)", bset, bget)

	bset, bget = boolean(func(c *Config) *bool { return &c.Exstring.Enabled })
	row("exstring.enabled", "exstring", "bool", "add the versioned-string commands (EXSET, EXCAS, ..., CAS, CAD); false makes the proxy a pure passthrough", bset, bget)
	bset, bget = boolean(func(c *Config) *bool { return &c.Exstring.Scripts })
	row("exstring.scripts", "exstring-scripts", "bool", "call the Lua with EVALSHA even where Redis has functions (for ACLs that allow +evalsha but not +fcall)", bset, bget)
	bset, bget = boolean(func(c *Config) *bool { return &c.Exstring.AnswerStale })
	row("exstring.answer-stale", "exstring-answer-stale", "bool", "answer in the proxy, from the first one's reply, the EXCAS with the same key and expected version sent to Redis in one write (Redis could only refuse them as stale); false sends each", bset, bget)

	bset, bget = boolean(func(c *Config) *bool { return &c.Contention.Enabled })
	row("contention.enabled", "contention", "bool", "track WATCH/EXEC aborts and stale versioned writes", bset, bget)
	dset, dget = dur(func(c *Config) *time.Duration { return &c.Contention.Window })
	row("contention.window", "contention-window", "duration", "length of one contention counting window (one summary log event each)", dset, dget)
	iset, iget = integer(func(c *Config) *int { return &c.Contention.Top })
	row("contention.top", "contention-top", "int", "hot keys and hot key patterns logged per window (each)", iset, iget)
	iset, iget = integer(func(c *Config) *int { return &c.Contention.Threshold })
	row("contention.threshold", "contention-threshold", "int", "fewest conflicts (aborts + stale writes) in a window for a key or pattern to be logged", iset, iget)
	iset, iget = integer(func(c *Config) *int { return &c.Contention.MaxKeys })
	row("contention.max-keys", "contention-max-keys", "int", "keys counted per window; past it the least active are folded into the totals (bounds memory)", iset, iget)
	iset, iget = integer(func(c *Config) *int { return &c.Contention.MaxPatterns })
	row("contention.max-patterns", "contention-max-patterns", "int", "key patterns counted per window (bounds memory)", iset, iget)
	iset, iget = integer(func(c *Config) *int { return &c.Contention.MaxClients })
	row("contention.max-clients", "contention-max-clients", "int", "clients counted per window (bounds memory)", iset, iget)
	bset, bget = boolean(func(c *Config) *bool { return &c.Contention.AbortEvents })
	row("contention.abort-events", "contention-abort-events", "bool", "log one event per aborted transaction (sampled and rate-limited)", bset, bget)
	fset, fget := float(func(c *Config) *float64 { return &c.Contention.AbortSampleRate })
	row("contention.abort-sample-rate", "contention-abort-sample-rate", "float", "fraction (greater than 0, at most 1) of aborts that get a per-abort event", fset, fget)
	fset, fget = float(func(c *Config) *float64 { return &c.Contention.AbortRateLimit })
	row("contention.abort-rate-limit", "contention-abort-rate-limit", "float", "most per-abort events per second", fset, fget)
	bset, bget = boolean(func(c *Config) *bool { return &c.Contention.Attribution })
	row("contention.attribution", "contention-attribution", "bool", "name the write behind each abort or stale write: record who writes to keys watched or versioned now (keys and clients, never values)", bset, bget)
	iset, iget = integer(func(c *Config) *int { return &c.Contention.AttributionMaxKeys })
	row("contention.attribution-max-keys", "contention-attribution-max-keys", "int", "keys whose writers are recorded at once; conflicts on keys past it are unattributed (bounds memory)", iset, iget)
	dset, dget = dur(func(c *Config) *time.Duration { return &c.Contention.AttributionTTL })
	row("contention.attribution-ttl", "contention-attribution-ttl", "duration", "how long a key's writers are still recorded after its last WATCH or versioned command", dset, dget)
	iset, iget = integer(func(c *Config) *int { return &c.Contention.MetricsPatterns })
	row("contention.metrics-patterns", "contention-metrics-patterns", "int", "key patterns (and invalidators) with a Prometheus label of their own; the rest count as (other)", iset, iget)
	add(Setting{
		Key: "contention.patterns", Type: "list",
		Usage: "file only: rules [{match: REGEX, pattern: NAME}] that group keys into patterns, tried before the built-in grouping",
	})
	return out
}
