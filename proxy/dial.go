package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/exproxy/exproxy/proxy/resp"
)

// refusal is a setup command that Redis answered with an error (a wrong
// password, a database out of range): Redis's own reply, for the client
// whose command asked for that setup.
type refusal struct {
	reply []byte // the complete error reply, e.g. "-WRONGPASS ...\r\n"
}

func (r *refusal) Error() string { return "refused: " + trimLine(r.reply) }

// dialUpstream opens a connection to Redis and sets it up as key says
// (AUTH, SELECT, HELLO 3, in one write, their replies read here). The
// dial runs on a goroutine of its own: dialling takes a deep stack
// (resolver, TLS), and a session goroutine that grew one would keep it
// for as long as the connection is idle, which is most of a sidecar's
// connections' lives.
func (s *Server) dialUpstream(ctx context.Context, key poolKey, cred *credentials) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		selectFirst := !s.authRequired.Load()
		c, err := s.dialSetUp(ctx, key, cred, selectFirst)
		var ref *refusal
		if errors.As(err, &ref) && bytes.HasPrefix(ref.reply, []byte("-NOPERM")) && key.user != "" && key.db != 0 {
			// The user may not SELECT, or the default user may not:
			// a client gets to such a state one way only, which the
			// other order is.
			c, err = s.dialSetUp(ctx, key, cred, !selectFirst)
		}
		ch <- result{c, err}
	}()
	r := <-ch
	return r.conn, r.err
}

// dialSetUp dials and sends the setup key asks for, SELECT before AUTH
// when selectFirst.
func (s *Server) dialSetUp(ctx context.Context, key poolKey, cred *credentials, selectFirst bool) (net.Conn, error) {
	c, err := s.dialNode(ctx, key.node)
	if err != nil {
		return nil, err
	}
	if setup, n := setupCommands(nil, key, cred, selectFirst); n > 0 {
		if err = handshake(c, setup, n, s.opts.DialTimeout); err != nil {
			_ = c.Close()
			return nil, err
		}
	}
	return c, nil
}

func (s *Server) dial(ctx context.Context) (net.Conn, error) {
	return s.dialAddr(ctx, s.opts.Upstream.Network, s.opts.Upstream.Addr)
}

// dialNode dials the upstream of a pool key's node: the one Redis, or a
// node of the cluster.
func (s *Server) dialNode(ctx context.Context, node int32) (net.Conn, error) {
	if node == 0 {
		return s.dial(ctx)
	}
	return s.dialAddr(ctx, "tcp", s.cluster.addr(node))
}

func (s *Server) dialAddr(ctx context.Context, network, addr string) (net.Conn, error) {
	u := s.opts.Upstream
	ctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if u.TLS != nil {
		cfg := u.TLS.Clone()
		if cfg.ServerName == "" && network == "tcp" {
			// Each node of a cluster by its own name.
			host, _, _ := net.SplitHostPort(addr)
			cfg.ServerName = host
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		return tc, nil
	}
	return conn, nil
}

// setupCommands appends to dst what makes a fresh connection what key
// says — authenticated as its user, in its database, speaking its
// protocol — and returns how many commands that is. Redis checks SELECT
// against the user who sends it and never checks the database again at
// AUTH, so the order matters to a user without SELECT permission (a
// client that selected before it authenticated): selectFirst sends
// SELECT before AUTH, which a Redis that requires a password refuses.
func setupCommands(dst []byte, key poolKey, cred *credentials, selectFirst bool) ([]byte, int) {
	n := 0
	if selectFirst && key.db != 0 {
		dst = appendSelect(dst, key.db)
		n++
	}
	if key.user != "" && cred != nil {
		if cred.named {
			dst = resp.AppendArrayHeader(dst, 3)
			dst = resp.AppendBulkString(dst, "AUTH")
			dst = resp.AppendBulkString(dst, cred.user)
		} else {
			dst = resp.AppendArrayHeader(dst, 2)
			dst = resp.AppendBulkString(dst, "AUTH")
		}
		dst = resp.AppendBulkString(dst, cred.pass)
		n++
	}
	if !selectFirst && key.db != 0 {
		dst = appendSelect(dst, key.db)
		n++
	}
	if key.proto == 3 {
		dst = append(dst, "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"...)
		n++
	}
	return dst, n
}

func appendSelect(dst []byte, db int32) []byte {
	dst = resp.AppendArrayHeader(dst, 2)
	dst = resp.AppendBulkString(dst, "SELECT")
	return resp.AppendBulkString(dst, strconv.Itoa(int(db)))
}

// handshake writes setup, n commands, and reads their n replies; the
// first error reply is returned as a *refusal.
func handshake(conn net.Conn, setup []byte, n int, timeout time.Duration) error {
	_ = conn.SetDeadline(time.Now().Add(timeout))
	defer conn.SetDeadline(time.Time{})
	if _, err := conn.Write(setup); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	var f resp.Framer
	f.Limits = replyLimits(resp.Limits{})
	var rb readBuf
	rb.init(4096)
	var refused *refusal
	for n > 0 {
		if rb.settle() && !rb.makeRoom(1<<20) {
			return errors.New("setup: reply line too long")
		}
		m, err := conn.Read(rb.free())
		rb.added(m)
		for n > 0 && rb.r < rb.w {
			before := rb.r
			k, done, ferr := f.Next(rb.data())
			if ferr != nil {
				return fmt.Errorf("setup: %w", ferr)
			}
			rb.r += k
			if !done {
				if k == 0 {
					break
				}
				continue
			}
			// An error reply is one line, framed in one step.
			if f.Kind() == '-' && refused == nil {
				refused = &refusal{reply: append([]byte(nil), rb.b[before:rb.r]...)}
			}
			n--
		}
		if n > 0 && err != nil {
			return fmt.Errorf("setup: %w", err)
		}
	}
	if refused != nil {
		return refused
	}
	return nil
}

func trimLine(b []byte) string {
	for i, c := range b {
		if c == '\r' || c == '\n' {
			return string(b[1:i])
		}
	}
	return string(b)
}
