package resp

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// strs turns parsed arguments into strings for comparison.
func strs(args [][]byte) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = string(a)
	}
	return out
}

func TestParse(t *testing.T) {
	big := strings.Repeat("x", 70000)
	tests := []struct {
		name   string
		in     string
		lim    Limits
		n      int // -1: len(in)
		args   []string
		inline bool
		err    error
	}{
		{name: "multibulk", in: "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n", n: -1, args: []string{"SET", "k", "value"}},
		{name: "multibulk followed by more", in: "*1\r\n$4\r\nPING\r\n*1\r\n", n: 14, args: []string{"PING"}},
		{name: "empty bulk", in: "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", n: -1, args: []string{"ECHO", ""}},
		{name: "binary bulk", in: "*1\r\n$4\r\n\r\n\x00\n\r\n", n: -1, args: []string{"\r\n\x00\n"}},
		{name: "star zero", in: "*0\r\nPING\r\n", n: 4, args: []string{}},
		{name: "star minus one", in: "*-1\r\n", n: -1, args: []string{}},
		{name: "star minus ten", in: "*-10\r\n", n: -1, args: []string{}},
		// Redis skips the byte after '\r' and the two after a bulk unseen.
		{name: "lenient line end", in: "*1\rX$4\rYPINGab", n: -1, args: []string{"PING"}},
		{name: "partial header", in: "*3\r", n: 0},
		{name: "partial header no cr", in: "*3", n: 0},
		{name: "partial arg header", in: "*3\r\n$3", n: 0},
		{name: "partial arg", in: "*1\r\n$4\r\nPIN", n: 0},
		{name: "partial arg crlf", in: "*1\r\n$4\r\nPING\r", n: 0},
		{name: "huge claim waits", in: "*1\r\n$536870912\r\nabc", n: 0},
		{name: "nul before cr waits", in: "*1\x00\r\n$4\r\nPING\r\n", n: 0},
		{name: "invalid mbulk", in: "*x\r\n", err: ErrInvalidMultibulkLen},
		{name: "empty mbulk", in: "*\r\n", err: ErrInvalidMultibulkLen},
		{name: "leading zero mbulk", in: "*01\r\n", err: ErrInvalidMultibulkLen},
		{name: "plus mbulk", in: "*+1\r\n", err: ErrInvalidMultibulkLen},
		{name: "minus zero mbulk", in: "*-0\r\n", err: ErrInvalidMultibulkLen},
		{name: "mbulk over int max", in: "*2147483648\r\n", err: ErrInvalidMultibulkLen},
		{name: "mbulk over max args", in: "*3\r\n", lim: Limits{MaxArgs: 2}, err: ErrInvalidMultibulkLen},
		{name: "mbulk at max args", in: "*2\r\n$1\r\na\r\n$1\r\nb\r\n", lim: Limits{MaxArgs: 2}, n: -1, args: []string{"a", "b"}},
		{name: "mbulk overflow", in: "*99999999999999999999\r\n", err: ErrInvalidMultibulkLen},
		{name: "invalid bulk", in: "*1\r\n$x\r\n", err: ErrInvalidBulkLen},
		{name: "negative bulk", in: "*1\r\n$-1\r\n", err: ErrInvalidBulkLen},
		{name: "bulk over max", in: "*1\r\n$536870913\r\n", err: ErrInvalidBulkLen},
		{name: "bulk over limit", in: "*1\r\n$11\r\n", lim: Limits{MaxBulkLen: 10}, err: ErrInvalidBulkLen},
		{name: "unauthenticated mbulk over 10", in: "*11\r\n", lim: Limits{Unauthenticated: true}, err: ErrUnauthenticatedMultibulkLen},
		{name: "unauthenticated invalid mbulk first", in: "*x\r\n", lim: Limits{Unauthenticated: true}, err: ErrInvalidMultibulkLen},
		{name: "unauthenticated mbulk at 10 waits", in: "*10\r\n", lim: Limits{Unauthenticated: true}, n: 0},
		{name: "unauthenticated bulk over 16384", in: "*1\r\n$16385\r\n", lim: Limits{Unauthenticated: true}, err: ErrUnauthenticatedBulkLen},
		{name: "unauthenticated bulk at 16384 waits", in: "*1\r\n$16384\r\n", lim: Limits{Unauthenticated: true}, n: 0},
		{name: "unauthenticated negative bulk", in: "*1\r\n$-1\r\n", lim: Limits{Unauthenticated: true}, err: ErrInvalidBulkLen},
		{name: "bulk 4GB", in: "*1\r\n$4294967296\r\n", lim: Limits{MaxBulkLen: 1 << 40}, n: 0},
		{name: "expected dollar", in: "*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n", err: &ProtocolError{"expected '$', got 'f'"}},
		{name: "expected dollar cr", in: "*1\r\n\r\n", err: &ProtocolError{"expected '$', got ' '"}},
		{name: "too big mbulk count", in: "*" + big, err: ErrTooBigMbulkCount},
		{name: "too big bulk count", in: "*1\r\n$" + big, err: ErrTooBigBulkCount},
		{name: "mbulk line at limit waits", in: "*123", lim: Limits{MaxInlineLen: 4}, n: 0},
		{name: "mbulk line over limit", in: "*1234", lim: Limits{MaxInlineLen: 4}, err: ErrTooBigMbulkCount},
		{name: "mbulk long line with cr", in: "*1234\r\n", lim: Limits{MaxInlineLen: 4}, err: ErrTooBigMbulkCount},
		{name: "mbulk line at limit ok", in: "*123\r\n", lim: Limits{MaxInlineLen: 4}, n: 0},

		{name: "inline", in: "SET k v\r\n", n: -1, args: []string{"SET", "k", "v"}, inline: true},
		{name: "inline lf only", in: "PING\nPING\n", n: 5, args: []string{"PING"}, inline: true},
		{name: "inline empty", in: "\r\n", n: -1, args: []string{}, inline: true},
		{name: "inline blank", in: " \t \r\n", n: -1, args: []string{}, inline: true},
		{name: "inline partial", in: "SET k v", n: 0, inline: true},
		{name: "inline spaces", in: "  a   b  \n", n: -1, args: []string{"a", "b"}, inline: true},
		{name: "inline cr inside", in: "a\rb\n", n: -1, args: []string{"a", "b"}, inline: true},
		{name: "inline vt kept inside", in: "\va\vb c\n", n: -1, args: []string{"a\vb", "c"}, inline: true},
		{name: "inline dquote", in: `SET "a b" "\x41\x4a\n\r\t\b\a\\\"\q"` + "\n", n: -1,
			args: []string{"SET", "a b", "AJ\n\r\t\b\a\\\"q"}, inline: true},
		{name: "inline bad hex", in: `"\xZZ\x4"` + "\n", n: -1, args: []string{"xZZx4"}, inline: true},
		{name: "inline squote", in: `'a\'b' 'c\d' ''` + "\n", n: -1, args: []string{"a'b", `c\d`, ""}, inline: true},
		{name: "inline empty dquote", in: `"" x` + "\n", n: -1, args: []string{"", "x"}, inline: true},
		{name: "inline quote mid token", in: `ab"c d"e` + "\n", err: ErrUnbalancedQuotes, inline: true},
		{name: "inline quote joins", in: `ab"c d" e` + "\n", n: -1, args: []string{"abc d", "e"}, inline: true},
		{name: "inline squote mid token", in: `x'y z' w` + "\n", n: -1, args: []string{"xy z", "w"}, inline: true},
		{name: "inline unbalanced", in: `SET "a` + "\r\n", err: ErrUnbalancedQuotes, inline: true},
		{name: "inline unbalanced squote", in: `'a` + "\n", err: ErrUnbalancedQuotes, inline: true},
		{name: "inline trailing backslash", in: `"a\` + "\n", err: ErrUnbalancedQuotes, inline: true},
		{name: "inline quote then text", in: `"a"b` + "\n", err: ErrUnbalancedQuotes, inline: true},
		{name: "inline squote then text", in: `'a'b` + "\n", err: ErrUnbalancedQuotes, inline: true},
		{name: "inline quote then vt", in: "\"a\"\vb\n", n: -1, args: []string{"a", "b"}, inline: true},
		{name: "inline dquote keeps cr", in: "\"a\rb\"\r\n", n: -1, args: []string{"a\rb"}, inline: true},
		{name: "inline high bytes", in: "\xff\xfe \x80\n", n: -1, args: []string{"\xff\xfe", "\x80"}, inline: true},
		{name: "inline nul waits", in: "GET a\x00b\n", n: 0, inline: true},
		{name: "inline dollar", in: "$3\r\nfoo\r\n", n: 4, args: []string{"$3"}, inline: true},
		{name: "too big inline", in: big, err: ErrTooBigInline, inline: true},
		{name: "too big inline with lf", in: big + "\n", err: ErrTooBigInline, inline: true},
		{name: "inline at limit", in: "abcd\n", lim: Limits{MaxInlineLen: 4}, n: -1, args: []string{"abcd"}, inline: true},
		{name: "inline at limit crlf", in: "abc\r\n", lim: Limits{MaxInlineLen: 4}, n: -1, args: []string{"abc"}, inline: true},
		{name: "inline over limit", in: "abcde\n", lim: Limits{MaxInlineLen: 4}, err: ErrTooBigInline, inline: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := CommandParser{Limits: tt.lim}
			n, args, inline, err := p.Parse([]byte(tt.in), nil)
			if tt.err != nil {
				if err == nil || err.Error() != tt.err.Error() {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				var pe *ProtocolError
				if !errors.As(err, &pe) {
					t.Fatalf("err %T is not *ProtocolError", err)
				}
				if n != 0 {
					t.Fatalf("n = %d on error", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			want := tt.n
			if want < 0 {
				want = len(tt.in)
			}
			if n != want {
				t.Fatalf("n = %d, want %d", n, want)
			}
			if inline != tt.inline {
				t.Fatalf("inline = %v, want %v", inline, tt.inline)
			}
			if n == 0 {
				return
			}
			if got := strs(args); !reflect.DeepEqual(got, tt.args) {
				t.Fatalf("args = %q, want %q", got, tt.args)
			}
		})
	}
}

// TestParseAliases checks the zero-copy promise: multibulk arguments point
// into the input, and appending to one cannot overwrite the next.
func TestParseAliases(t *testing.T) {
	in := []byte("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
	var p CommandParser
	_, args, _, err := p.Parse(in, make([][]byte, 0, 4))
	if err != nil {
		t.Fatal(err)
	}
	if &args[0][0] != &in[8] {
		t.Fatal("args[0] does not alias the input")
	}
	_ = append(args[0], 'X')
	if string(in) != "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n" {
		t.Fatalf("append to an argument changed the input: %q", in)
	}
}

// TestParseInlineScratchReuse checks that inline arguments stay intact for
// the whole call even when the scratch space is reused across calls.
func TestParseInlineScratchReuse(t *testing.T) {
	var p CommandParser
	for i := 0; i < 3; i++ {
		line := fmt.Sprintf(`SET "k%d" '%s'`+"\n", i, strings.Repeat("v", i*100))
		_, args, _, err := p.Parse([]byte(line), nil)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"SET", fmt.Sprintf("k%d", i), strings.Repeat("v", i*100)}
		if got := strs(args); !reflect.DeepEqual(got, want) {
			t.Fatalf("args = %q, want %q", got, want)
		}
	}
}

func TestPeek(t *testing.T) {
	tests := []struct {
		name string
		in   string
		argc int
		args []string
		body int
		err  error
	}{
		{name: "empty", in: ""},
		{name: "partial header", in: "*3\r"},
		{name: "header only", in: "*3\r\n", argc: 3},
		{name: "partial name", in: "*3\r\n$3\r\nSE", argc: 3},
		{name: "name", in: "*3\r\n$3\r\nSET\r\n", argc: 3, args: []string{"SET"}, body: 13},
		{name: "name and key", in: "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$67108864\r\nxxx", argc: 3, args: []string{"SET", "k"}, body: 13},
		{name: "complete", in: "*2\r\n$4\r\nECHO\r\n$1\r\nx\r\n", argc: 2, args: []string{"ECHO", "x"}, body: 14},
		{name: "star zero", in: "*0\r\n"},
		{name: "inline", in: "SET k v"},
		{name: "error", in: "*2\r\n$3\r\nSET\r\n$-5\r\n", argc: 2, err: ErrInvalidBulkLen},
		{name: "bulk over max", in: "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870913\r\n", err: ErrInvalidBulkLen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p CommandParser
			argc, args, body, err := p.Peek([]byte(tt.in), nil)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if argc != tt.argc || body != tt.body {
				t.Fatalf("argc, body = %d, %d; want %d, %d", argc, body, tt.argc, tt.body)
			}
			if tt.args == nil {
				tt.args = []string{}
			}
			if got := strs(args); !reflect.DeepEqual(got, tt.args) {
				t.Fatalf("args = %q, want %q", got, tt.args)
			}
			if body > 0 && body < len(tt.in) && tt.in[body] != '$' {
				t.Fatalf("body %d does not point at a '$' header", body)
			}
		})
	}
}

func TestParseInt(t *testing.T) {
	tests := []struct {
		in string
		v  int64
		ok bool
	}{
		{"0", 0, true}, {"1", 1, true}, {"-1", -1, true}, {"42", 42, true},
		{"9223372036854775807", 1<<63 - 1, true},
		{"-9223372036854775808", -1 << 63, true},
		{"9223372036854775808", 0, false},
		{"-9223372036854775809", 0, false},
		{"18446744073709551616", 0, false},
		{"99999999999999999999", 0, false},
		{"", 0, false}, {"-", 0, false}, {"-0", 0, false}, {"00", 0, false},
		{"01", 0, false}, {"+1", 0, false}, {" 1", 0, false}, {"1 ", 0, false},
		{"1a", 0, false}, {"123456789012345678901", 0, false},
	}
	for _, tt := range tests {
		v, ok := ParseInt([]byte(tt.in))
		if v != tt.v || ok != tt.ok {
			t.Errorf("ParseInt(%q) = %d, %v; want %d, %v", tt.in, v, ok, tt.v, tt.ok)
		}
	}
}

func TestNameEnd(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
	}{
		{"*2\r\n$5\r\nEXGET\r\n$4\r\nfz:e\r\n", 15},
		{"*2\r\n$5\r\xeaEXGET\r\n$4\r\nfz:e\r\n", 15}, // Redis skips the byte after '\r'
		{"*2\rX$5\rYEXGETab$4\r\nfz:e\r\n", 15},
		{"*1\r\n$4\r\nPING\r\n", 14},
		{"*1\r\n$4\r\nPIN", 0},
		{"*1\r\n$4\r\nPING\r", 0},
		{"*0\r\n", 0},
		{"*-1\r\n", 0},
		{"*1\r\n:1\r\n", 0},
		{"PING\r\n", 0},
		{"*1\r\n$x\r\n", 0},
		{"", 0},
	} {
		if got := NameEnd([]byte(tt.in)); got != tt.want {
			t.Errorf("NameEnd(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
	cmd := []byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n")
	if a := testing.AllocsPerRun(10, func() { _ = NameEnd(cmd) }); a != 0 {
		t.Errorf("%v allocations", a)
	}
}
