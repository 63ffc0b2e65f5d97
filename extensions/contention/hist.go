package contention

import (
	"math/bits"
	"time"
)

// The WATCH→EXEC histogram is log-linear: one bucket below 16µs, then four
// equal buckets per power of two up to 2^34µs (about 4.8 hours), then one
// overflow bucket. The relative error of a quantile is at most 25% of the
// value, its memory a fixed 496 bytes, and histograms merge by adding.
const (
	histMinShift = 4  // first octave starts at 2^4 µs
	histMaxShift = 34 // last octave ends at 2^34 µs
	histSub      = 4  // buckets per octave
	histBuckets  = 1 + (histMaxShift-histMinShift)*histSub + 1
)

// hist counts durations; the zero value is empty.
type hist struct {
	n     [histBuckets]uint32
	sumUs uint64 // the durations added up, for Prometheus's _sum
}

func histIndex(us uint64) int {
	if us < 1<<histMinShift {
		return 0
	}
	o := bits.Len64(us) - 1
	if o >= histMaxShift {
		return histBuckets - 1
	}
	sub := int((us - 1<<o) * histSub >> o)
	return 1 + (o-histMinShift)*histSub + sub
}

// histUpper is the exclusive upper bound of bucket i in microseconds; the
// overflow bucket reports 2^35 µs.
func histUpper(i int) uint64 {
	if i == 0 {
		return 1 << histMinShift
	}
	if i >= histBuckets-1 {
		return 1 << (histMaxShift + 1)
	}
	o := histMinShift + (i-1)/histSub
	s := uint64((i-1)%histSub + 1)
	return 1<<o + s<<o/histSub
}

func (h *hist) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	us := uint64(d / time.Microsecond)
	h.sumUs += us
	i := histIndex(us)
	if h.n[i] < ^uint32(0) {
		h.n[i]++
	}
}

func (h *hist) merge(o *hist) {
	h.sumUs += o.sumUs
	for i, c := range o.n {
		s := uint64(h.n[i]) + uint64(c)
		if s > uint64(^uint32(0)) {
			s = uint64(^uint32(0))
		}
		h.n[i] = uint32(s)
	}
}

func (h *hist) total() uint64 {
	var t uint64
	for _, c := range h.n {
		t += uint64(c)
	}
	return t
}

// quantileMs returns the upper bound of the bucket holding quantile q, in
// milliseconds: an overestimate by at most one bucket, never an underestimate.
// It is 0 for an empty histogram.
func (h *hist) quantileMs(q float64) float64 {
	return quantileUpper(h.sparse(), q)
}

// sparse lists the non-empty buckets as (upper bound µs, count), ascending.
func (h *hist) sparse() []HistBucket {
	var out []HistBucket
	for i, c := range h.n {
		if c > 0 {
			out = append(out, HistBucket{UpperUs: histUpper(i), Count: uint64(c)})
		}
	}
	return out
}

// HistBucket is one non-empty histogram bucket as logged: durations below
// UpperUs microseconds (and at or above the previous bucket's bound).
type HistBucket struct {
	UpperUs uint64
	Count   uint64
}

// quantileUpper computes a quantile (0 < q <= 1) over ascending buckets, in
// milliseconds. The report uses it on merged logged histograms, so the live
// and the offline numbers are computed the same way.
func quantileUpper(b []HistBucket, q float64) float64 {
	var total uint64
	for _, x := range b {
		total += x.Count
	}
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total) + 0.999999999)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for _, x := range b {
		seen += x.Count
		if seen >= rank {
			return float64(x.UpperUs) / 1000
		}
	}
	return float64(b[len(b)-1].UpperUs) / 1000
}

// QuantileMs is quantileUpper for the report package: the merged histogram
// (any order; buckets with equal bounds are summed) and q in (0, 1].
func QuantileMs(b []HistBucket, q float64) float64 {
	return quantileUpper(sortBuckets(b), q)
}

func sortBuckets(b []HistBucket) []HistBucket {
	m := make(map[uint64]uint64, len(b))
	for _, x := range b {
		m[x.UpperUs] += x.Count
	}
	out := make([]HistBucket, 0, len(m))
	for u, c := range m {
		out = append(out, HistBucket{UpperUs: u, Count: c})
	}
	for i := 1; i < len(out); i++ { // insertion sort: at most ~120 buckets
		for j := i; j > 0 && out[j].UpperUs < out[j-1].UpperUs; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
