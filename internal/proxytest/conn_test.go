package proxytest

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"testing/iotest"
)

// TestReadValue: one complete value of every RESP2/RESP3 type is read,
// and nothing after it, even when the input arrives a byte at a time.
func TestReadValue(t *testing.T) {
	for _, v := range []string{
		"+OK\r\n", "-ERR x\r\n", ":-12\r\n", "_\r\n", ",3.5\r\n", "#t\r\n", "(123456789012345678901234567890\r\n",
		"$-1\r\n", "$0\r\n\r\n", "$5\r\na\r\nbc\r\n", "=8\r\ntxt:abcd\r\n", "!3\r\nerr\r\n",
		"*-1\r\n", "*0\r\n", "*2\r\n$1\r\na\r\n*1\r\n:1\r\n", "~1\r\n+x\r\n", ">2\r\n+a\r\n+b\r\n",
		"%1\r\n+k\r\n:1\r\n", "|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n", // an attribute and the value it belongs to
	} {
		br := bufio.NewReader(iotest.OneByteReader(strings.NewReader(v + "+NEXT\r\n")))
		var w bytes.Buffer
		if err := ReadValue(br, &w); err != nil || w.String() != v {
			t.Errorf("ReadValue(%q) = %q, %v", v, w.String(), err)
		}
		if rest, _ := br.ReadString('\n'); rest != "+NEXT\r\n" {
			t.Errorf("after %q the next value reads %q", v, rest)
		}
	}
	for _, bad := range []string{"?\r\n", "x\n", "$x\r\n", "*2\r\n+a\r\n", "$3\r\nab"} {
		var w bytes.Buffer
		if err := ReadValue(bufio.NewReader(strings.NewReader(bad)), &w); err == nil {
			t.Errorf("ReadValue(%q) accepted it: %q", bad, w.String())
		}
	}
}

// FuzzReadValue: any input either fails or yields a prefix of the input
// that reads back as the same value.
func FuzzReadValue(f *testing.F) {
	for _, s := range []string{"+OK\r\n", "*2\r\n$1\r\na\r\n:1\r\n", "|1\r\n+a\r\n+b\r\n+c\r\n", "%1\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var w bytes.Buffer
		if err := ReadValue(bufio.NewReader(bytes.NewReader(in)), &w); err != nil {
			return
		}
		if !bytes.HasPrefix(in, w.Bytes()) {
			t.Fatalf("value %q is not a prefix of the input %q", w.Bytes(), in)
		}
		var again bytes.Buffer
		if err := ReadValue(bufio.NewReader(bytes.NewReader(w.Bytes())), &again); err != nil || !bytes.Equal(again.Bytes(), w.Bytes()) {
			t.Fatalf("value %q reads back as %q, %v", w.Bytes(), again.Bytes(), err)
		}
	})
}
