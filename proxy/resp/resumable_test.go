package resp

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// readLoop runs a parser the way a session's read loop does: input
// arrives in pieces (sizes from cuts, cycled), unconsumed bytes are kept
// and re-presented. It records every command and the error, if any.
func readLoop(parse func([]byte, [][]byte) (int, [][]byte, bool, error), in []byte, cuts []int) (out []string, err error) {
	var pending []byte
	fed, ci := 0, 0
	for {
		n, args, inline, err := parse(pending, nil)
		if err != nil {
			return out, err
		}
		if n > 0 {
			out = append(out, fmt.Sprintf("%v %q", inline, strs(args)))
			pending = pending[n:]
			continue
		}
		if fed == len(in) {
			return out, nil
		}
		step := max(1, cuts[ci%len(cuts)])
		ci++
		next := min(fed+step, len(in))
		pending = append(pending, in[fed:next]...)
		fed = next
	}
}

func TestResumableParser(t *testing.T) {
	many := AppendArrayHeader(nil, 1001)
	many = AppendBulkString(many, "SADD")
	for i := 0; i < 1000; i++ {
		many = AppendBulkString(many, fmt.Sprintf("m%d", i))
	}
	inputs := []string{
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\nPING\r\n*0\r\n*1\r\n$4\r\nPING\r\n",
		string(many) + "GET k\n" + string(many),
		"*1\rX$4\rYPINGab*1\r\n$4\r\nECHO\r\n",
		"*2\r\n$3\r\nGET\r\n:1\r\n",
		"*1\r\n$4\r\nPING\r\n*1\r\n$-3\r\n",
		"*1\r\n$4\r\nPING\r\n*1\x00\r\n" + strings.Repeat("x", 70000),
		`SET "a` + "\r\n",
	}
	for i, in := range inputs {
		for _, cuts := range [][]int{{1 << 30}, {1}, {3, 17, 1}, {100}} {
			var ref CommandParser
			want, werr := readLoop(ref.Parse, []byte(in), cuts)
			var rp ResumableParser
			got, gerr := readLoop(rp.Parse, []byte(in), cuts)
			if !reflect.DeepEqual(got, want) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
				t.Fatalf("input %d cuts %v:\n got %.200q %v\nwant %.200q %v", i, cuts, got, gerr, want, werr)
			}
			if len(want) == 0 && werr == nil {
				t.Fatalf("input %d parsed to nothing: the case lost its point", i)
			}
		}
	}
}

// FuzzResumableParser holds ResumableParser to CommandParser in a read
// loop with fuzzer-chosen read sizes.
func FuzzResumableParser(f *testing.F) {
	for _, s := range seedCommands {
		f.Add([]byte(s), []byte{3, 1}, false)
	}
	f.Fuzz(func(t *testing.T, data, cutBytes []byte, small bool) {
		cuts := []int{1 << 30}
		if len(cutBytes) > 0 {
			cuts = cuts[:0]
			for _, c := range cutBytes {
				cuts = append(cuts, int(c))
			}
		}
		lim := Limits{}
		if small {
			lim = smallLimits
		}
		ref := CommandParser{Limits: lim}
		want, werr := readLoop(ref.Parse, data, cuts)
		rp := ResumableParser{CommandParser: CommandParser{Limits: lim}}
		got, gerr := readLoop(rp.Parse, data, cuts)
		if !reflect.DeepEqual(got, want) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Fatalf("got %q %v, want %q %v", got, gerr, want, werr)
		}
	})
}

// BenchmarkTrickledCommand feeds a 10,000-argument command in 64-byte
// reads: CommandParser re-parses it from the start on every read,
// ResumableParser walks each byte once.
func BenchmarkTrickledCommand(b *testing.B) {
	cmd := AppendArrayHeader(nil, 10001)
	cmd = AppendBulkString(cmd, "SADD")
	for i := 0; i < 10000; i++ {
		cmd = AppendBulkString(cmd, fmt.Sprintf("m%05d", i))
	}
	run := func(b *testing.B, parse func([]byte, [][]byte) (int, [][]byte, bool, error)) {
		argv := make([][]byte, 0, 10001)
		b.SetBytes(int64(len(cmd)))
		b.ReportAllocs()
		for b.Loop() {
			for end := 64; ; end += 64 {
				end = min(end, len(cmd))
				n, _, _, err := parse(cmd[:end], argv)
				if err != nil {
					b.Fatal(err)
				}
				if n > 0 {
					break
				}
			}
		}
	}
	b.Run("CommandParser", func(b *testing.B) {
		var p CommandParser
		run(b, p.Parse)
	})
	b.Run("ResumableParser", func(b *testing.B) {
		var p ResumableParser
		run(b, p.Parse)
	})
}
