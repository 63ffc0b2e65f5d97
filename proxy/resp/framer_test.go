package resp

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// frameAll runs a Framer over in, fed step bytes at a time (the caller
// keeps unconsumed bytes and appends the next step, as a connection reader
// does), and returns the end offset and kind of every value.
func frameAll(f *Framer, in []byte, step int) (ends []int, kinds []byte, err error) {
	pending, fed, base := []byte(nil), 0, 0
	for {
		n, done, err := f.Next(pending)
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
			if len(pending) != 0 || f.depth != 0 || f.state != stHeader {
				return ends, kinds, errors.New("input ended inside a value")
			}
			return ends, kinds, nil
		}
		next := min(fed+step, len(in))
		pending = append(pending, in[fed:next]...)
		fed = next
	}
}

func TestFramer(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		lim   Limits
		kinds string // kind of each value in order
		err   string // substring of the error, "" for none
	}{
		{name: "simple", in: "+OK\r\n", kinds: "+"},
		{name: "empty simple", in: "+\r\n", kinds: "+"},
		{name: "error", in: "-ERR bad\r\n", kinds: "-"},
		{name: "integer", in: ":-42\r\n:0\r\n", kinds: "::"},
		{name: "bulk", in: "$5\r\nhello\r\n", kinds: "$"},
		{name: "bulk crlf inside", in: "$4\r\n\r\n\r\n\r\n", kinds: "$"},
		{name: "empty bulk", in: "$0\r\n\r\n", kinds: "$"},
		{name: "null bulk", in: "$-1\r\n", kinds: "$"},
		{name: "array", in: "*2\r\n$3\r\nfoo\r\n:1\r\n", kinds: "*"},
		{name: "empty array", in: "*0\r\n", kinds: "*"},
		{name: "null array", in: "*-1\r\n", kinds: "*"},
		{name: "nested", in: "*2\r\n*2\r\n:1\r\n:2\r\n*0\r\n+x\r\n", kinds: "*+"},
		{name: "map", in: "%2\r\n+a\r\n:1\r\n+b\r\n*1\r\n:2\r\n", kinds: "%"},
		{name: "set", in: "~2\r\n+a\r\n+b\r\n", kinds: "~"},
		{name: "push", in: ">3\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n:1\r\n", kinds: ">"},
		{name: "null", in: "_\r\n", kinds: "_"},
		{name: "double", in: ",3.14\r\n,inf\r\n,-nan\r\n", kinds: ",,,"},
		{name: "boolean", in: "#t\r\n#f\r\n", kinds: "##"},
		{name: "big number", in: "(3492890328409238509324850943850943825024385\r\n", kinds: "("},
		{name: "verbatim", in: "=15\r\ntxt:Some string\r\n", kinds: "="},
		{name: "blob error", in: "!21\r\nSYNTAX invalid syntax\r\n", kinds: "!"},
		{name: "attribute", in: "|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n", kinds: "*"},
		{name: "attribute in array", in: "*2\r\n:1\r\n|1\r\n+ttl\r\n:3600\r\n:2\r\n+next\r\n", kinds: "*+"},
		{name: "nested attribute", in: "|1\r\n|1\r\n+a\r\n+b\r\n+k\r\n+v\r\n:1\r\n", kinds: ":"},
		{name: "empty attribute", in: "|0\r\n+x\r\n", kinds: "+"},
		{name: "streamed string", in: "$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;1\r\nd\r\n;0\r\n", kinds: "$"},
		{name: "streamed string empty", in: "$?\r\n;0\r\n+x\r\n", kinds: "$+"},
		{name: "streamed array", in: "*?\r\n:1\r\n:2\r\n*?\r\n.\r\n.\r\n", kinds: "*"},
		{name: "streamed map", in: "%?\r\n+a\r\n:1\r\n.\r\n", kinds: "%"},
		{name: "streamed set in array", in: "*2\r\n~?\r\n+a\r\n.\r\n:1\r\n", kinds: "*"},
		{name: "command", in: "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*1\r\n$4\r\nPING\r\n", kinds: "**"},
		{name: "line at limit", in: "+abc\r\n", lim: Limits{MaxInlineLen: 4}, kinds: "+"},
		{name: "bulk at limit", in: "$3\r\nabc\r\n", lim: Limits{MaxBulkLen: 3}, kinds: "$"},

		// Status and error lines over MaxInlineLen stream through.
		{name: "long simple string", in: "+abcd\r\n", lim: Limits{MaxInlineLen: 4}, kinds: "+"},
		{name: "long error", in: "-" + strings.Repeat("x", 70000) + "\r\n+OK\r\n", kinds: "-+"},
		{name: "long simple in array", in: "*2\r\n+" + strings.Repeat("y", 70000) + "\r\n:1\r\n", kinds: "*"},
		{name: "long simple at bulk limit", in: "+12345678\r\n", lim: Limits{MaxInlineLen: 4, MaxBulkLen: 8}, kinds: "+"},
		{name: "long simple over bulk limit", in: "+123456789\r\n", lim: Limits{MaxInlineLen: 4, MaxBulkLen: 8}, err: "too big reply line"},
		{name: "long simple lf only", in: "+" + strings.Repeat("a", 70000) + "\n", err: "expected CRLF"},
		{name: "long simple cr inside", in: "+abc\rdef\r\n", lim: Limits{MaxInlineLen: 4}, kinds: "+"},
		{name: "line over limit", in: ":12345\r\n", lim: Limits{MaxInlineLen: 4}, err: "too big reply line"},
		{name: "long line no lf", in: "$" + strings.Repeat("1", 70000), err: "too big reply line"},
		{name: "long chunk line", in: "$?\r\n;" + strings.Repeat("1", 70000), err: "too big reply line"},
		{name: "bulk over limit", in: "$4\r\nabcd\r\n", lim: Limits{MaxBulkLen: 3}, err: "invalid bulk length"},
		{name: "bulk over default", in: "$536870913\r\n", err: "invalid bulk length"},
		{name: "chunk over limit", in: "$?\r\n;4\r\n", lim: Limits{MaxBulkLen: 3}, err: "invalid bulk length"},
		{name: "bad type", in: "?x\r\n", err: "invalid type byte '?'"},
		{name: "bad type binary", in: "\x00\r\n", err: `invalid type byte '\x00'`},
		{name: "empty line", in: "\r\n", err: "invalid type byte"},
		{name: "lf only", in: "+OK\n", err: "expected CRLF"},
		{name: "bad bulk end", in: "$3\r\nabcXY", err: "expected CRLF after bulk data"},
		{name: "bad bulk end lf", in: "$3\r\nabc\rY", err: "expected CRLF after bulk data"},
		{name: "bad bulk len", in: "$x\r\n", err: "invalid bulk length"},
		{name: "negative bulk", in: "$-2\r\n", err: "invalid bulk length"},
		{name: "null verbatim", in: "=-1\r\n", err: "invalid bulk length"},
		{name: "bad array len", in: "*-2\r\n", err: "invalid multibulk length"},
		{name: "null map", in: "%-1\r\n", err: "invalid multibulk length"},
		{name: "map overflow", in: "%4611686018427387904\r\n", err: "invalid multibulk length"},
		{name: "attr overflow", in: "|9223372036854775807\r\n", err: "invalid multibulk length"},
		{name: "streamed push", in: ">?\r\n", err: "invalid multibulk length"},
		{name: "bad integer", in: ":1.5\r\n", err: "invalid integer"},
		{name: "bad boolean", in: "#x\r\n", err: "invalid boolean"},
		{name: "bad null", in: "_x\r\n", err: "invalid null"},
		{name: "dot at top", in: ".\r\n", err: "unexpected end"},
		{name: "dot in counted", in: "*1\r\n.\r\n", err: "unexpected end"},
		{name: "bad chunk", in: "$?\r\n+x\r\n", err: "expected ';'"},
		{name: "bad chunk len", in: "$?\r\n;-1\r\n", err: "invalid bulk length"},
		{name: "too deep", in: strings.Repeat("*2\r\n*1\r\n", MaxFrameRuns/2+1), err: "nesting too deep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, step := range []int{len(tt.in), 1, 2, 3, 7} {
				f := Framer{Limits: tt.lim}
				ends, kinds, err := frameAll(&f, []byte(tt.in), step)
				if tt.err != "" {
					var pe *ProtocolError
					if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.As(err, &pe) {
						t.Fatalf("step %d: err = %v, want *ProtocolError with %q", step, err, tt.err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				if string(kinds) != tt.kinds {
					t.Fatalf("step %d: kinds = %q, want %q", step, kinds, tt.kinds)
				}
				if ends[len(ends)-1] != len(tt.in) {
					t.Fatalf("step %d: last value ends at %d, want %d", step, ends[len(ends)-1], len(tt.in))
				}
			}
		})
	}
}

// TestFramerDeepNesting goes past the in-struct stack into the overflow.
func TestFramerDeepNesting(t *testing.T) {
	in := strings.Repeat("*1\r\n", 100) + ":1\r\n"
	var f Framer
	n, done, err := f.Next([]byte(in))
	if err != nil || !done || n != len(in) {
		t.Fatalf("n, done, err = %d, %v, %v; want %d, true, nil", n, done, err, len(in))
	}
	if f.Kind() != '*' {
		t.Fatalf("kind = %q", f.Kind())
	}
}

// TestFramerStreamsBody checks that a bulk body is consumed in pieces as
// they arrive, without the framer waiting for the whole of it.
func TestFramerStreamsBody(t *testing.T) {
	var f Framer
	n, done, err := f.Next([]byte("$10\r\nabc"))
	if err != nil || done || n != 8 {
		t.Fatalf("first: n, done, err = %d, %v, %v", n, done, err)
	}
	if f.Kind() != '$' {
		t.Fatalf("kind = %q before the body ended", f.Kind())
	}
	n, done, err = f.Next([]byte("defghij\r"))
	if err != nil || done || n != 8 {
		t.Fatalf("second: n, done, err = %d, %v, %v", n, done, err)
	}
	n, done, err = f.Next([]byte("\n+OK\r\n"))
	if err != nil || !done || n != 1 {
		t.Fatalf("third: n, done, err = %d, %v, %v", n, done, err)
	}
	if f.Kind() != '$' {
		t.Fatalf("kind after done = %q, want '$'", f.Kind())
	}
	n, done, err = f.Next([]byte("+OK"))
	if err != nil || done || n != 0 || f.Kind() != 0 {
		t.Fatalf("partial line: n, done, err, kind = %d, %v, %v, %q", n, done, err, f.Kind())
	}
}

func TestFramerErrorSticksUntilReset(t *testing.T) {
	var f Framer
	if _, _, err := f.Next([]byte("*1\r\n?\r\n")); err == nil {
		t.Fatal("no error for a bad type byte")
	}
	if _, _, err := f.Next([]byte("+OK\r\n")); err == nil {
		t.Fatal("error did not stick")
	}
	f.Reset()
	n, done, err := f.Next([]byte("+OK\r\n"))
	if err != nil || !done || n != 5 || f.Kind() != '+' {
		t.Fatalf("after Reset: n, done, err, kind = %d, %v, %v, %q", n, done, err, f.Kind())
	}
}

// TestFramerPartialHeaderNotConsumed checks that incomplete header lines
// stay with the caller.
func TestFramerPartialHeaderNotConsumed(t *testing.T) {
	var f Framer
	n, done, err := f.Next([]byte("*2\r\n:1\r\n:2"))
	if err != nil || done || n != 8 {
		t.Fatalf("n, done, err = %d, %v, %v; want 8, false, nil", n, done, err)
	}
	n, done, err = f.Next([]byte(":2\r\n"))
	if err != nil || !done || n != 4 {
		t.Fatalf("n, done, err = %d, %v, %v; want 4, true, nil", n, done, err)
	}
}

// TestFramerCommandMode checks the framer on client commands, which must
// end where CommandParser (and Redis) end them.
func TestFramerCommandMode(t *testing.T) {
	tests := []struct {
		name string
		in   string
		lim  Limits
		ends []int
		err  error
	}{
		{name: "set", in: "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", ends: []int{27}},
		{name: "two", in: "*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n", ends: []int{14, 28}},
		{name: "empty", in: "*0\r\n*-1\r\n", ends: []int{4, 9}},
		{name: "lenient ends", in: "*1\rX$4\rYPINGab", ends: []int{14}},
		{name: "binary body", in: "*1\r\n$4\r\n\r\n*1\r\n", ends: []int{14}},
		{name: "not a bulk", in: "*2\r\n$3\r\nGET\r\n:1\r\n", err: &ProtocolError{"expected '$', got ':'"}},
		{name: "bad count", in: "*x\r\n", err: ErrInvalidMultibulkLen},
		{name: "too many args", in: "*9\r\n", lim: Limits{MaxArgs: 8}, err: ErrInvalidMultibulkLen},
		{name: "bad bulk", in: "*1\r\n$-1\r\n", err: ErrInvalidBulkLen},
		{name: "bulk over limit", in: "*1\r\n$65\r\n", lim: Limits{MaxBulkLen: 64}, err: ErrInvalidBulkLen},
		{name: "long count line", in: "*12345", lim: Limits{MaxInlineLen: 4}, err: ErrTooBigMbulkCount},
		{name: "long bulk line", in: "*1\r\n$12345", lim: Limits{MaxInlineLen: 4}, err: ErrTooBigBulkCount},
		{name: "inline", in: "PING\r\n", err: &ProtocolError{"expected '*', got 'P'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, step := range []byte{255, 1, 3} {
				f := Framer{Limits: tt.lim, Command: true}
				ends, kinds, err := frameCuts(&f, []byte(tt.in), []byte{step})
				if tt.err != nil {
					if err == nil || err.Error() != tt.err.Error() {
						t.Fatalf("step %d: err %v, want %v", step, err, tt.err)
					}
					continue
				}
				if err != nil || !reflect.DeepEqual(ends, tt.ends) {
					t.Fatalf("step %d: ends %v err %v, want %v", step, ends, err, tt.ends)
				}
				for _, k := range kinds {
					if k != '*' {
						t.Fatalf("kind %q", k)
					}
				}
				// Parse agrees on the first command.
				var p CommandParser
				p.Limits = tt.lim
				if n, _, _, _ := p.Parse([]byte(tt.in), nil); n != tt.ends[0] {
					t.Fatalf("Parse n %d, framer %d", n, tt.ends[0])
				}
			}
		})
	}
}
