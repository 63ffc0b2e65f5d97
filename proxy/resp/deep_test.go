package resp

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// refValue is a second, deliberately plain reading of one RESP2/RESP3
// reply value at data[pos:]: recursive descent over the complete input,
// with the Framer's strict rules (CRLF after every line and body) and
// default limits, but none of its resumability or its run-length frame
// stack. incomplete reports that data ends inside the value.
func refValue(data []byte, pos int) (end int, kind byte, incomplete bool, err error) {
	line := func(at int) (body []byte, next int, incomplete bool, err error) {
		i := bytes.IndexByte(data[at:], '\n')
		if i < 0 {
			return nil, 0, true, nil
		}
		if i == 0 || data[at+i-1] != '\r' {
			return nil, 0, false, errors.New("line end")
		}
		return data[at : at+i-1], at + i + 1, false, nil
	}
	body, next, inc, err := line(pos)
	if inc || err != nil {
		return 0, 0, inc, err
	}
	if len(body) == 0 {
		return 0, 0, false, errors.New("empty line")
	}
	t, s := body[0], body[1:]
	count := func() (int64, error) {
		n, ok := ParseInt(s)
		if !ok || n < 0 {
			return 0, errors.New("count")
		}
		return n, nil
	}
	elements := func(at int, n int64, streamed bool) (int, bool, error) {
		for i := int64(0); streamed || i < n; i++ {
			if streamed && at+3 <= len(data) && string(data[at:at+3]) == ".\r\n" {
				return at + 3, false, nil
			}
			e, _, inc, err := refValue(data, at)
			if inc || err != nil {
				return 0, inc, err
			}
			at = e
		}
		return at, false, nil
	}
	switch t {
	case '+', '-', ',', '(':
		return next, t, false, nil
	case ':':
		if _, ok := ParseInt(s); !ok {
			return 0, 0, false, errors.New("integer")
		}
		return next, t, false, nil
	case '#':
		if string(s) != "t" && string(s) != "f" {
			return 0, 0, false, errors.New("boolean")
		}
		return next, t, false, nil
	case '_':
		if len(s) != 0 {
			return 0, 0, false, errors.New("null")
		}
		return next, t, false, nil
	case '$', '=', '!':
		if t == '$' && string(s) == "-1" {
			return next, t, false, nil
		}
		at := next
		chunks := t == '$' && string(s) == "?"
		for {
			var n int64
			if chunks {
				cb, cn, inc, err := line(at)
				if inc || err != nil {
					return 0, 0, inc, err
				}
				if len(cb) == 0 || cb[0] != ';' {
					return 0, 0, false, errors.New("chunk")
				}
				v, ok := ParseInt(cb[1:])
				if !ok || v < 0 || v > DefaultLimits().MaxBulkLen {
					return 0, 0, false, errors.New("chunk length")
				}
				if v == 0 {
					return cn, t, false, nil
				}
				n, at = v, cn
			} else {
				v, err := count()
				if err != nil || v > DefaultLimits().MaxBulkLen {
					return 0, 0, false, errors.New("bulk length")
				}
				n = v
			}
			if int64(len(data)-at) < n+2 {
				return 0, 0, true, nil
			}
			e := at + int(n)
			if data[e] != '\r' || data[e+1] != '\n' {
				return 0, 0, false, errors.New("body end")
			}
			if !chunks {
				return e + 2, t, false, nil
			}
			at = e + 2
		}
	case '*', '%', '~', '>', '|':
		var end int
		var inc bool
		var err error
		if string(s) == "?" && (t == '*' || t == '%' || t == '~') {
			end, inc, err = elements(next, 0, true)
		} else if t == '*' && string(s) == "-1" {
			end = next
		} else {
			n, cerr := count()
			if cerr != nil || (t == '%' || t == '|') && n > (1<<63-1)/2 {
				return 0, 0, false, errors.New("count")
			}
			if t == '%' || t == '|' {
				n *= 2
			}
			end, inc, err = elements(next, n, false)
		}
		if inc || err != nil {
			return 0, 0, inc, err
		}
		if t == '|' {
			// The attribute belongs to the value after it.
			return refValue(data, end)
		}
		return end, t, false, nil
	}
	return 0, 0, false, errors.New("type byte")
}

// refEnds reads values from data with refValue until it ends, fails or
// holds an incomplete value.
func refEnds(data []byte) (ends []int, kinds []byte, err error) {
	pos := 0
	for pos < len(data) {
		end, kind, inc, err := refValue(data, pos)
		if err != nil {
			return ends, kinds, err
		}
		if inc {
			return ends, kinds, nil
		}
		ends, kinds = append(ends, end), append(kinds, kind)
		pos = end
	}
	return ends, kinds, nil
}

// deepGen writes one value nested levels deep: each level is an
// aggregate whose first element is the next level and whose other elements
// are small leaves. Levels come in runs of the same shape, as in real deep
// replies, with maps, attributes and streamed aggregates mixed in, so that
// the framer's runs of identical frames are built, split and ended in
// every order.
func deepGen(r *rand.Rand, levels int) []byte {
	var head []byte
	var closers [][]byte // per level, outermost first; written innermost first
	for levels > 0 {
		run := 1 + r.IntN(min(levels, 1+r.IntN(500)))
		levels -= run
		kind := r.IntN(7)
		extra := r.IntN(3) // elements after the nested one
		for i := 0; i < run; i++ {
			var closer []byte
			switch kind {
			case 0, 1, 2: // array, set or push of 1+extra
				head = append(head, "*~>"[kind])
				head = strconv.AppendInt(head, int64(1+extra), 10)
				head = append(head, '\r', '\n')
				closer = bytes.Repeat([]byte(":7\r\n"), extra)
			case 3: // map: the nested value is the first key
				head = append(head, '%')
				head = strconv.AppendInt(head, int64(1+extra), 10)
				head = append(head, '\r', '\n')
				closer = append([]byte("+v\r\n"), bytes.Repeat([]byte("+k\r\n$1\r\nv\r\n"), extra)...)
			case 4: // streamed array
				head = append(head, "*?\r\n"...)
				closer = append(bytes.Repeat([]byte("#t\r\n"), extra), ".\r\n"...)
			case 5: // an attribute before an array of one
				head = append(head, "|1\r\n+ttl\r\n:1\r\n*1\r\n"...)
			case 6: // an attribute whose first key is the nested value
				head = append(head, "|1\r\n"...)
				closer = []byte(":1\r\n+described\r\n")
			}
			closers = append(closers, closer)
		}
	}
	out := append(head, "-ERR reached lua stack limit\r\n"...)
	for i := len(closers) - 1; i >= 0; i-- {
		out = append(out, closers[i]...)
	}
	return out
}

// TestFramerDeepMatchesReference frames values nested up to 200,000 deep
// and checks the boundaries against refValue, whole and split at random
// points, with the frame stack staying small.
func TestFramerDeepMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for iter := 0; iter < 40; iter++ {
		levels := 1 + r.IntN(20000)
		if iter%10 == 0 {
			levels = 200000
		}
		v := deepGen(r, levels)
		data := append(append([]byte{}, v...), "+next\r\n"...)
		want, wantKinds, err := refEnds(data)
		if err != nil || len(want) != 2 {
			t.Fatalf("iter %d: reference: %v %v", iter, want, err)
		}
		var f Framer
		got, kinds, err := frameAll(&f, data, len(data))
		if err != nil || !reflect.DeepEqual(got, want) || !bytes.Equal(kinds, wantKinds) {
			t.Fatalf("iter %d (%d levels): ends %v %q %v, reference %v %q", iter, levels, got, kinds, err, want, wantKinds)
		}
		f.Reset()
		got, _, err = frameSplit(&f, data, r)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("iter %d split: ends %v %v, reference %v", iter, got, err, want)
		}
	}
}

// TestFramerDeepIdenticalCostsNothing: a million nested "*1" (what a
// self-containing Lua table gives, and more) is framed in constant memory,
// whole and a byte at a time, without one allocation.
func TestFramerDeepIdenticalCostsNothing(t *testing.T) {
	const levels = 1_000_000
	data := []byte(strings.Repeat("*1\r\n", levels) + "-ERR reached lua stack limit\r\n")
	var f Framer
	allocs := testing.AllocsPerRun(2, func() {
		n, done, err := f.Next(data)
		if err != nil || !done || n != len(data) || f.Kind() != '*' {
			t.Fatalf("Next = %d, %v, %v, kind %q", n, done, err, f.Kind())
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations for %d levels", allocs, levels)
	}
	// Fed in small pieces, the stack never holds more than one run.
	f.Reset()
	maxRuns := 0
	pending, fed := []byte(nil), 0
	for fed < len(data) || len(pending) > 0 {
		next := min(fed+3, len(data))
		pending = append(pending, data[fed:next]...)
		fed = next
		n, done, err := f.Next(pending)
		if err != nil {
			t.Fatal(err)
		}
		pending = pending[n:]
		maxRuns = max(maxRuns, f.runs)
		if done {
			break
		}
	}
	if maxRuns != 1 || f.depth != 0 || cap(f.more) != 0 {
		t.Fatalf("max runs %d, depth %d after the value, overflow capacity %d", maxRuns, f.depth, cap(f.more))
	}
}

// TestFramerRunsSplitAndEnd walks one shape step by step: runs of
// identical frames split when their innermost member moves on and end
// together when their last element arrives.
func TestFramerRunsSplitAndEnd(t *testing.T) {
	var f Framer
	steps := []struct {
		in          string
		depth, runs int
		done        bool
	}{
		{"*2\r\n*2\r\n*2\r\n", 3, 1, false}, // one run of three
		{":1\r\n", 3, 2, false},             // the innermost has one left: split off
		{":2\r\n", 2, 2, false},             // it ends; its parent moves on: split again
		{"*1\r\n*1\r\n", 4, 2, false},       // one left, like the middle *2: they join its run
		{":3\r\n", 1, 1, false},             // the run ends whole; the outer *2 has one left
		{":4\r\n", 0, 0, true},
	}
	for i, s := range steps {
		n, done, err := f.Next([]byte(s.in))
		if err != nil || n != len(s.in) || done != s.done || f.depth != s.depth || f.runs != s.runs {
			t.Fatalf("step %d %q: n %d done %v err %v depth %d runs %d; want depth %d runs %d done %v",
				i, s.in, n, done, err, f.depth, f.runs, s.depth, s.runs, s.done)
		}
	}
}

// TestFramerRunBound: the bound counts runs, not depth, and a run split
// at the bound still fits (push leaves room for it).
func TestFramerRunBound(t *testing.T) {
	// Distinct neighbours: every level is a run of its own.
	alt := strings.Repeat("*2\r\n*3\r\n", MaxFrameRuns/2)
	var f Framer
	n, _, err := f.Next([]byte(alt))
	if err != nil || n != len(alt) || f.runs != MaxFrameRuns {
		t.Fatalf("at the bound: n %d err %v runs %d", n, err, f.runs)
	}
	// An element splits the innermost *3 off its run: one run more than
	// the bound, which push allows for.
	if _, _, err := f.Next([]byte(":1\r\n")); err != nil || f.runs != MaxFrameRuns {
		t.Fatalf("after a leaf: err %v runs %d", err, f.runs)
	}
	if _, _, err := f.Next([]byte("*1\r\n")); err == nil || err.Error() != "Protocol error: nesting too deep" {
		t.Fatalf("past the bound: err %v", err)
	}
	// A single run is never too deep, however long.
	f.Reset()
	deep := strings.Repeat("*3\r\n", 3*MaxFrameRuns)
	if _, _, err := f.Next([]byte(deep)); err != nil || f.runs != 1 {
		t.Fatalf("one long run: err %v runs %d", err, f.runs)
	}
	// Splitting it as it completes stays within two runs.
	for i := 0; i < 1000; i++ {
		if _, _, err := f.Next([]byte(":1\r\n")); err != nil || f.runs > 2 {
			t.Fatalf("leaf %d: err %v runs %d", i, err, f.runs)
		}
	}
}
