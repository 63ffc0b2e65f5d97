package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/exproxy/exproxy/config"
)

// The admin endpoint has public paths (/healthz, /readyz, /metrics), which
// the kubelet and Prometheus must reach without credentials, and private
// paths (/contention shows key names and client addresses, /debug/pprof/
// shows the process's memory profile and can keep a CPU busy). Who may read
// the private paths follows from two settings and where the endpoint
// listens; docs/configuration.md has the table.

// privateAccess says how the private paths are served.
type privateAccess int

const (
	// privateOpen: no token, and the endpoint listens on loopback only,
	// so only processes on this host (or in this pod) reach it.
	privateOpen privateAccess = iota
	// privateToken: admin.token is set and required, whatever the address.
	privateToken
	// privateOff: a non-loopback address and no token: 403.
	privateOff
	// privateUnauthenticated: a non-loopback address without a token, by
	// the operator's explicit choice (admin.allow-unauthenticated).
	privateUnauthenticated
)

// String is the value of the admin_private field of the start-up log line.
func (a privateAccess) String() string {
	return [...]string{"open (loopback)", "token", "off", "open (allow-unauthenticated)"}[a]
}

// adminOptions configure the admin endpoint.
type adminOptions struct {
	// pprof mounts Go's profiler under /debug/pprof/.
	pprof bool
	// access is decided by resolveAccess from the bound address.
	access privateAccess
	// tokenHash is the SHA-256 of admin.token: comparing hashes takes the
	// same time whatever the length of the guess.
	tokenHash [sha256.Size]byte
	// listen is admin.listen as the operator wrote it, for the 403 message.
	listen string
	// secrets are masked in the command line /debug/pprof/cmdline shows.
	secrets []string
}

// newAdminOptions maps the admin settings; addr is the address the
// listener actually bound (so "localhost" or ":0" are judged by what they
// became).
func newAdminOptions(cfg *config.Config, addr string) adminOptions {
	o := adminOptions{pprof: cfg.Admin.Pprof, listen: cfg.Admin.Listen, secrets: cfg.Secrets()}
	switch {
	case cfg.Admin.Token != "":
		o.access = privateToken
		o.tokenHash = sha256.Sum256([]byte(cfg.Admin.Token))
	case isLoopback(addr):
		o.access = privateOpen
	case cfg.Admin.AllowUnauthenticated:
		o.access = privateUnauthenticated
	default:
		o.access = privateOff
	}
	return o
}

// isLoopback reports whether a bound host:port accepts connections from
// this host only. A wildcard (0.0.0.0, ::), a host name or anything that
// does not parse is not loopback.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	host, _, _ = strings.Cut(host, "%") // an IPv6 zone
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// private guards a private path according to o.access.
func (o *adminOptions) private(h http.Handler) http.Handler {
	switch o.access {
	case privateOpen, privateUnauthenticated:
		return h
	case privateToken:
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !o.authorized(r) {
				// Both challenges: Bearer for curl and scripts, Basic so
				// that a browser or `go tool pprof http://:TOKEN@host/...`
				// can send the token too.
				w.Header().Add("WWW-Authenticate", `Bearer realm="exproxy admin"`)
				w.Header().Add("WWW-Authenticate", `Basic realm="exproxy admin"`)
				http.Error(w, "unauthorized: this path needs the admin token (Authorization: Bearer <admin.token>)", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, fmt.Sprintf("forbidden: %s shows key names, client addresses or process memory, and the admin endpoint listens on %s, beyond loopback; "+
			"set admin.token (EXPROXY_ADMIN_TOKEN) to serve it to holders of the token, or admin.allow-unauthenticated to serve it to anyone",
			r.URL.Path, o.listen), http.StatusForbidden)
	})
}

// authorized checks the request's bearer token, or the password of its
// basic auth, against admin.token in constant time.
func (o *adminOptions) authorized(r *http.Request) bool {
	var got string
	if _, pass, ok := r.BasicAuth(); ok {
		got = pass
	} else {
		scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return false
		}
		got = strings.TrimLeft(tok, " ")
	}
	h := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(h[:], o.tokenHash[:]) == 1
}
