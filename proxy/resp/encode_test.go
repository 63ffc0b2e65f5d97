package resp

import "testing"

func TestAppend(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"array header", AppendArrayHeader(nil, 3), "*3\r\n"},
		{"map header", AppendMapHeader(nil, 2), "%2\r\n"},
		{"bulk header", AppendBulkHeader(nil, 64<<20), "$67108864\r\n"},
		{"bulk", AppendBulk([]byte("x"), []byte("a\r\nb")), "x$4\r\na\r\nb\r\n"},
		{"empty bulk", AppendBulk(nil, nil), "$0\r\n\r\n"},
		{"bulk string", AppendBulkString(nil, "hello"), "$5\r\nhello\r\n"},
		{"null 2", AppendNull(nil, 2), "$-1\r\n"},
		{"null 3", AppendNull(nil, 3), "_\r\n"},
		{"error", AppendError(nil, "ERR bad"), "-ERR bad\r\n"},
		{"error newlines", AppendError(nil, "ERR a\r\nb"), "-ERR a  b\r\n"},
		{"simple", AppendSimple(nil, "OK"), "+OK\r\n"},
		{"simple empty", AppendSimple(nil, ""), "+\r\n"},
		{"int", AppendInt(nil, -9223372036854775808), ":-9223372036854775808\r\n"},
		{"command name", CommandName(nil, []byte("ExSeT_9")), "exset_9"},
		{"command name reuses", CommandName([]byte("zzzzzzzz"), []byte("GET")), "get"},
	}
	for _, tt := range tests {
		if string(tt.got) != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

// TestAppendRoundTrip frames what the helpers write, so encoder and
// parsers agree.
func TestAppendRoundTrip(t *testing.T) {
	cmd := AppendArrayHeader(nil, 3)
	cmd = AppendBulkString(cmd, "SET")
	cmd = AppendBulk(cmd, []byte("k"))
	cmd = AppendBulk(cmd, []byte("v\r\n"))
	var p CommandParser
	n, args, _, err := p.Parse(cmd, nil)
	if err != nil || n != len(cmd) || len(args) != 3 || string(args[2]) != "v\r\n" {
		t.Fatalf("Parse = %d, %q, %v", n, args, err)
	}
	var f Framer
	n, done, err := f.Next(cmd)
	if err != nil || !done || n != len(cmd) {
		t.Fatalf("Next = %d, %v, %v", n, done, err)
	}
}

func TestCommandNameAllocs(t *testing.T) {
	dst := make([]byte, 0, 32)
	name := []byte("HINCRBYFLOAT")
	if a := testing.AllocsPerRun(100, func() { dst = CommandName(dst, name) }); a != 0 {
		t.Fatalf("CommandName allocates %v per call", a)
	}
}
