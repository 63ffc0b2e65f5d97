package proxy

import (
	"crypto/tls"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/exproxy/exproxy/proxy/resp"
)

// Upstream says how to reach Redis.
type Upstream struct {
	Network string      // "tcp" or "unix"
	Addr    string      // host:port, or the socket path
	TLS     *tls.Config // non-nil for rediss://
	// Username, Password and DB are used only on the proxy's own
	// connections (loading Lua, health checks). Client sessions are
	// whoever the client authenticates as: the proxy authenticates a
	// connection for a client only with the credentials that client gave
	// and Redis accepted.
	Username string
	Password string
	DB       int
	// Cluster: the upstream is a Redis Cluster, found through Seeds
	// (host:port each; Addr is the first). The proxy reads the slot map
	// from it and routes each command to the primary of its keys' slot
	// (docs/cluster.md).
	Cluster bool
	Seeds   []string
}

// String names the upstream in errors and logs (never with credentials).
func (u Upstream) String() string {
	if u.Cluster {
		scheme := "redis+cluster://"
		if u.TLS != nil {
			scheme = "rediss+cluster://"
		}
		return scheme + strings.Join(u.seeds(), ",")
	}
	if u.Network == "unix" {
		return "unix:" + u.Addr
	}
	if u.TLS != nil {
		return "rediss://" + u.Addr
	}
	return u.Addr
}

// seeds are the addresses a cluster is first asked about.
func (u Upstream) seeds() []string {
	if len(u.Seeds) > 0 {
		return u.Seeds
	}
	return []string{u.Addr}
}

// ClusterOptions tune how the proxy follows a Redis Cluster upstream.
// Zero values take the defaults noted.
type ClusterOptions struct {
	// RefreshInterval is how often the slot map is read again without a
	// reason; default 5s.
	RefreshInterval time.Duration
	// MinRefreshInterval is the least time between two reads prompted by
	// MOVED, ASK, CLUSTERDOWN or a lost node connection; default 100ms.
	MinRefreshInterval time.Duration
	// FailoverWait bounds how long a command for a slot without a
	// reachable primary waits for the cluster to promote a replica before
	// the client gets an error; default 5s.
	FailoverWait time.Duration
	// MaxRedirects bounds the MOVED/ASK redirections (and TRYAGAIN
	// retries) one command follows; default 5.
	MaxRedirects int
}

// Options configure a Server. Zero values take the defaults noted.
type Options struct {
	Listen   string // "127.0.0.1:6380", or a unix socket path (contains "/")
	Upstream Upstream
	// Cluster tunes a Redis Cluster upstream (Upstream.Cluster).
	Cluster ClusterOptions

	DialTimeout  time.Duration // connecting upstream; default 2s
	WriteTimeout time.Duration // one write to a peer that does not drain; default 30s (0 in Options = default)

	MaxClients int         // default 10000; excess get "-ERR max number of clients reached"
	Limits     resp.Limits // default resp.DefaultLimits()
	// MaxPending bounds commands sent upstream and not yet answered per
	// session; the reader waits (backpressure) instead of buffering more.
	MaxPending int // default 100000
	// ClientOutputLimit bounds reply bytes buffered for a client that does
	// not read them; past it the client is disconnected and it is logged,
	// as Redis's client-output-buffer-limit does. Default 64 MB.
	ClientOutputLimit int64
	DrainTimeout      time.Duration // graceful shutdown; default 10s

	// Mode says how client sessions reach Redis: PinnedUpstream (the zero
	// value) gives each its own connection; SharedUpstream multiplexes
	// sessions onto SharedConns connections per pool, and gives a session
	// a connection of its own only while it holds state there.
	Mode        UpstreamMode
	SharedConns int // shared connections per pool (user, protocol, database); default 1
	// ReadyConns is how many upstream connections are kept dialled
	// before they are wanted, so that a session that needs a connection
	// of its own gets one without waiting for a connect. Default 2;
	// negative: none.
	ReadyConns int

	// ClientIO says how client connections are read: by an event loop
	// (the default, where the system has epoll) or by a goroutine per
	// client.
	ClientIO ClientIO

	Logger    *zap.Logger // default zap.NewNop()
	Rewriters []Rewriter  // in precedence order
	Observers []Observer
}

// UpstreamMode is how client sessions are mapped onto upstream connections.
type UpstreamMode uint8

const (
	// PinnedUpstream gives every client session its own upstream
	// connection for its whole life.
	PinnedUpstream UpstreamMode = iota
	// SharedUpstream runs sessions on connections shared with sessions
	// that Redis would see the same way (user, protocol, database), and
	// gives a session a connection of its own while it holds connection
	// state: a transaction, a subscription, a blocking command
	// (docs/proxy-core.md).
	SharedUpstream
)

// ParseUpstreamMode reads "pinned" or "shared".
func ParseUpstreamMode(s string) (UpstreamMode, bool) {
	switch s {
	case "pinned":
		return PinnedUpstream, true
	case "shared":
		return SharedUpstream, true
	}
	return 0, false
}

func (m UpstreamMode) String() string {
	if m == SharedUpstream {
		return "shared"
	}
	return "pinned"
}

// ClientIO is how client connections are read.
type ClientIO uint8

const (
	// DefaultClientIO is EventLoop where the system has epoll, else
	// GoroutinePerClient.
	DefaultClientIO ClientIO = iota
	// EventLoop reads every client from one goroutine that waits for them
	// all at once (docs/proxy-core.md).
	EventLoop
	// GoroutinePerClient gives every client a goroutine that reads it.
	GoroutinePerClient
)

// ParseClientIO reads "loop" or "goroutine".
func ParseClientIO(s string) (ClientIO, bool) {
	switch s {
	case "loop":
		return EventLoop, true
	case "goroutine":
		return GoroutinePerClient, true
	case "":
		return DefaultClientIO, true
	}
	return 0, false
}

func (c ClientIO) String() string {
	switch c {
	case EventLoop:
		return "loop"
	case GoroutinePerClient:
		return "goroutine"
	}
	return "default"
}
