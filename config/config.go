// Package config holds exproxy's settings: the Config struct, its defaults,
// loading from a YAML file, the environment and command-line flags (in that
// order of precedence, flags winning), and validation.
//
// Every setting is described once, in the table returned by Settings; the
// flags, the environment variables, the YAML keys, --help and the
// documentation all follow from that table, so they cannot drift apart.
//
// The package imports nothing else of exproxy: cmd/exproxy maps a Config
// onto proxy.Options and the extensions' own configuration types.
package config

import (
	"net/url"
	"strings"
	"time"
)

// Config is the complete configuration of one exproxy process. The yaml tags
// are the keys of the configuration file.
type Config struct {
	// Listen is where clients connect: host:port, or a unix socket path
	// (anything containing "/").
	Listen string `yaml:"listen"`
	// Upstream is the Redis server, in any form ParseUpstream accepts. It
	// may carry credentials: print it only through RedactURL.
	Upstream string `yaml:"upstream"`
	// UpstreamUsername and UpstreamPassword override the credentials in the
	// Upstream URL, so a secret can come from the environment instead of a
	// URL that shows up in process listings.
	UpstreamUsername string `yaml:"upstream-username"`
	UpstreamPassword string `yaml:"upstream-password"`
	// TLS configures rediss:// upstreams.
	TLS TLS `yaml:"tls"`

	DialTimeout  time.Duration `yaml:"dial-timeout"`
	WriteTimeout time.Duration `yaml:"write-timeout"`
	DrainTimeout time.Duration `yaml:"drain-timeout"`
	MaxClients   int           `yaml:"max-clients"`
	Limits       Limits        `yaml:"limits"`

	// UpstreamMode is "shared" (sessions share upstream connections,
	// taking one of their own only while they hold connection state) or
	// "pinned" (one upstream connection per client connection);
	// SharedConns is the number of shared connections per pool (user,
	// protocol, database); ReadyConns how many connections are kept
	// dialled for sessions that need one of their own.
	UpstreamMode string `yaml:"upstream-mode"`
	SharedConns  int    `yaml:"shared-conns"`
	ReadyConns   int    `yaml:"ready-conns"`

	// Cluster tunes a Redis Cluster upstream (redis+cluster://).
	Cluster Cluster `yaml:"cluster"`

	Log Log `yaml:"log"`
	// InstanceName names this proxy in its contention log events, so that
	// a report over many sidecars' logs tells them apart; "" means the
	// host name (in Kubernetes, the pod's name).
	InstanceName string     `yaml:"instance-name"`
	Admin        Admin      `yaml:"admin"`
	Exstring     Exstring   `yaml:"exstring"`
	Contention   Contention `yaml:"contention"`

	// origins says, per setting key, where its current value came from
	// ("--max-clients", "EXPROXY_MAX_CLIENTS", "exproxy.yaml line 4"), so
	// that a validation error names what the operator has to fix.
	origins map[string]string
}

// TLS configures the connection to a rediss:// upstream.
type TLS struct {
	// CAFile is a PEM bundle of CAs to trust instead of the system pool.
	CAFile string `yaml:"ca-file"`
	// CertFile and KeyFile are a client certificate for mutual TLS.
	CertFile string `yaml:"cert-file"`
	KeyFile  string `yaml:"key-file"`
	// ServerName overrides the name checked against the server's
	// certificate (default: the upstream's host).
	ServerName string `yaml:"server-name"`
	// InsecureSkipVerify turns off certificate verification (tests only).
	InsecureSkipVerify bool `yaml:"insecure-skip-verify"`
}

// Cluster tunes how the proxy follows a Redis Cluster upstream. The slot
// map is read at start, every RefreshInterval, and at once (but not more
// often than MinRefreshInterval) when a node answers MOVED, ASK or
// CLUSTERDOWN or a node connection is lost.
type Cluster struct {
	RefreshInterval    time.Duration `yaml:"refresh-interval"`
	MinRefreshInterval time.Duration `yaml:"min-refresh-interval"`
	// FailoverWait bounds how long a command for a slot whose primary is
	// unreachable waits for the cluster to promote a replica before the
	// client gets an error. A failover takes about cluster-node-timeout
	// plus a second.
	FailoverWait time.Duration `yaml:"failover-wait"`
	// MaxRedirects bounds the MOVED/ASK redirections one command may
	// follow.
	MaxRedirects int `yaml:"max-redirects"`
}

// Limits bound what a client may make the proxy buffer.
type Limits struct {
	ProtoMaxBulkLen   int64 `yaml:"proto-max-bulk-len"`  // largest bulk string, as Redis's proto-max-bulk-len
	InlineMaxLen      int64 `yaml:"inline-max-len"`      // longest inline command line
	MaxArgs           int   `yaml:"max-args"`            // most arguments in one command
	MaxPending        int   `yaml:"max-pending"`         // commands in flight per session before backpressure
	ClientOutputLimit int64 `yaml:"client-output-limit"` // reply bytes buffered for a slow client before it is closed
}

// Log configures the process's zap logger.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json or console
	File   string `yaml:"file"`   // "stderr", "stdout" or a file path (appended to)
}

// Admin configures the HTTP admin endpoint. Its public paths (/healthz,
// /readyz, /metrics) are always served; its private paths (/contention,
// which shows key names and client addresses, and /debug/pprof/) are
// served without a token only on a loopback address, unless
// AllowUnauthenticated says otherwise (docs/configuration.md).
type Admin struct {
	// Listen is host:port for the endpoint; "" disables it.
	Listen string `yaml:"listen"`
	// Pprof serves Go's profiler under /debug/pprof/ (a private path).
	Pprof bool `yaml:"pprof"`
	// Token, when set, is required as a bearer token (or the password of
	// basic auth) on the private paths, whatever the address.
	Token string `yaml:"token"`
	// AllowUnauthenticated serves the private paths without a token on a
	// non-loopback address, to anyone who can reach it.
	AllowUnauthenticated bool `yaml:"allow-unauthenticated"`
}

// Exstring configures the versioned-string commands (extensions/exstring).
type Exstring struct {
	// Enabled adds the EX* commands, CAS and CAD; without it the proxy is
	// a pure passthrough.
	Enabled bool `yaml:"enabled"`
	// Scripts makes the proxy use SCRIPT LOAD and EVALSHA even where Redis
	// has functions (for client ACLs that grant +evalsha but not +fcall).
	Scripts bool `yaml:"scripts"`
}

// Contention configures the contention tracker (extensions/contention).
// cmd/exproxy maps it onto that package's own Config.
type Contention struct {
	Enabled bool          `yaml:"enabled"`
	Window  time.Duration `yaml:"window"` // length of one counting window
	Top     int           `yaml:"top"`    // hot keys and hot patterns logged per window, each
	// Threshold is the fewest conflicts (aborts plus stale versioned
	// writes) a key or pattern needs in a window to get its own log event.
	Threshold int `yaml:"threshold"`
	// MaxKeys, MaxPatterns and MaxClients cap the tracker's per-window
	// tables, so memory stays flat under a stream of distinct keys.
	MaxKeys     int `yaml:"max-keys"`
	MaxPatterns int `yaml:"max-patterns"`
	MaxClients  int `yaml:"max-clients"`
	// AbortEvents turns on one log event per aborted transaction, sampled
	// by AbortSampleRate (0 < rate <= 1) and capped at AbortRateLimit per
	// second.
	AbortEvents     bool    `yaml:"abort-events"`
	AbortSampleRate float64 `yaml:"abort-sample-rate"`
	AbortRateLimit  float64 `yaml:"abort-rate-limit"`
	// Patterns are user rules that group keys into patterns, tried in order
	// before the built-in grouping of numeric, UUID and hex segments.
	Patterns []PatternRule `yaml:"patterns"`
}

// PatternRule maps every key matching the regular expression Match to
// Pattern, which may refer to submatches ($1, ${name}).
type PatternRule struct {
	Match   string `yaml:"match"`
	Pattern string `yaml:"pattern"`
}

// DefaultAdminListen is the admin endpoint's default address: loopback
// only, since /contention shows key names and client addresses.
const DefaultAdminListen = "127.0.0.1:9380"

// Default returns the configuration used when nothing else is given. Its
// values follow Redis's own defaults where Redis has one.
func Default() *Config {
	return &Config{
		Listen:       "127.0.0.1:6380",
		Upstream:     "127.0.0.1:6379",
		DialTimeout:  2 * time.Second,
		WriteTimeout: 30 * time.Second,
		DrainTimeout: 10 * time.Second,
		MaxClients:   10000,
		UpstreamMode: "shared",
		SharedConns:  1,
		ReadyConns:   2,
		Limits: Limits{
			ProtoMaxBulkLen:   512 << 20,
			InlineMaxLen:      64 << 10,
			MaxArgs:           1<<31 - 1,
			MaxPending:        100000,
			ClientOutputLimit: 64 << 20,
		},
		Cluster: Cluster{
			RefreshInterval:    5 * time.Second,
			MinRefreshInterval: 100 * time.Millisecond,
			FailoverWait:       5 * time.Second,
			MaxRedirects:       5,
		},
		Log: Log{Level: "info", Format: "json", File: "stderr"},
		Admin: Admin{
			Listen: DefaultAdminListen,
		},
		Exstring: Exstring{Enabled: true},
		Contention: Contention{
			Enabled:         true,
			Window:          10 * time.Second,
			Top:             20,
			Threshold:       1,
			MaxKeys:         10000,
			MaxPatterns:     1000,
			MaxClients:      1000,
			AbortEvents:     false,
			AbortSampleRate: 1,
			AbortRateLimit:  10,
		},
	}
}

// Secrets returns every credential the configuration holds: the upstream
// password, the password in the upstream URL (even when upstream-password
// overrides it) and the admin token. Whatever shows the process's command
// line or settings masks these.
func (c *Config) Secrets() []string {
	var out []string
	if up, err := ParseUpstream(c.Upstream); err == nil && up.Password != "" {
		out = append(out, up.Password)
		// The URL-escaped spelling too (p%40ss for p@ss), as a command
		// line would carry it.
		if u, err := url.Parse(c.Upstream); err == nil && u.User != nil {
			if _, esc, ok := strings.Cut(u.User.String(), ":"); ok && esc != up.Password {
				out = append(out, esc)
			}
		}
	}
	for _, s := range []string{c.UpstreamPassword, c.Admin.Token} {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Origin says where the value of the setting with the given key came from:
// "default", a flag ("--listen"), an environment variable or a file line.
func (c *Config) Origin(key string) string {
	if o, ok := c.origins[key]; ok {
		return o
	}
	return "default"
}

func (c *Config) setOrigin(key, origin string) {
	if c.origins == nil {
		c.origins = make(map[string]string)
	}
	c.origins[key] = origin
}
