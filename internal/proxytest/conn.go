package proxytest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Conn is a raw connection: exact bytes both ways. Its methods fail the
// test on errors, except those ending in E, which return them; every
// read and write has an IOTimeout deadline.
type Conn struct {
	TB testing.TB
	C  net.Conn      // for what the helpers do not cover (CloseWrite, big copies)
	BR *bufio.Reader // reads of C go through it
}

// Dial opens a raw TCP connection to addr, closed when the test ends.
func Dial(tb testing.TB, addr string) *Conn {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, IOTimeout)
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return NewConn(tb, c)
}

// NewConn wraps a connection the test opened itself (and closes itself).
func NewConn(tb testing.TB, c net.Conn) *Conn {
	return &Conn{TB: tb, C: c, BR: bufio.NewReaderSize(c, 64<<10)}
}

// EncodeCommand renders args as a RESP multibulk command.
func EncodeCommand(args ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.Bytes()
}

// Write sends p.
func (r *Conn) Write(p []byte) {
	r.TB.Helper()
	if err := r.WriteE(p); err != nil {
		r.TB.Fatalf("write: %v", err)
	}
}

// WriteE sends p and returns the error.
func (r *Conn) WriteE(p []byte) error {
	_ = r.C.SetWriteDeadline(time.Now().Add(IOTimeout))
	_, err := r.C.Write(p)
	return err
}

// WriteString sends s.
func (r *Conn) WriteString(s string) { r.TB.Helper(); r.Write([]byte(s)) }

// Send sends one command.
func (r *Conn) Send(args ...string) { r.TB.Helper(); r.Write(EncodeCommand(args...)) }

// Read returns the next top-level RESP value, raw.
func (r *Conn) Read() string {
	r.TB.Helper()
	v, err := r.ReadE()
	if err != nil {
		r.TB.Fatalf("read reply: %v (got so far %q)", err, v)
	}
	return v
}

// ReadE returns the next top-level RESP value and the error, with what
// was read of the value before it.
func (r *Conn) ReadE() (string, error) {
	_ = r.C.SetReadDeadline(time.Now().Add(IOTimeout))
	var b bytes.Buffer
	err := ReadValue(r.BR, &b)
	return b.String(), err
}

// ReadN returns the next n top-level values.
func (r *Conn) ReadN(n int) []string {
	r.TB.Helper()
	out := make([]string, n)
	for i := range out {
		out[i] = r.Read()
	}
	return out
}

// Do sends one command and reads one value.
func (r *Conn) Do(args ...string) string {
	r.TB.Helper()
	r.Send(args...)
	return r.Read()
}

// ReadUntilEOF returns everything the peer sends until it closes; err is
// nil for a clean EOF (or a reset after the peer closed).
func (r *Conn) ReadUntilEOF() (string, error) {
	_ = r.C.SetReadDeadline(time.Now().Add(IOTimeout))
	b, err := io.ReadAll(r.BR)
	if err != nil && IsReset(err) {
		err = nil
	}
	return string(b), err
}

// IsReset reports a connection reset or broken pipe: how a peer that
// closed with unread input looks from this side.
func IsReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

// Close closes the connection.
func (r *Conn) Close() { _ = r.C.Close() }

// ReadValue copies one complete RESP2/RESP3 value from br to w. An
// attribute belongs to the value after it; a push is a value of its own.
func ReadValue(br *bufio.Reader, w *bytes.Buffer) error {
	line, err := br.ReadString('\n')
	w.WriteString(line)
	if err != nil {
		return err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return fmt.Errorf("bad RESP line %q", line)
	}
	typ, body := line[0], line[1:len(line)-2]
	switch typ {
	case '+', '-', ':', '_', ',', '#', '(':
		return nil
	case '$', '=', '!':
		n, err := strconv.Atoi(body)
		if err != nil {
			return fmt.Errorf("bad length in %q", line)
		}
		if n < 0 {
			return nil
		}
		_, err = io.CopyN(w, br, int64(n)+2)
		return err
	case '*', '~', '>', '%', '|':
		n, err := strconv.Atoi(body)
		if err != nil {
			return fmt.Errorf("bad count in %q", line)
		}
		if typ == '%' || typ == '|' {
			n *= 2
		}
		for i := 0; i < n; i++ {
			if err := ReadValue(br, w); err != nil {
				return err
			}
		}
		if typ == '|' {
			return ReadValue(br, w)
		}
		return nil
	}
	return fmt.Errorf("unknown RESP type in %q", line)
}
