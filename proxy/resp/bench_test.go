package resp

import (
	"bytes"
	"strings"
	"testing"
)

func setCommand(valueLen int) []byte {
	b := AppendArrayHeader(nil, 3)
	b = AppendBulkString(b, "SET")
	b = AppendBulkString(b, "key:000001")
	return AppendBulkString(b, strings.Repeat("v", valueLen))
}

// BenchmarkParseCommand measures framing client commands, the proxy's
// per-request cost; argv is reused as a session would reuse it.
func BenchmarkParseCommand(b *testing.B) {
	set := setCommand(64)
	var pipeline []byte
	for i := 0; i < 16; i++ {
		if i%2 == 0 {
			pipeline = append(pipeline, set...)
		} else {
			pipeline = append(pipeline, "*2\r\n$3\r\nGET\r\n$10\r\nkey:000001\r\n"...)
		}
	}
	inline := []byte("SET key:000001 " + strings.Repeat("v", 64) + "\r\n")
	cases := []struct {
		name string
		in   []byte
		cmds int
	}{
		{"set64", set, 1},
		{"pipeline16", pipeline, 16},
		{"inline_set64", inline, 1},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var p CommandParser
			argv := make([][]byte, 0, 8)
			b.SetBytes(int64(len(c.in)))
			b.ReportAllocs()
			for b.Loop() {
				buf, cmds := c.in, 0
				for len(buf) > 0 {
					n, args, _, err := p.Parse(buf, argv)
					if err != nil || n == 0 || len(args) == 0 {
						b.Fatalf("Parse: %d %v", n, err)
					}
					argv = args
					buf = buf[n:]
					cmds++
				}
				if cmds != c.cmds {
					b.Fatalf("%d commands, want %d", cmds, c.cmds)
				}
			}
		})
	}
}

// BenchmarkPeek measures the look at a command too large to buffer.
func BenchmarkPeek(b *testing.B) {
	head := setCommand(64 << 20)[:64]
	var p CommandParser
	argv := make([][]byte, 0, 8)
	b.ReportAllocs()
	for b.Loop() {
		argc, args, body, err := p.Peek(head, argv)
		if err != nil || argc != 3 || body == 0 {
			b.Fatalf("Peek: %d %d %v", argc, body, err)
		}
		argv = args
	}
}

// BenchmarkFramer measures framing typical replies, the proxy's per-reply
// cost.
func BenchmarkFramer(b *testing.B) {
	bulk64 := AppendBulkString(nil, strings.Repeat("v", 64))
	arr := AppendArrayHeader(nil, 10)
	for i := 0; i < 10; i++ {
		arr = AppendBulkString(arr, "member:0001")
	}
	hgetall3 := AppendMapHeader(nil, 5)
	for i := 0; i < 5; i++ {
		hgetall3 = AppendBulkString(hgetall3, "field")
		hgetall3 = AppendBulkString(hgetall3, "value")
	}
	var pipeline []byte
	for i := 0; i < 16; i++ {
		if i%2 == 0 {
			pipeline = append(pipeline, "+OK\r\n"...)
		} else {
			pipeline = append(pipeline, bulk64...)
		}
	}
	cases := []struct {
		name   string
		in     []byte
		values int
	}{
		{"ok", []byte("+OK\r\n"), 1},
		{"int", []byte(":12345\r\n"), 1},
		{"bulk64", bulk64, 1},
		{"null", []byte("$-1\r\n"), 1},
		{"array10", arr, 1},
		{"map5_resp3", hgetall3, 1},
		{"attribute_resp3", []byte("|1\r\n+ttl\r\n:3600\r\n$5\r\nvalue\r\n"), 1},
		{"bulk1MB", AppendBulk(nil, bytes.Repeat([]byte{'x'}, 1<<20)), 1},
		{"pipeline16", pipeline, 16},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var f Framer
			b.SetBytes(int64(len(c.in)))
			b.ReportAllocs()
			for b.Loop() {
				buf, values := c.in, 0
				for len(buf) > 0 {
					n, done, err := f.Next(buf)
					if err != nil || !done {
						b.Fatalf("Next: %d %v %v", n, done, err)
					}
					buf = buf[n:]
					values++
				}
				if values != c.values {
					b.Fatalf("%d values, want %d", values, c.values)
				}
			}
		})
	}
}

// TestZeroAllocs pins the zero-allocation promise outside benchmarks, so
// a regression fails the ordinary test run.
func TestZeroAllocs(t *testing.T) {
	set := setCommand(64)
	inline := []byte(`SET key "a b" 'c'` + "\r\n")
	var p CommandParser
	argv := make([][]byte, 0, 8)
	_, _, _, _ = p.Parse(inline, argv) // sizes the scratch space once
	reply := []byte("*2\r\n|1\r\n+a\r\n+b\r\n$3\r\nfoo\r\n%1\r\n+k\r\n~1\r\n:1\r\n")
	var f Framer
	checks := []struct {
		name string
		fn   func()
	}{
		{"Parse multibulk", func() { _, argv, _, _ = p.Parse(set, argv) }},
		{"Parse inline", func() { _, argv, _, _ = p.Parse(inline, argv) }},
		{"Peek", func() { _, argv, _, _ = p.Peek(set[:40], argv) }},
		{"ResumableParser", func() {
			var rp ResumableParser
			if n, _, _, _ := rp.Parse(set[:30], argv); n != 0 {
				t.Fatal("partial command parsed")
			}
			if n, args, _, _ := rp.Parse(set, argv); n != len(set) || len(args) != 3 {
				t.Fatal("command not parsed")
			}
		}},
		{"Framer", func() {
			if _, done, err := f.Next(reply); !done || err != nil {
				t.Fatal("reply not framed")
			}
		}},
	}
	for _, c := range checks {
		if a := testing.AllocsPerRun(100, c.fn); a != 0 {
			t.Errorf("%s: %v allocations per call", c.name, a)
		}
	}
}

// TestHugeClaimsAllocateNothing checks that what a peer claims never turns
// into an allocation: a 4 GB bulk, two billion arguments.
func TestHugeClaimsAllocateNothing(t *testing.T) {
	p := CommandParser{Limits: Limits{MaxBulkLen: 1 << 40}}
	argv := make([][]byte, 0, 4)
	claims := [][]byte{
		[]byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4294967296\r\nxyz"),
		[]byte("*2147483647\r\n$3\r\nSET\r\n"),
	}
	for _, in := range claims {
		a := testing.AllocsPerRun(10, func() {
			n, args, _, err := p.Parse(in, argv)
			if n != 0 || err != nil {
				t.Fatalf("Parse(%q) = %d, %v; want to wait", in, n, err)
			}
			argv = args
			argc, _, body, err := p.Peek(in, argv)
			if argc < 2 || body == 0 || err != nil {
				t.Fatalf("Peek(%q) = %d, %d, %v", in, argc, body, err)
			}
		})
		if a != 0 {
			t.Errorf("%q: %v allocations", in, a)
		}
	}
	var f Framer
	f.Limits.MaxBulkLen = 1 << 40
	if a := testing.AllocsPerRun(1, func() { _, _, _ = f.Next([]byte("$4294967296\r\nabc")) }); a != 0 {
		t.Errorf("Framer: %v allocations for a 4 GB claim", a)
	}
}

// TestFramerStreams64MB walks a 64 MB reply fed through one reused 64 KB
// buffer, as the proxy forwards it: the value ends exactly at its last byte
// and nothing of its size is ever held.
func TestFramerStreams64MB(t *testing.T) {
	const size = 64 << 20
	var f Framer
	head := []byte("$67108864\r\n")
	n, done, err := f.Next(head)
	if n != len(head) || done || err != nil {
		t.Fatalf("header: %d %v %v", n, done, err)
	}
	chunk := bytes.Repeat([]byte("\r\n$*"), 16<<10) // 64 KB of RESP-looking bytes
	for sent := 0; sent < size; sent += len(chunk) {
		n, done, err := f.Next(chunk)
		if n != len(chunk) || done || err != nil {
			t.Fatalf("at %d: %d %v %v", sent, n, done, err)
		}
	}
	n, done, err = f.Next([]byte("\r\n+OK\r\n"))
	if n != 2 || !done || err != nil || f.Kind() != '$' {
		t.Fatalf("end: %d %v %v %q", n, done, err, f.Kind())
	}
}
