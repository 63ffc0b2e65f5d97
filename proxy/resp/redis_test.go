package resp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/exproxy/exproxy/internal/redistest"
)

// These tests hold the parsers to the real redis-server: the same bytes go
// to Redis over raw TCP and to the parser, and the outcomes must agree.

// dial connects to srv. The deadline only keeps a broken test from hanging
// forever; nothing asserts on time.
func dial(t *testing.T, srv *redistest.Server) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	return c, bufio.NewReader(c)
}

// readReply reads one RESP2 reply and decodes it into string, int64,
// error, nil or []any: just enough to compare what Redis parsed.
func readReply(br *bufio.Reader) (any, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return nil, fmt.Errorf("bad reply line %q", line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return errors.New(body), nil
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, err
		}
		return string(b[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readReply(br); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unexpected reply %q", line)
}

// TestParseErrorsMatchRedis sends each malformed command to redis-server
// and to Parse: the error line Redis replies with must be "-ERR " plus the
// ProtocolError's text, and Redis must then close the connection.
func TestParseErrorsMatchRedis(t *testing.T) {
	srv := redistest.Start(t)
	big := strings.Repeat("x", 70000)
	inputs := []string{
		"*x\r\n",
		"*\r\n",
		"*01\r\n",
		"*+1\r\n",
		"*-0\r\n",
		"*2147483648\r\n",
		"*3000000000\r\n",
		"*99999999999999999999\r\n",
		"*1\r\n$x\r\n",
		"*1\r\n$\r\n",
		"*1\r\n$-1\r\n",
		"*1\r\n$01\r\n",
		"*1\r\n$ 1\r\n",
		"*1\r\n$536870913\r\n",
		"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n",
		"*1\r\n\r\n",
		"*1\r\n\xff\r\n",
		"*1\rX\rY",
		"*" + big,
		"*1\x00\r\n" + big,
		"*1\r\n$" + big,
		"*1\r\n$1\x00\r\n" + big,
		big,
		strings.Repeat("y", 64<<10+1), // one byte over the limit
		"GET a\x00b\n" + big,
		`SET "a` + "\r\n",
		`SET 'a` + "\r\n",
		`SET "a"b` + "\r\n",
		`SET 'a'b` + "\r\n",
		`SET "a\` + "\r\n",
		`ECHO "a\"` + "\n",
	}
	var p CommandParser
	for _, in := range inputs {
		name := in
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			_, _, _, perr := p.Parse([]byte(in), nil)
			var pe *ProtocolError
			if !errors.As(perr, &pe) {
				t.Fatalf("Parse: err = %v, want a *ProtocolError", perr)
			}
			if in[0] == '*' {
				// The framer streaming a big command must fail the same way.
				cf := Framer{Command: true}
				if _, _, ferr := frameCuts(&cf, []byte(in), []byte{5}); ferr == nil || ferr.Error() != perr.Error() {
					t.Fatalf("command framer: err %v, Parse: %v", ferr, perr)
				}
			}
			c, br := dial(t, srv)
			go func() { _, _ = c.Write([]byte(in)) }() // Redis may close before reading all
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("reading Redis's reply: %v", err)
			}
			if want := "-ERR " + perr.Error() + "\r\n"; line != want {
				t.Fatalf("Redis replied %q, Parse says %q", line, want)
			}
			if rest, err := io.ReadAll(br); len(rest) != 0 || err != nil {
				t.Fatalf("after the error Redis sent %q, %v; want it to close", rest, err)
			}
		})
	}
}

// TestParseArgsMatchRedis checks that Parse splits commands into the same
// arguments Redis does. Each command is EVAL "return ARGV" 0 <args...>, so
// Redis echoes back the arguments it parsed.
func TestParseArgsMatchRedis(t *testing.T) {
	srv := redistest.Start(t)
	const eval = "EVAL \"return ARGV\" 0 "
	mb := func(args ...string) string {
		b := AppendArrayHeader(nil, len(args)+3)
		for _, a := range append([]string{"EVAL", "return ARGV", "0"}, args...) {
			b = AppendBulkString(b, a)
		}
		return string(b)
	}
	inputs := []string{
		eval + "a b c\r\n",
		eval + "a\n",
		eval + "  a \t b  \r\n",
		eval + "a\rb\r\n",
		eval + "\va\vb\fc \f\r\n",
		eval + `"a b" "\x41\x4a\x4" "\n\r\t\b\a\\\"\q\z"` + "\r\n",
		eval + `"\xZZ" "\xff\x00\X41"` + "\r\n",
		eval + `'a\'b' 'c\d' '' ""` + "\r\n",
		eval + `ab"c d" e'f g'` + "\r\n",
		eval + "\"a\"\vb\r\n",
		eval + "\"a\rb\"\r\n",
		eval + "'a\tb'\r\n",
		eval + "\xff\xfe \x80\r\n",
		eval + "*3\r\n",
		eval + "$3\r\n",
		// The longest inline line Redis's limit allows (64 KB + LF).
		eval + strings.Repeat("y", 64<<10-len(eval)) + "\n",
		mb("a", "", "\r\n", "\x00\xff"),
		mb(strings.Repeat("v", 100000)),
		// Redis skips the byte after '\r' and the two after a bulk unseen.
		"*4\rX$4\rYEVALab$11\r\nreturn ARGV\r\n$1\r\n0\r\n$3\r\nfooXY",
	}
	var p CommandParser
	for i, in := range inputs {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			n, args, _, err := p.Parse([]byte(in), nil)
			if err != nil || n != len(in) {
				t.Fatalf("Parse: n %d of %d, err %v", n, len(in), err)
			}
			want := make([]any, 0, len(args))
			for _, a := range args[3:] {
				want = append(want, string(a))
			}
			c, br := dial(t, srv)
			if _, err := c.Write([]byte(in)); err != nil {
				t.Fatal(err)
			}
			got, err := readReply(br)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Redis parsed %q, Parse %q", got, want)
			}
		})
	}
}

// TestParseEmptyCommandsMatchRedis checks the inputs Redis reads as a
// command with no arguments and answers with nothing at all.
func TestParseEmptyCommandsMatchRedis(t *testing.T) {
	srv := redistest.Start(t)
	var p CommandParser
	for _, in := range []string{"*0\r\n", "*-1\r\n", "*-10\r\n", "*-9223372036854775808\r\n", "\r\n", "\n", " \t\v\f\r\n"} {
		t.Run(fmt.Sprintf("%q", in), func(t *testing.T) {
			n, args, _, err := p.Parse([]byte(in), nil)
			if err != nil || n != len(in) || len(args) != 0 {
				t.Fatalf("Parse = %d, %q, %v; want %d, no args", n, args, err, len(in))
			}
			c, br := dial(t, srv)
			if _, err := c.Write([]byte(in + "PING\r\n")); err != nil {
				t.Fatal(err)
			}
			got, err := readReply(br)
			if err != nil || got != "PONG" {
				t.Fatalf("first reply %v, %v; want PONG (nothing for %q)", got, err, in)
			}
		})
	}
}

// TestFramerOnRedisReplies frames real replies, RESP2 and RESP3, from a
// batch of pipelined commands: every reply must be one value of the
// expected kind, and radix's reader must agree on every boundary.
func TestFramerOnRedisReplies(t *testing.T) {
	srv := redistest.Start(t, redistest.WithConfig("enable-debug-command", "yes"))
	type cmd struct {
		args []string
		kind byte
	}
	common := func(proto int) []cmd {
		k := func(k2, k3 byte) byte {
			if proto == 3 {
				return k3
			}
			return k2
		}
		return []cmd{
			{[]string{"SET", "s", "hello"}, '+'},
			{[]string{"GET", "s"}, '$'},
			{[]string{"GET", "missing"}, k('$', '_')},
			{[]string{"INCR", "n"}, ':'},
			{[]string{"SET", "big", strings.Repeat("b", 300000)}, '+'},
			{[]string{"GET", "big"}, '$'},
			{[]string{"LPUSH", "l", "a", "b\r\nc", ""}, ':'},
			{[]string{"LRANGE", "l", "0", "-1"}, '*'},
			{[]string{"SADD", "set", "x", "y"}, ':'},
			{[]string{"SMEMBERS", "set"}, k('*', '~')},
			{[]string{"HSET", "h", "f1", "v1", "f2", "v2"}, ':'},
			{[]string{"HGETALL", "h"}, k('*', '%')},
			{[]string{"ZADD", "z", "1.5", "m"}, ':'},
			{[]string{"ZSCORE", "z", "m"}, k('$', ',')},
			{[]string{"ZRANGE", "z", "0", "-1", "WITHSCORES"}, '*'},
			{[]string{"EXISTS", "s"}, ':'},
			{[]string{"BLPOP", "nolist", "0.01"}, k('*', '_')},
			{[]string{"NOSUCHCOMMAND"}, '-'},
			{[]string{"INFO", "server"}, k('$', '=')},
			{[]string{"CONFIG", "GET", "maxmemory*"}, k('*', '%')},
			{[]string{"XADD", "st", "*", "f", "v"}, '$'},
			{[]string{"XRANGE", "st", "-", "+"}, '*'},
			{[]string{"XINFO", "STREAM", "st"}, k('*', '%')},
			{[]string{"EVAL", "return {1, 'two', {ok='OK'}, {err='ERR inner'}, {3.5}}", "0"}, '*'},
			// Status and error lines far over MaxInlineLen, from Lua.
			{[]string{"EVAL", "return {err=string.rep('x', 100000)}", "0"}, '-'},
			{[]string{"EVAL", "return {ok=string.rep('y', 100000)}", "0"}, '+'},
			{[]string{"EVAL", "return redis.error_reply(string.rep('z', 100000))", "0"}, '-'},
			{[]string{"EVAL", "return {1, {ok=string.rep('w', 100000)}}", "0"}, '*'},
			{[]string{"MULTI"}, '+'},
			{[]string{"GET", "s"}, '+'},
			{[]string{"HGETALL", "h"}, '+'},
			{[]string{"EXEC"}, '*'},
			{[]string{"COMMAND", "INFO", "get", "set"}, '*'},
			{[]string{"COMMAND", "DOCS", "get"}, k('*', '%')},
			{[]string{"DEBUG", "PROTOCOL", "string"}, '$'},
			{[]string{"DEBUG", "PROTOCOL", "integer"}, ':'},
			{[]string{"DEBUG", "PROTOCOL", "double"}, k('$', ',')},
			{[]string{"DEBUG", "PROTOCOL", "bignum"}, k('$', '(')},
			{[]string{"DEBUG", "PROTOCOL", "null"}, k('$', '_')},
			{[]string{"DEBUG", "PROTOCOL", "array"}, '*'},
			{[]string{"DEBUG", "PROTOCOL", "set"}, k('*', '~')},
			{[]string{"DEBUG", "PROTOCOL", "map"}, k('*', '%')},
			{[]string{"DEBUG", "PROTOCOL", "attrib"}, k('$', '$')},
			{[]string{"DEBUG", "PROTOCOL", "verbatim"}, k('$', '=')},
			{[]string{"DEBUG", "PROTOCOL", "true"}, k(':', '#')},
			{[]string{"DEBUG", "PROTOCOL", "false"}, k(':', '#')},
		}
	}
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			cmds := append([]cmd{{[]string{"HELLO", strconv.Itoa(proto)}, map[int]byte{2: '*', 3: '%'}[proto]}}, common(proto)...)
			cmds = append(cmds, cmd{[]string{"ECHO", "end-of-batch"}, '$'})
			var out []byte
			for _, c := range cmds {
				out = AppendArrayHeader(out, len(c.args))
				for _, a := range c.args {
					out = AppendBulkString(out, a)
				}
			}
			c, br := dial(t, srv)
			if _, err := c.Write(out); err != nil {
				t.Fatal(err)
			}
			// Read until the sentinel reply ends the batch.
			var data []byte
			buf := make([]byte, 64<<10)
			for !bytes.HasSuffix(data, []byte("$12\r\nend-of-batch\r\n")) {
				n, err := br.Read(buf)
				if err != nil {
					t.Fatalf("after %d bytes: %v", len(data), err)
				}
				data = append(data, buf[:n]...)
			}
			var f Framer
			ends, kinds, err := frameAll(&f, data, len(data))
			if err != nil {
				t.Fatal(err)
			}
			if len(ends) != len(cmds) {
				t.Fatalf("framed %d replies to %d commands", len(ends), len(cmds))
			}
			for i, c := range cmds {
				if kinds[i] != c.kind {
					start := 0
					if i > 0 {
						start = ends[i-1]
					}
					t.Errorf("%v: kind %q, want %q; reply %.80q", c.args, kinds[i], c.kind, data[start:ends[i]])
				}
			}
			if proto == 3 {
				if !bytes.Contains(data, []byte("|1\r\n")) {
					t.Error("no attribute in the RESP3 replies: the test lost its point")
				}
			}
			for _, step := range []int{1, 7, 4096} {
				f.Reset()
				got, _, err := frameAll(&f, data, step)
				if err != nil || !reflect.DeepEqual(got, ends) {
					t.Fatalf("step %d: ends %v, %v; whole: %v", step, got, err, ends)
				}
			}
			want, err := radixEnds(data)
			if err != nil {
				t.Fatalf("radix: %v", err)
			}
			if !reflect.DeepEqual(ends, want) {
				t.Fatalf("framer ends %v, radix ends %v", ends, want)
			}
		})
	}
}

// TestFramerOnRedisPush frames RESP3 push messages (client-side caching
// invalidations), which arrive between ordinary replies.
func TestFramerOnRedisPush(t *testing.T) {
	srv := redistest.Start(t)
	c, br := dial(t, srv)
	var out []byte
	for _, args := range [][]string{
		{"HELLO", "3"}, {"CLIENT", "TRACKING", "on"}, {"GET", "k"}, {"SET", "k", "v"}, {"ECHO", "end-of-batch"},
	} {
		out = AppendArrayHeader(out, len(args))
		for _, a := range args {
			out = AppendBulkString(out, a)
		}
	}
	if _, err := c.Write(out); err != nil {
		t.Fatal(err)
	}
	var data []byte
	buf := make([]byte, 4096)
	for !bytes.HasSuffix(data, []byte("$12\r\nend-of-batch\r\n")) {
		n, err := br.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, buf[:n]...)
	}
	var f Framer
	_, kinds, err := frameAll(&f, data, 3)
	if err != nil {
		t.Fatal(err)
	}
	// HELLO, TRACKING, GET, then the invalidation push and SET's +OK in
	// either order, then ECHO.
	if len(kinds) != 6 || !bytes.Contains(kinds, []byte{'>'}) {
		t.Fatalf("kinds %q; want six values including a push", kinds)
	}
}

// TestParseInlineRandomMatchesRedis sends random inline lines built from
// the characters sdssplitargs treats specially, and checks that Redis and
// Parse split them into the same arguments or both refuse them.
func TestParseInlineRandomMatchesRedis(t *testing.T) {
	srv := redistest.Start(t)
	const eval = "EVAL \"return ARGV\" 0 "
	const alphabet = "ab x4F \t\v\f\r\"'\\\\\"'"
	r := rand.New(rand.NewPCG(5, 6))
	var c net.Conn
	var br *bufio.Reader
	var p CommandParser
	var refused, parsed int
	for i := 0; i < 2000; i++ {
		line := make([]byte, r.IntN(16))
		for j := range line {
			line[j] = alphabet[r.IntN(len(alphabet))]
		}
		in := eval + string(line) + "\r\n"
		n, args, _, perr := p.Parse([]byte(in), nil)
		if perr == nil && n != len(in) {
			t.Fatalf("%q: Parse consumed %d of %d", in, n, len(in))
		}
		if c == nil {
			c, br = dial(t, srv)
		}
		if _, err := c.Write([]byte(in)); err != nil {
			t.Fatal(err)
		}
		got, err := readReply(br)
		if err != nil {
			t.Fatalf("%q: reading reply: %v", in, err)
		}
		if rerr, ok := got.(error); ok {
			if perr == nil || rerr.Error() != "ERR "+perr.Error() {
				t.Fatalf("%q: Redis %v, Parse %v", in, rerr, perr)
			}
			c = nil // Redis closed it
			refused++
			continue
		}
		if perr != nil {
			t.Fatalf("%q: Redis parsed %q, Parse: %v", in, got, perr)
		}
		want := make([]any, 0, len(args))
		for _, a := range args[3:] {
			want = append(want, string(a))
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: Redis %q, Parse %q", in, got, want)
		}
		parsed++
	}
	if refused < 20 || parsed < 20 {
		t.Fatalf("%d refused, %d parsed: the generator no longer exercises both", refused, parsed)
	}
	t.Logf("%d lines refused by both, %d split identically", refused, parsed)
}

// TestParseMultibulkMutationsMatchRedis corrupts bytes of valid multibulk
// commands at random and checks that Redis and Parse agree on the outcome:
// the same protocol error, or the same arguments. Inputs that Parse says
// are incomplete are skipped, since Redis would wait for more.
func TestParseMultibulkMutationsMatchRedis(t *testing.T) {
	srv := redistest.Start(t)
	const mutants = "0123456789-$*\r\nx"
	r := rand.New(rand.NewPCG(7, 8))
	var p CommandParser
	var errorsSeen, argsSeen int
	for i := 0; i < 1500; i++ {
		args := []string{"EVAL", "return ARGV", "0"}
		for j := r.IntN(3); j >= 0; j-- {
			args = append(args, strings.Repeat("v", r.IntN(6)))
		}
		in := AppendArrayHeader(nil, len(args))
		for _, a := range args {
			in = AppendBulkString(in, a)
		}
		for j := 1 + r.IntN(2); j > 0; j-- {
			in[r.IntN(len(in))] = mutants[r.IntN(len(mutants))]
		}
		n, got, _, perr := p.Parse(in, nil)
		var want any
		switch {
		case perr != nil:
			want = errors.New("ERR " + perr.Error())
		case n == 0:
			continue // incomplete: Redis waits
		case len(got) < 3 || string(got[0]) != "EVAL" || string(got[1]) != "return ARGV" || string(got[2]) != "0":
			continue // no longer a command that echoes its arguments
		default:
			w := []any{}
			for _, a := range got[3:] {
				w = append(w, string(a))
			}
			want = w
		}
		c, br := dial(t, srv)
		go func() { _, _ = c.Write(in) }()
		reply, err := readReply(br)
		if err != nil {
			t.Fatalf("%q: reading reply: %v", in, err)
		}
		c.Close()
		if werr, ok := want.(error); ok {
			errorsSeen++
			if rerr, ok := reply.(error); !ok || rerr.Error() != werr.Error() {
				t.Fatalf("%q: Redis %q, Parse %v", in, reply, werr)
			}
			continue
		}
		argsSeen++
		if !reflect.DeepEqual(reply, want) {
			t.Fatalf("%q: Redis %q, Parse %q", in, reply, want)
		}
	}
	if errorsSeen < 50 || argsSeen < 50 {
		t.Fatalf("%d errors, %d parses compared: the mutations no longer exercise both", errorsSeen, argsSeen)
	}
	t.Logf("%d protocol errors and %d parses agree with Redis", errorsSeen, argsSeen)
}

// TestFramerStreamsRedis64MB sends a 64 MB SET to redis-server in 64 KB
// pieces, framing the command on the way out with a Command-mode framer,
// then GETs the value back and frames the reply through one reused 64 KB
// buffer: neither direction ever holds the value.
func TestFramerStreamsRedis64MB(t *testing.T) {
	srv := redistest.Start(t)
	c, _ := dial(t, srv)
	const size = 64 << 20
	piece := bytes.Repeat([]byte("\r\n*$"), 16<<10) // 64 KB that looks like RESP

	head := AppendArrayHeader(nil, 3)
	head = AppendBulkString(head, "SET")
	head = AppendBulkString(head, "big")
	head = AppendBulkHeader(head, size)
	cf := Framer{Command: true}
	send := func(b []byte, last bool) {
		t.Helper()
		n, done, err := cf.Next(b)
		if err != nil || n != len(b) || done != last {
			t.Fatalf("command framer: %d of %d, done %v, %v", n, len(b), done, err)
		}
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	send(head, false)
	for sent := 0; sent < size; sent += len(piece) {
		send(piece, false)
	}
	send([]byte("\r\n"), true)
	if _, err := c.Write([]byte("*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n")); err != nil {
		t.Fatal(err)
	}

	var f Framer
	buf := make([]byte, 64<<10)
	held := 0 // bytes at the start of buf the framer has not consumed
	var kinds []byte
	total := 0
	for len(kinds) < 2 {
		n, err := c.Read(buf[held:])
		if err != nil {
			t.Fatalf("after %d bytes: %v", total, err)
		}
		pending := buf[:held+n]
		for len(pending) > 0 {
			m, done, err := f.Next(pending)
			if err != nil {
				t.Fatal(err)
			}
			total += m
			pending = pending[m:]
			if done {
				kinds = append(kinds, f.Kind())
			}
			if m == 0 {
				break // a partial header line: keep it for the next read
			}
		}
		held = copy(buf, pending)
	}
	if string(kinds) != "+$" {
		t.Fatalf("reply kinds %q, want \"+$\"", kinds)
	}
	if want := len("+OK\r\n") + len("$67108864\r\n") + size + 2; total != want {
		t.Fatalf("framed %d bytes, want %d", total, want)
	}
}

// TestFramerOnRedisRecursiveReply frames Redis's reply to a Lua table that
// contains itself (Redis's own test suite: unit/scripting, "Script return
// recursive object"): arrays nested about 8,000 deep ending in an error,
// after which Redis keeps the connection. The reply is captured from the
// server in both protocols and framed whole and cut at random points.
func TestFramerOnRedisRecursiveReply(t *testing.T) {
	srv := redistest.Start(t)
	const script = "local a = {}; local b = {a}; a[1] = b; return a"
	r := rand.New(rand.NewPCG(13, 14))
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			c, br := dial(t, srv)
			var out []byte
			if proto == 3 {
				out = append(out, "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"...)
			}
			for _, args := range [][]string{{"EVAL", script, "0"}, {"ECHO", "end-of-batch"}} {
				out = AppendArrayHeader(out, len(args))
				for _, a := range args {
					out = AppendBulkString(out, a)
				}
			}
			if _, err := c.Write(out); err != nil {
				t.Fatal(err)
			}
			var data []byte
			buf := make([]byte, 64<<10)
			for !bytes.HasSuffix(data, []byte("$12\r\nend-of-batch\r\n")) {
				n, err := br.Read(buf)
				if err != nil {
					t.Fatalf("after %d bytes: %v (Redis closed the connection?)", len(data), err)
				}
				data = append(data, buf[:n]...)
			}
			// What the reply is, independently of the framer: a chain of
			// "*1" ending in the Lua stack error.
			start := 0
			if proto == 3 {
				var f Framer
				n, done, err := f.Next(data)
				if err != nil || !done || f.Kind() != '%' {
					t.Fatalf("HELLO reply: %d %v %v", n, done, err)
				}
				start = n
			}
			const leaf = "-ERR reached lua stack limit\r\n"
			evalEnd := len(data) - len("$12\r\nend-of-batch\r\n")
			reply := data[start:evalEnd]
			levels := bytes.Count(reply, []byte("*1\r\n"))
			if !bytes.Equal(reply, []byte(strings.Repeat("*1\r\n", levels)+leaf)) || levels < 5000 {
				t.Fatalf("unexpected reply shape (%d levels): %.200q", levels, reply)
			}
			t.Logf("RESP%d: %d levels, %d bytes", proto, levels, len(reply))
			want := []int{evalEnd, len(data)}
			wantKinds := "*$"
			if proto == 3 {
				want = append([]int{start}, want...)
				wantKinds = "%" + wantKinds
			}
			var f Framer
			ends, kinds, err := frameAll(&f, data, len(data))
			if err != nil || !reflect.DeepEqual(ends, want) || string(kinds) != wantKinds {
				t.Fatalf("whole: ends %v kinds %q err %v; want %v %q", ends, kinds, err, want, wantKinds)
			}
			for i := 0; i < 50; i++ {
				f.Reset()
				ends, kinds, err = frameSplit(&f, data, r)
				if err != nil || !reflect.DeepEqual(ends, want) || string(kinds) != wantKinds {
					t.Fatalf("split %d: ends %v kinds %q err %v; want %v", i, ends, kinds, err, want)
				}
			}
			for _, step := range []int{1, 5, 4096} {
				f.Reset()
				if ends, _, err = frameAll(&f, data, step); err != nil || !reflect.DeepEqual(ends, want) {
					t.Fatalf("step %d: ends %v err %v", step, ends, err)
				}
			}
		})
	}
}

// redisOutcome is everything a connection to Redis gives back for one
// input: the reply bytes, and whether Redis closed the connection.
type redisOutcome struct {
	reply  string
	closed bool
}

// modelOutcome is what the parser says Redis does with in: each command
// Parse frames is re-encoded cleanly and run on oracle (a connection that
// never sees malformed input) to get its reply; a protocol error adds
// Redis's error line and a close; an incomplete command leaves the
// connection open and waiting.
func modelOutcome(t *testing.T, oracle net.Conn, obr *bufio.Reader, in []byte) redisOutcome {
	t.Helper()
	var p CommandParser
	var clean []byte
	var out redisOutcome
	var tail string
	for len(in) > 0 {
		n, args, _, err := p.Parse(in, nil)
		if err != nil {
			tail, out.closed = "-ERR "+err.Error()+"\r\n", true
			break
		}
		if n == 0 {
			break // Redis waits for the rest
		}
		in = in[n:]
		if len(args) == 0 {
			continue // no reply
		}
		clean = AppendArrayHeader(clean, len(args))
		for _, a := range args {
			clean = AppendBulk(clean, a)
		}
	}
	const end = "$12\r\nend-of-batch\r\n"
	clean = append(clean, "*2\r\n$4\r\nECHO\r\n$12\r\nend-of-batch\r\n"...)
	if _, err := oracle.Write(clean); err != nil {
		t.Fatal(err)
	}
	var data []byte
	buf := make([]byte, 64<<10)
	for !bytes.HasSuffix(data, []byte(end)) {
		n, err := obr.Read(buf)
		if err != nil {
			t.Fatalf("oracle connection: %v after %q", err, data)
		}
		data = append(data, buf[:n]...)
	}
	out.reply = string(data[:len(data)-len(end)]) + tail
	return out
}

// sendToRedis writes in to a fresh connection and reads what comes back:
// until Redis closes when want says it will; otherwise until want's bytes
// have come (or a generous deadline passed) and then a short quiet spell,
// so that anything Redis sends beyond them, or a close, is seen too.
func sendToRedis(t *testing.T, srv *redistest.Server, in []byte, want redisOutcome) redisOutcome {
	t.Helper()
	c, br := dial(t, srv)
	go func() { _, _ = c.Write(in) }() // Redis may close before it read everything
	var got redisOutcome
	var data []byte
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(20 * time.Second)
	quiet := false
	for {
		if !want.closed && len(data) >= len(want.reply) && !quiet {
			deadline, quiet = time.Now().Add(300*time.Millisecond), true
		}
		_ = c.SetReadDeadline(deadline)
		n, err := br.Read(buf)
		data = append(data, buf[:n]...)
		if err != nil {
			var ne net.Error
			got.closed = !(errors.As(err, &ne) && ne.Timeout())
			break
		}
	}
	got.reply = string(data)
	return got
}

// TestParseByteExactMatchesRedis sends inputs at the edges of
// networking.c's reading to redis-server and compares everything Redis
// sends back, and whether it closes, with what CommandParser makes of the
// same bytes (each command it frames re-encoded and run on a clean
// connection). Only commands without side effects are used.
func TestParseByteExactMatchesRedis(t *testing.T) {
	srv := redistest.Start(t)
	oracle, obr := dial(t, srv)
	big := strings.Repeat("b", 40000) // over PROTO_MBULK_BIG_ARG (32 KB): Redis's big-argument path
	echo := func(s string) string { return "*2\r\n$4\r\nECHO\r\n$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n" }
	cases := []struct {
		name string
		in   string
	}{
		// Multibulk line ends: found by '\r', the next byte skipped unseen.
		{"bulk header ends in \\r\\xea", "*2\r\n$4\r\xeaECHO\r\n$4\r\nfz:e\r\n"},
		{"count ends in \\r\\xea", "*2\r\xea$4\r\nECHO\r\n$4\r\nfz:e\r\n"},
		{"\\r\\r line ends", "*1\r\r$4\r\rPING\r\r"},
		{"\\r then NUL", "*1\r\x00$4\r\x00PING\r\x00"},
		{"\\r\\n after \\r", "*1\r\r\n$4\r\nPING\r\n"},
		{"two bytes after a body unseen", "*2\r\n$4\r\nECHO\xff\xfe$4\r\nfz:e\xaa\xbb" + echo("next")},
		{"big argument then two bytes unseen", "*2\r\n$4\r\nECHO\r\n$40000\r\n" + big + "XY" + echo("after")},
		{"big argument last", "*2\r\n$4\r\nECHO\r\n$40000\r\n" + big + "\r\n"},
		{"big argument partly sent", "*2\r\n$4\r\nECHO\r\n$40000\r\n" + big[:1000]},
		// Counts.
		{"zero and negative counts", "*0\r\n*-1\r\n*-2147483649\r\n" + echo("x")},
		{"minus zero", "*-0\r\n"},
		{"plus sign", "*+1\r\n$4\r\nPING\r\n"},
		{"leading zero", "*01\r\n$4\r\nPING\r\n"},
		{"count INT_MAX waits", "*2147483647\r\n$4\r\nPING\r\n"},
		{"count INT_MAX+1", "*2147483648\r\n"},
		{"count with space", "*1 \r\n$4\r\nPING\r\n"},
		{"count lf only waits", "*1\n$4\nPING\n"},
		{"count cut after \\r waits", "*1\r"},
		// Bulk lengths.
		{"bulk plus sign", "*1\r\n$+4\r\nPING\r\n"},
		{"bulk leading zero", "*1\r\n$04\r\nPING\r\n"},
		{"bulk trailing space", "*1\r\n$4 \r\nPING\r\n"},
		{"bulk minus one", "*1\r\n$-1\r\n"},
		{"bulk at proto-max-bulk-len waits", "*1\r\n$536870912\r\nxx"},
		{"bulk over proto-max-bulk-len", "*1\r\n$536870913\r\n"},
		{"not a bulk", "*2\r\n$4\r\nECHO\r\n:1\r\n"},
		{"empty bulk header", "*1\r\n\r\n"},
		{"NUL at a bulk header waits", "*1\r\n\x00$4\r\nPING\r\n"},
		{"lf in place of the bulk header", "*1\r\n\n$4\r\nPING\r\n"},
		// Inline.
		{"inline lf only", "PING\nECHO a\n"},
		{"inline \\r\\r\\n", "PING\r\r\n"},
		{"inline \\r inside", "ECHO a\rb\r\n"},
		{"blank lines", "\r\n\n \t\r\n\v\f\n" + "PING\r\n"},
		{"dollar is inline", "$4\r\nPING\r\n"},
		{"space then star is inline", " *1\r\n$4\r\nPING\r\n"},
		{"quotes", "ECHO \"\\x41\\n\"\r\nECHO 'b\\'c'\r\nECHO \"a\"b\r\n"},
		{"inline NUL waits", "ECHO a\x00b\n"},
		{"inline then multibulk", "PING\r\n*1\r\n$4\r\nPING\r\n"},
		{"empty name", "*1\r\n$0\r\n\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := modelOutcome(t, oracle, obr, []byte(tc.in))
			got := sendToRedis(t, srv, []byte(tc.in), want)
			if got != want {
				t.Fatalf("input %q\n Redis: %q closed=%v\nParser: %q closed=%v", clipTo(tc.in, 200),
					clipTo(got.reply, 300), got.closed, clipTo(want.reply, 300), want.closed)
			}
		})
	}
}

func clipTo(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
