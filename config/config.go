// Package config holds exproxy's settings: the Config struct, its defaults,
// loading from a YAML file, the environment and command-line flags (in that
// order of precedence, flags winning), and validation.
//
// Every setting is described once, in the table returned by Settings; the
// flags, the environment variables, the YAML keys, --help and the
// documentation all follow from that table, so they cannot drift apart.
//
// The package imports nothing else of exproxy but the extensions'
// configuration leaves (extensions/*/…cfg, which import nothing of exproxy
// either): the extensions' sections are their own Config types, held here
// and handed to them by cmd/exproxy, which also maps a Config onto
// proxy.Options.
package config

import (
	"net/url"
	"strings"
	"time"

	"github.com/exproxy/exproxy/extensions/contention/contentioncfg"
	"github.com/exproxy/exproxy/extensions/exstring/exstringcfg"
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
	// ClientIO is "loop" (an event loop reads every client) or
	// "goroutine" (a goroutine per client).
	ClientIO   string `yaml:"client-io"`
	ReadyConns int    `yaml:"ready-conns"`

	// Cluster tunes a Redis Cluster upstream (redis+cluster://).
	Cluster Cluster `yaml:"cluster"`

	Log Log `yaml:"log"`
	// InstanceName names this proxy in its contention log events, so that
	// a report over many sidecars' logs tells them apart; "" means the
	// host name (in Kubernetes, the pod's name).
	InstanceName string `yaml:"instance-name"`
	Admin        Admin  `yaml:"admin"`
	// The extensions' sections are their own Config types, with their
	// own defaults and validation (the leaf packages exstringcfg and
	// contentioncfg, which the extensions use as well).
	Exstring   exstringcfg.Config   `yaml:"exstring"`
	Contention contentioncfg.Config `yaml:"contention"`

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

// PatternRule is one contention.patterns rule (see contentioncfg).
type PatternRule = contentioncfg.PatternRule

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
		ClientIO:     "loop",
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
		Exstring:   exstringcfg.Default(),
		Contention: contentioncfg.Default(),
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
