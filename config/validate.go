package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Validate checks every setting and returns the first problem as an
// *Error, in the order of Settings.
func (c *Config) Validate() error {
	if err := checkListen(c.Listen, false); err != "" {
		return c.settingError("listen", err)
	}
	if _, err := c.ResolveUpstream(); err != nil {
		return err
	}
	type check struct {
		key string
		bad bool
		msg string
	}
	checks := []check{
		{"dial-timeout", c.DialTimeout <= 0, fmt.Sprintf("must be greater than 0, got %s", c.DialTimeout)},
		{"write-timeout", c.WriteTimeout <= 0, fmt.Sprintf("must be greater than 0, got %s", c.WriteTimeout)},
		{"drain-timeout", c.DrainTimeout < 0, fmt.Sprintf("must not be negative, got %s", c.DrainTimeout)},
		{"max-clients", c.MaxClients < 1, fmt.Sprintf("must be at least 1, got %d", c.MaxClients)},
		// Redis refuses a proto-max-bulk-len under 1mb too.
		{"limits.proto-max-bulk-len", c.Limits.ProtoMaxBulkLen < 1<<20, fmt.Sprintf("must be at least 1mb, got %s", FormatSize(c.Limits.ProtoMaxBulkLen))},
		{"limits.inline-max-len", c.Limits.InlineMaxLen < 1<<10 || c.Limits.InlineMaxLen > 1<<30, fmt.Sprintf("must be from 1kb to 1gb, got %s", FormatSize(c.Limits.InlineMaxLen))},
		{"limits.max-args", c.Limits.MaxArgs < 1, fmt.Sprintf("must be at least 1, got %d", c.Limits.MaxArgs)},
		{"limits.max-pending", c.Limits.MaxPending < 1, fmt.Sprintf("must be at least 1, got %d", c.Limits.MaxPending)},
		{"upstream-mode", c.UpstreamMode != "shared" && c.UpstreamMode != "pinned", fmt.Sprintf("must be shared or pinned, got %q", c.UpstreamMode)},
		{"client-io", c.ClientIO != "loop" && c.ClientIO != "goroutine", fmt.Sprintf("must be loop or goroutine, got %q", c.ClientIO)},
		{"shared-conns", c.SharedConns < 1 || c.SharedConns > 64, fmt.Sprintf("must be 1 to 64, got %d", c.SharedConns)},
		{"ready-conns", c.ReadyConns < 0 || c.ReadyConns > 1000, fmt.Sprintf("must be 0 to 1000, got %d", c.ReadyConns)},
		{"limits.client-output-limit", c.Limits.ClientOutputLimit < 1, fmt.Sprintf("must be greater than 0, got %s", FormatSize(c.Limits.ClientOutputLimit))},
		{"cluster.refresh-interval", c.Cluster.RefreshInterval < 100*time.Millisecond, fmt.Sprintf("must be at least 100ms, got %s", c.Cluster.RefreshInterval)},
		{"cluster.min-refresh-interval", c.Cluster.MinRefreshInterval < 0 || c.Cluster.MinRefreshInterval > c.Cluster.RefreshInterval, fmt.Sprintf("must be from 0 to cluster.refresh-interval (%s), got %s", c.Cluster.RefreshInterval, c.Cluster.MinRefreshInterval)},
		{"cluster.failover-wait", c.Cluster.FailoverWait < 0, fmt.Sprintf("must not be negative, got %s", c.Cluster.FailoverWait)},
		{"cluster.max-redirects", c.Cluster.MaxRedirects < 1 || c.Cluster.MaxRedirects > 100, fmt.Sprintf("must be 1 to 100, got %d", c.Cluster.MaxRedirects)},
		{"log.level", !oneOf(c.Log.Level, "debug", "info", "warn", "error"), fmt.Sprintf("must be debug, info, warn or error, got %q", c.Log.Level)},
		{"log.format", !oneOf(c.Log.Format, "json", "console"), fmt.Sprintf("must be json or console, got %q", c.Log.Format)},
		{"log.file", c.Log.File == "", "must be stderr, stdout or a file path, got \"\""},
	}
	for _, ch := range checks {
		if ch.bad {
			return c.settingError(ch.key, ch.msg)
		}
	}
	if c.Admin.Listen != "" {
		if err := checkListen(c.Admin.Listen, true); err != "" {
			return c.settingError("admin.listen", err)
		}
	}
	if err := checkToken(c.Admin.Token); err != "" {
		return c.settingError("admin.token", err)
	}
	// The extensions' sections validate themselves, in the order of
	// Settings (exstring, then contention).
	for _, v := range []interface{ Validate() error }{c.Exstring, c.Contention} {
		if err := v.Validate(); err != nil {
			var se interface{ Setting() (key, msg string) }
			if errors.As(err, &se) {
				return c.settingError(se.Setting())
			}
			return err
		}
	}
	return nil
}

// checkListen returns what is wrong with a listen address, or "". Unix
// sockets (a path containing "/") are allowed unless tcpOnly.
func checkListen(addr string, tcpOnly bool) string {
	if strings.Contains(addr, "/") && !tcpOnly {
		return ""
	}
	want := "host:port or a unix socket path"
	if tcpOnly {
		want = "host:port"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("%q is not %s", addr, want)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Sprintf("%q is not %s", addr, want)
	}
	// Port 0 picks a free port, which is handy in tests.
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Sprintf("port %q is not a number from 0 to 65535", port)
	}
	return ""
}

// MinAdminTokenLen is the shortest admin.token accepted: a token guards key
// names and profiles on a network port, so a guessable one is refused.
const MinAdminTokenLen = 16

// checkToken returns what is wrong with an admin token, or "". The message
// never repeats the token.
func checkToken(tok string) string {
	if tok == "" {
		return ""
	}
	if len(tok) < MinAdminTokenLen {
		return fmt.Sprintf("must be at least %d characters (e.g. openssl rand -hex 32), got %d", MinAdminTokenLen, len(tok))
	}
	for i := 0; i < len(tok); i++ {
		// What an Authorization header can carry without quoting.
		if tok[i] <= ' ' || tok[i] >= 0x7f {
			return fmt.Sprintf("must be printable ASCII without spaces; character %d is not", i+1)
		}
	}
	return ""
}

func oneOf(s string, set ...string) bool {
	for _, x := range set {
		if s == x {
			return true
		}
	}
	return false
}
