package resp

import (
	"bufio"
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/mediocregopher/radix/v4/resp"
	"github.com/mediocregopher/radix/v4/resp/resp3"
)

// frameSplit frames in with the input cut at random points, the way reads
// from a socket cut it.
func frameSplit(f *Framer, in []byte, r *rand.Rand) (ends []int, kinds []byte, err error) {
	var pending []byte
	fed, base := 0, 0
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
			if len(pending) != 0 {
				return ends, kinds, errors.New("bytes left over")
			}
			return ends, kinds, nil
		}
		step := 1 + r.IntN(64)
		if r.IntN(4) == 0 {
			step = 1 + r.IntN(1<<16)
		}
		next := min(fed+step, len(in))
		pending = append(pending, in[fed:next]...)
		fed = next
	}
}

// TestFramerRandomSplits checks that wherever the input is cut, the framer
// reports the boundaries and kinds the generator knows.
func TestFramerRandomSplits(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 300; iter++ {
		g := gen{r: r, resp3: iter%3 != 0, big: iter%10 == 0}
		data, wantEnds, wantKinds := g.stream(1 + r.IntN(30))
		var f Framer
		for _, split := range []string{"whole", "random"} {
			var ends []int
			var kinds []byte
			var err error
			if split == "whole" {
				ends, kinds, err = frameAll(&f, data, len(data))
			} else {
				ends, kinds, err = frameSplit(&f, data, r)
			}
			if err != nil {
				t.Fatalf("iter %d %s: %v\n%q", iter, split, err, data)
			}
			if !reflect.DeepEqual(ends, wantEnds) || !bytes.Equal(kinds, wantKinds) {
				t.Fatalf("iter %d %s: ends %v kinds %q; want %v %q", iter, split, ends, kinds, wantEnds, wantKinds)
			}
		}
	}
}

// radixEnds reads data with radix's RESP3 reader, one message at a time,
// and returns where each ends.
func radixEnds(data []byte) ([]int, error) {
	src := bytes.NewReader(data)
	br := bufio.NewReaderSize(src, 1<<20) // radix needs whole lines buffered
	opts := resp.NewOpts()
	var ends []int
	for {
		if _, err := br.Peek(1); err != nil {
			return ends, nil // all read
		}
		err := resp3.Unmarshal(br, nil, opts)
		var usable resp.ErrConnUsable
		if err != nil && !errors.As(err, &usable) {
			return ends, err
		}
		ends = append(ends, len(data)-src.Len()-br.Buffered())
	}
}

// TestFramerMatchesRadix compares boundaries with an independent RESP3
// implementation (radix v4's resp3 reader) on generated values.
func TestFramerMatchesRadix(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for iter := 0; iter < 300; iter++ {
		g := gen{r: r, resp3: iter%4 != 0, big: iter%25 == 0, topAttrs: true}
		data, _, _ := g.stream(1 + r.IntN(20))
		want, err := radixEnds(data)
		if err != nil {
			t.Fatalf("iter %d: radix: %v\n%q", iter, err, data)
		}
		var f Framer
		got, _, err := frameAll(&f, data, len(data))
		if err != nil {
			t.Fatalf("iter %d: %v", iter, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("iter %d: framer ends %v, radix ends %v\n%q", iter, got, want, data)
		}
	}
}
