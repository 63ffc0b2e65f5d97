package proxy

import (
	"context"
	"errors"
	"net"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("proxy: server closed")

// Server accepts client connections and gives each a session with its own
// upstream connection.
type Server struct {
	opts Options
}

// New checks opts and fills in defaults. It opens nothing.
func New(opts Options) (*Server, error) {
	panic("todo")
}

// ListenAndServe listens on Options.Listen and serves until Shutdown.
func (s *Server) ListenAndServe() error { panic("todo") }

// Serve serves clients accepted on l until Shutdown; it then returns
// ErrServerClosed.
func (s *Server) Serve(l net.Listener) error { panic("todo") }

// Shutdown stops accepting, lets sessions finish replies already pending
// for up to ctx's deadline, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error { panic("todo") }

// Stats are cumulative counters for metrics.
type Stats struct {
	ClientsConnected  int64 // open client connections now
	ClientsTotal      int64 // accepted since start
	ClientsRejected   int64 // refused by MaxClients
	Commands          int64 // commands forwarded upstream
	UpstreamErrors    int64 // failed dials and lost upstream connections
	ProtocolErrors    int64 // malformed client input
	OutputLimitClosed int64 // clients closed for exceeding ClientOutputLimit
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats { panic("todo") }
