package contention

import (
	"testing"
	"time"
)

func TestHistBuckets(t *testing.T) {
	// Every bucket's bounds must be contiguous and increasing, and a value
	// must land in the bucket whose bounds hold it.
	prev := uint64(0)
	for i := 0; i < histBuckets; i++ {
		u := histUpper(i)
		if u <= prev {
			t.Fatalf("bucket %d upper %d not above %d", i, u, prev)
		}
		if i < histBuckets-1 {
			if histIndex(prev) != i || histIndex(u-1) != i {
				t.Fatalf("bucket %d [%d,%d): index(%d)=%d index(%d)=%d", i, prev, u, prev, histIndex(prev), u-1, histIndex(u-1))
			}
		}
		prev = u
	}
	if histIndex(1<<40) != histBuckets-1 {
		t.Error("huge value not in overflow bucket")
	}
}

func TestHistQuantiles(t *testing.T) {
	tests := []struct {
		name     string
		values   []time.Duration
		p50, p99 float64
	}{
		{"empty", nil, 0, 0},
		{"one", []time.Duration{time.Millisecond}, 1.024, 1.024},
		{"tiny", []time.Duration{3 * time.Microsecond, -time.Second}, 0.016, 0.016},
		{"skewed", append(repeat(100*time.Microsecond, 98), 2*time.Second, 2*time.Second), 0.112, 2097.152},
	}
	for _, tc := range tests {
		var h hist
		for _, v := range tc.values {
			h.add(v)
		}
		if p50, p99 := h.quantileMs(0.5), h.quantileMs(0.99); p50 != tc.p50 || p99 != tc.p99 {
			t.Errorf("%s: p50/p99 = %v/%v, want %v/%v", tc.name, p50, p99, tc.p50, tc.p99)
		}
		// Upper bounds never under-report: each quantile is at least the
		// true value.
		if n := len(tc.values); n > 0 {
			if got := h.quantileMs(1); got < float64(tc.values[n-1].Microseconds())/1000 {
				t.Errorf("%s: max %v under true", tc.name, got)
			}
		}
	}
	// Merging equals adding everything to one histogram.
	var a, b, all hist
	for i := 0; i < 100; i++ {
		d := time.Duration(i*i) * time.Microsecond
		all.add(d)
		if i%2 == 0 {
			a.add(d)
		} else {
			b.add(d)
		}
	}
	a.merge(&b)
	if a != all {
		t.Error("merge differs from adding")
	}
	if got, want := QuantileMs(append(b.sparse(), a.sparse()...), 0.99), quantileUpper(sortBuckets(append(a.sparse(), b.sparse()...)), 0.99); got != want {
		t.Errorf("QuantileMs order-dependent: %v vs %v", got, want)
	}
}

func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}
