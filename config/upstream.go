package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// DefaultRedisPort is used when an upstream names a host without a port.
const DefaultRedisPort = "6379"

// Upstream is a parsed upstream address.
type Upstream struct {
	Network  string // "tcp" or "unix"
	Addr     string // host:port, or the socket path; for a cluster, the first seed
	UseTLS   bool   // rediss://, rediss+cluster://
	Username string
	Password string
	DB       int
	// Cluster: the upstream is a Redis Cluster (redis+cluster://,
	// rediss+cluster://) reached through Seeds, host:port each, in the
	// order given and without repeats.
	Cluster bool
	Seeds   []string
	// TLS is the client configuration for UseTLS; ResolveUpstream fills
	// it in, ParseUpstream leaves it nil.
	TLS *tls.Config
}

// String names the upstream without credentials, for logs and errors.
func (u Upstream) String() string {
	switch {
	case u.Network == "unix":
		return "unix://" + u.Addr
	case u.Cluster && u.UseTLS:
		return "rediss+cluster://" + strings.Join(u.Seeds, ",")
	case u.Cluster:
		return "redis+cluster://" + strings.Join(u.Seeds, ",")
	case u.UseTLS:
		return "rediss://" + u.Addr
	}
	return u.Addr
}

// ParseUpstream reads an upstream address in one of these forms:
//
//	host:port                          plain TCP (port defaults to 6379)
//	redis://[user:pass@]host[:port][/db]
//	rediss://[user:pass@]host[:port][/db]   TLS
//	unix:///path/redis.sock[?db=N]     (also unix://user:pass@/path)
//	/path/redis.sock                   any value containing "/" and no "://"
//	redis+cluster://[user:pass@]host1[:port],host2[:port],...   Redis Cluster seeds
//	rediss+cluster://...                                        Redis Cluster over TLS
//
// Errors never contain the password.
func ParseUpstream(s string) (Upstream, error) {
	if s == "" {
		return Upstream{}, errors.New("empty: give host:port, a redis:// URL or a socket path")
	}
	scheme, _, hasScheme := strings.Cut(s, "://")
	if hasScheme && (strings.EqualFold(scheme, "redis+cluster") || strings.EqualFold(scheme, "rediss+cluster")) {
		return parseCluster(s, scheme)
	}
	if !hasScheme {
		if strings.HasPrefix(s, "//") {
			// A socket path like this is legal but almost surely a URL
			// whose scheme was forgotten; its userinfo must not be logged.
			return Upstream{}, fmt.Errorf("%q looks like a URL without a scheme (use redis://, rediss:// or unix://)", RedactURL(s))
		}
		if strings.Contains(s, "/") {
			return Upstream{Network: "unix", Addr: s}, nil
		}
		addr, err := hostPort(s)
		if err != nil {
			return Upstream{}, err
		}
		return Upstream{Network: "tcp", Addr: addr}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		// url.Error repeats the whole input, password included; say what
		// is wrong with the redacted form instead.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Upstream{}, fmt.Errorf("not a valid URL %q: %w", RedactURL(s), err)
	}
	up := Upstream{}
	if u.User != nil {
		up.Username = u.User.Username()
		up.Password, _ = u.User.Password()
	}
	switch strings.ToLower(scheme) {
	case "redis", "rediss":
		up.Network = "tcp"
		up.UseTLS = strings.EqualFold(scheme, "rediss")
		if u.Host == "" {
			return Upstream{}, fmt.Errorf("%q has no host", RedactURL(s))
		}
		if up.Addr, err = hostPort(u.Host); err != nil {
			return Upstream{}, err
		}
		if p := strings.Trim(u.Path, "/"); p != "" {
			if up.DB, err = parseDB(p); err != nil {
				return Upstream{}, err
			}
		}
	case "unix":
		up.Network = "unix"
		up.Addr = u.Path
		if up.Addr == "" {
			return Upstream{}, fmt.Errorf("%q has no socket path (use unix:///path/redis.sock)", RedactURL(s))
		}
	default:
		return Upstream{}, fmt.Errorf("unsupported scheme %q (use redis://, rediss://, unix://, redis+cluster:// or rediss+cluster://)", scheme)
	}
	for k, v := range u.Query() {
		if k != "db" || len(v) != 1 {
			return Upstream{}, fmt.Errorf("unsupported URL parameter %q (only db is known)", k)
		}
		if up.DB, err = parseDB(v[0]); err != nil {
			return Upstream{}, err
		}
	}
	return up, nil
}

// parseCluster reads redis+cluster:// and rediss+cluster:// URLs. net/url
// cannot read a list of hosts, so the list is cut out and the rest — the
// credentials, path and parameters — parsed with one placeholder host.
func parseCluster(s, scheme string) (Upstream, error) {
	rest := s[len(scheme)+len("://"):]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo, hosts := "", authority
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		userinfo, hosts = authority[:at+1], authority[at+1:]
	}
	u, err := url.Parse("redis://" + userinfo + "seed" + tail)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Upstream{}, fmt.Errorf("not a valid URL %q: %w", RedactURL(s), err)
	}
	up := Upstream{Network: "tcp", Cluster: true, UseTLS: strings.EqualFold(scheme, "rediss+cluster")}
	if u.User != nil {
		up.Username = u.User.Username()
		up.Password, _ = u.User.Password()
	}
	if hosts == "" {
		return Upstream{}, fmt.Errorf("%q has no seed nodes (use %s://host1:port,host2:port)", RedactURL(s), strings.ToLower(scheme))
	}
	seen := map[string]bool{}
	for _, h := range strings.Split(hosts, ",") {
		if h == "" {
			return Upstream{}, fmt.Errorf("%q has an empty seed node in %q", RedactURL(s), hosts)
		}
		addr, err := hostPort(h)
		if err != nil {
			return Upstream{}, err
		}
		if !seen[addr] {
			seen[addr] = true
			up.Seeds = append(up.Seeds, addr)
		}
	}
	up.Addr = up.Seeds[0]
	db := strings.Trim(u.Path, "/")
	for k, v := range u.Query() {
		if k != "db" || len(v) != 1 {
			return Upstream{}, fmt.Errorf("unsupported URL parameter %q (only db is known)", k)
		}
		db = v[0]
	}
	if db != "" {
		if up.DB, err = parseDB(db); err != nil {
			return Upstream{}, err
		}
		if up.DB != 0 {
			return Upstream{}, fmt.Errorf("database %d: Redis Cluster has only database 0", up.DB)
		}
	}
	return up, nil
}

func parseDB(s string) (int, error) {
	db, err := strconv.Atoi(s)
	if err != nil || db < 0 {
		return 0, fmt.Errorf("database %q is not a number >= 0", s)
	}
	return db, nil
}

// hostPort checks host:port and adds Redis's port when it is missing.
func hostPort(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// A bare host (or bracketed IPv6 address) without a port.
		h := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
		if h == "" || strings.ContainsAny(h, " /@") || (strings.Contains(h, ":") && net.ParseIP(h) == nil) {
			return "", fmt.Errorf("%q is not host:port", s)
		}
		return net.JoinHostPort(h, DefaultRedisPort), nil
	}
	if host == "" {
		return "", fmt.Errorf("%q has no host", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return net.JoinHostPort(host, port), nil
}

var schemeRE = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*:)?//`)

// RedactURL replaces the password in an upstream URL with "xxxxx", so it
// can be logged. It works on text that is not a valid URL too, reading the
// userinfo as net/url does (up to the last "@" of the authority, the
// password after its first ":").
func RedactURL(s string) string {
	m := schemeRE.FindStringIndex(s)
	if m == nil {
		return s
	}
	authority := s[m[1]:]
	if i := strings.IndexAny(authority, "/?#"); i >= 0 {
		authority = authority[:i]
	}
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return s
	}
	user, pass, hasPass := strings.Cut(authority[:at], ":")
	if !hasPass || pass == "" {
		return s
	}
	return s[:m[1]] + user + ":xxxxx" + s[m[1]+at:]
}

// ResolveUpstream parses c.Upstream, applies the credential overrides and
// builds the TLS configuration, reading the certificate files.
func (c *Config) ResolveUpstream() (Upstream, error) {
	up, err := ParseUpstream(c.Upstream)
	if err != nil {
		return Upstream{}, c.settingError("upstream", err.Error())
	}
	if c.UpstreamUsername != "" {
		up.Username = c.UpstreamUsername
	}
	if c.UpstreamPassword != "" {
		up.Password = c.UpstreamPassword
	}
	if !up.Cluster {
		// By value, not by origin: the output of `exproxy config`, which
		// lists the defaults, must load back.
		for _, s := range clusterSettings() {
			if s.get(c) != s.Default() {
				return Upstream{}, c.settingError(s.Key, "set, but the upstream is not a cluster (use a redis+cluster:// URL)")
			}
		}
	}
	t := c.TLS
	if !up.UseTLS {
		for _, f := range []struct {
			key string
			set bool
		}{
			{"tls.ca-file", t.CAFile != ""},
			{"tls.cert-file", t.CertFile != ""},
			{"tls.key-file", t.KeyFile != ""},
			{"tls.server-name", t.ServerName != ""},
			{"tls.insecure-skip-verify", t.InsecureSkipVerify},
		} {
			if f.set {
				return Upstream{}, c.settingError(f.key, "set, but the upstream does not use TLS (use a rediss:// or rediss+cluster:// URL)")
			}
		}
		return up, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	// A cluster's nodes each have their own name: without
	// tls.server-name, the connection to a node sets the node's host.
	if cfg.ServerName == "" && !up.Cluster {
		cfg.ServerName, _, _ = net.SplitHostPort(up.Addr)
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return Upstream{}, c.settingError("tls.ca-file", fmt.Errorf("cannot read: %w", err).Error())
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return Upstream{}, c.settingError("tls.ca-file", fmt.Sprintf("no PEM certificates in %s", t.CAFile))
		}
		cfg.RootCAs = pool
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		return Upstream{}, c.settingError("tls.cert-file", "set without tls.key-file")
	case t.KeyFile != "" && t.CertFile == "":
		return Upstream{}, c.settingError("tls.key-file", "set without tls.cert-file")
	case t.CertFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return Upstream{}, c.settingError("tls.cert-file", fmt.Errorf("cannot load key pair: %w", err).Error())
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	up.TLS = cfg
	return up, nil
}
