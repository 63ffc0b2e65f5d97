package resp

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// smallLimits make the fuzzer reach every limit with short inputs.
var smallLimits = Limits{MaxBulkLen: 64, MaxInlineLen: 16, MaxArgs: 8}

// seedCommands are the fuzzers' starting points: well-formed commands and
// the malformed shapes from the unit tests.
var seedCommands = []string{
	"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n",
	"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
	"*0\r\n", "*-1\r\n", "\r\n", "PING\r\n", "SET k v\n",
	`SET "a b" "\x41\n" 'c\'d'` + "\r\n",
	`"a"b` + "\n", `'a` + "\n",
	"*1\rX$4\rYPINGab",
	"*1\x00\r\n", "GET a\x00b\n",
	"*x\r\n", "*1\r\n$-1\r\n", "*1\r\n$99999999999\r\n",
	"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n",
	"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n",
}

// FuzzParseCommand checks that Parse never panics, stays within its input,
// and gives the same answer however much of the input has arrived: a
// prefix either waits (n == 0, no error) or gives exactly the whole
// input's result. Peek must agree with Parse.
func FuzzParseCommand(f *testing.F) {
	for _, s := range seedCommands {
		f.Add([]byte(s), uint16(len(s)/2), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16, small bool) {
		p := CommandParser{}
		if small {
			p.Limits = smallLimits
		}
		// The top bit of cut reads the input as from an unauthenticated
		// client (it is reduced modulo the length below anyway).
		p.Limits.Unauthenticated = cut&0x8000 != 0
		n, args, inline, err := p.Parse(data, nil)
		if n < 0 || n > len(data) {
			t.Fatalf("n = %d outside [0, %d]", n, len(data))
		}
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) || n != 0 {
				t.Fatalf("err %v (%T) with n %d", err, err, n)
			}
		}
		whole := strs(args)

		// The same parse on a prefix.
		c := int(cut) % (len(data) + 1)
		q := CommandParser{Limits: p.Limits}
		pn, pargs, pinline, perr := q.Parse(data[:c], nil)
		switch {
		case pn == 0 && perr == nil:
			if err == nil && n > 0 && c >= n {
				t.Fatalf("prefix %d waits, but the whole input parsed %d bytes", c, n)
			}
		case perr != nil:
			if err == nil || err.Error() != perr.Error() {
				t.Fatalf("prefix %d: err %v; whole input: %v", c, perr, err)
			}
		default:
			if pn != n || err != nil || pinline != inline || !reflect.DeepEqual(strs(pargs), whole) {
				t.Fatalf("prefix %d: %d %q %v; whole: %d %q %v", c, pn, strs(pargs), perr, n, whole, err)
			}
		}

		if len(data) == 0 || data[0] != '*' {
			return
		}
		// The framer in Command mode must end the command where Parse
		// does, with the same error, however the input is cut.
		for _, cuts := range [][]byte{{255, 255, 255, 255}, {byte(cut), 1}} {
			cf := Framer{Limits: p.Limits, Command: true}
			ends, _, ferr := frameCuts(&cf, data, cuts)
			switch {
			case err != nil:
				if ferr == nil || ferr.Error() != err.Error() {
					t.Fatalf("command framer err %v, Parse err %v", ferr, err)
				}
			case n > 0:
				if len(ends) == 0 || ends[0] != n {
					t.Fatalf("command framer ends %v (err %v), Parse n %d", ends, ferr, n)
				}
			default:
				if len(ends) != 0 || ferr != nil {
					t.Fatalf("command framer ends %v err %v, Parse waits", ends, ferr)
				}
			}
		}
		argc, pk, body, kerr := p.Peek(data, nil)
		if (kerr == nil) != (err == nil) || (err != nil && kerr.Error() != err.Error()) {
			t.Fatalf("Peek err %v, Parse err %v", kerr, err)
		}
		if err != nil {
			return
		}
		peeked := strs(pk)
		if len(peeked) > len(whole) && n > 0 || len(peeked) > argc {
			t.Fatalf("Peek returned %d args of %d; Parse %d", len(peeked), argc, len(whole))
		}
		if n > 0 {
			if !reflect.DeepEqual(peeked, whole) || (argc > 0) != (len(whole) > 0) {
				t.Fatalf("Peek %d %q, Parse %q", argc, peeked, whole)
			}
		}
		if (body > 0) != (len(pk) > 0) || body > len(data) {
			t.Fatalf("body %d with %d args", body, len(pk))
		}
		if ne := NameEnd(data); !small && ne != body {
			t.Fatalf("NameEnd %d, Peek's body %d", ne, body)
		}
		if n > 0 && len(whole) > 0 {
			// Re-encoded, the arguments parse back to themselves.
			enc := AppendArrayHeader(nil, len(args))
			for _, a := range args {
				enc = AppendBulk(enc, a)
			}
			rn, rargs, _, rerr := p.Parse(enc, nil)
			if rerr != nil || rn != len(enc) || !reflect.DeepEqual(strs(rargs), whole) {
				t.Fatalf("re-encoded %q parsed to %d %q %v", enc, rn, strs(rargs), rerr)
			}
		}
	})
}

// frameCuts frames in fed in pieces cut at the given sizes (cycled; a
// zero size feeds one byte), and stops without error at the end of the
// input even inside a value.
func frameCuts(f *Framer, in []byte, cuts []byte) (ends []int, kinds []byte, err error) {
	var pending []byte
	fed, base, ci := 0, 0, 0
	for {
		n, done, err := f.Next(pending)
		if n < 0 || n > len(pending) || (done && n == 0) {
			return ends, kinds, errors.New("Next returned an impossible n")
		}
		if err != nil {
			return ends, kinds, err
		}
		pending = pending[n:]
		base += n
		if done {
			ends = append(ends, base)
			kinds = append(kinds, f.Kind())
			continue
		}
		if fed == len(in) {
			return ends, kinds, nil
		}
		step := 1
		if len(cuts) > 0 {
			step = max(1, int(cuts[ci%len(cuts)]))
			ci++
		}
		next := min(fed+step, len(in))
		pending = append(pending, in[fed:next]...)
		fed = next
	}
}

// FuzzFramer checks that the framer never panics, never claims more than
// it was given, and reports the same boundaries, kinds and error whether
// the input comes whole, a byte at a time, or cut where the fuzzer says.
func FuzzFramer(f *testing.F) {
	for _, s := range []string{
		"+OK\r\n", "-ERR x\r\n", ":1\r\n", "$3\r\nabc\r\n", "$-1\r\n", "*-1\r\n",
		"*2\r\n$3\r\nfoo\r\n:1\r\n", "%1\r\n+a\r\n:1\r\n", "~1\r\n+a\r\n",
		">2\r\n+a\r\n+b\r\n", "_\r\n", ",1.5\r\n", "#t\r\n", "(123\r\n",
		"=8\r\ntxt:abcd\r\n", "!3\r\nERR\r\n",
		"|1\r\n+a\r\n+b\r\n:1\r\n", "*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n",
		"$?\r\n;2\r\nab\r\n;0\r\n", "*?\r\n:1\r\n.\r\n", "%?\r\n+a\r\n+b\r\n.\r\n",
		// Deep nesting: runs of identical frames that split and end.
		strings.Repeat("*1\r\n", 3000) + "-ERR reached lua stack limit\r\n",
		strings.Repeat("*2\r\n", 50) + strings.Repeat(":1\r\n", 51),
		strings.Repeat("*2\r\n*1\r\n", 40) + strings.Repeat(":1\r\n", 41),
		strings.Repeat("|1\r\n", 30) + "+k\r\n" + strings.Repeat(":1\r\n+v\r\n", 30),
		strings.Repeat("*?\r\n", 20) + ":1\r\n" + strings.Repeat(".\r\n", 20),
		strings.Repeat("%1\r\n", 20) + "+k\r\n" + strings.Repeat("+v\r\n", 20),
	} {
		f.Add([]byte(s), []byte{3, 1, 7}, false)
	}
	for _, s := range seedCommands {
		f.Add([]byte(s), []byte{2}, true)
	}
	f.Fuzz(func(t *testing.T, data, cuts []byte, small bool) {
		lim := Limits{}
		if small {
			lim = smallLimits
		}
		whole := Framer{Limits: lim}
		ends, kinds, err := frameCuts(&whole, data, []byte{255, 255, 255, 255})
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("err %v is %T, not *ProtocolError", err, err)
			}
		}
		feeds := [][]byte{cuts}
		if len(data) <= 4096 {
			feeds = append(feeds, nil) // byte by byte
		}
		for _, c := range feeds {
			split := Framer{Limits: lim}
			sends, skinds, serr := frameCuts(&split, data, c)
			if !reflect.DeepEqual(sends, ends) || string(skinds) != string(kinds) {
				t.Fatalf("cuts %v: ends %v kinds %q; whole: %v %q", c, sends, skinds, ends, kinds)
			}
			if (serr == nil) != (err == nil) || (err != nil && serr.Error() != err.Error()) {
				t.Fatalf("cuts %v: err %v; whole: %v", c, serr, err)
			}
		}
		if !small {
			// A plain recursive reading of the same bytes (no resumption,
			// no runs of frames) finds the same values and fails where
			// the framer fails.
			rends, _, rerr := refEnds(data)
			if !reflect.DeepEqual(rends, ends) || (rerr == nil) != (err == nil) {
				t.Fatalf("reference ends %v err %v; framer %v %v", rends, rerr, ends, err)
			}
		}
		if err == nil && len(ends) > 0 {
			// Framing what was framed, value by value, from a fresh
			// framer after Reset, lands on the same boundaries.
			whole.Reset()
			start := 0
			for i, end := range ends {
				n, done, err := whole.Next(data[start:end])
				if err != nil || !done || n != end-start || whole.Kind() != kinds[i] {
					t.Fatalf("value %d again: %d %v %v %q", i, n, done, err, whole.Kind())
				}
				start = end
			}
		}
	})
}

// refSplitArgs is a second, deliberately literal transcription of sds.c's
// sdssplitargs (a NUL-terminated C string walked with a pointer), kept
// free of the fast paths in splitArgs so the two can be compared.
func refSplitArgs(line []byte) ([]string, bool) {
	s := append(append([]byte(nil), line...), 0) // the C string
	p := 0
	var out []string
	for {
		for s[p] != 0 && isSpace(s[p]) {
			p++
		}
		if s[p] == 0 {
			return out, true
		}
		var cur []byte
		inq, insq, done := false, false, false
		for !done {
			if inq {
				if s[p] == '\\' && s[p+1] == 'x' && isHex(s[p+2]) && isHex(s[p+3]) {
					cur = append(cur, unhex(s[p+2])*16+unhex(s[p+3]))
					p += 3
				} else if s[p] == '\\' && s[p+1] != 0 {
					p++
					c := s[p]
					switch c {
					case 'n':
						c = '\n'
					case 'r':
						c = '\r'
					case 't':
						c = '\t'
					case 'b':
						c = '\b'
					case 'a':
						c = '\a'
					}
					cur = append(cur, c)
				} else if s[p] == '"' {
					if s[p+1] != 0 && !isSpace(s[p+1]) {
						return nil, false
					}
					done = true
				} else if s[p] == 0 {
					return nil, false
				} else {
					cur = append(cur, s[p])
				}
			} else if insq {
				if s[p] == '\\' && s[p+1] == '\'' {
					p++
					cur = append(cur, '\'')
				} else if s[p] == '\'' {
					if s[p+1] != 0 && !isSpace(s[p+1]) {
						return nil, false
					}
					done = true
				} else if s[p] == 0 {
					return nil, false
				} else {
					cur = append(cur, s[p])
				}
			} else {
				switch s[p] {
				case ' ', '\n', '\r', '\t', 0:
					done = true
				case '"':
					inq = true
				case '\'':
					insq = true
				default:
					cur = append(cur, s[p])
				}
			}
			if s[p] != 0 {
				p++
			}
		}
		out = append(out, string(cur))
	}
}

// FuzzSplitArgs compares the inline tokenizer with the literal
// transcription above on lines without NUL or '\n' (Parse never hands
// it others).
func FuzzSplitArgs(f *testing.F) {
	for _, s := range []string{`a b`, `"a\x41\n" 'b\'c'`, `ab"c d"e`, "\va\vb", `"a\`, `'a'b`, `x'y z' w`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		if bytes.IndexByte(line, 0) >= 0 || bytes.IndexByte(line, '\n') >= 0 {
			return
		}
		var p CommandParser
		args, err := p.splitArgs(line, nil)
		want, ok := refSplitArgs(line)
		if ok != (err == nil) {
			t.Fatalf("%q: err %v, reference ok %v", line, err, ok)
		}
		if ok && !reflect.DeepEqual(strs(args), append([]string{}, want...)) {
			t.Fatalf("%q: %q, reference %q", line, strs(args), want)
		}
	})
}
