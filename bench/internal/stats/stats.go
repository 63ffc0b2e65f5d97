// Package stats summarises per-round measurements. The machines this runs on
// are small and noisy, so figures are reported as the median of per-round
// values with their range, never as a single run.
package stats

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Summary is the median and range of a set of per-round values.
type Summary struct {
	Median, Min, Max float64
	N                int
}

// Summarize ignores NaN values (rounds that produced no figure).
func Summarize(xs []float64) Summary {
	var v []float64
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Summary{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	slices.Sort(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return Summary{Median: m, Min: v[0], Max: v[len(v)-1], N: len(v)}
}

// Valid reports whether any round produced a value.
func (s Summary) Valid() bool { return s.N > 0 }

// Format prints "median [min..max]" with the given verb for each number.
func (s Summary) Format(verb string) string {
	if !s.Valid() {
		return "n/a"
	}
	return fmt.Sprintf(verb+" ["+verb+".."+verb+"]", s.Median, s.Min, s.Max)
}

// Percentile returns the p-th percentile (0..100) of ds by nearest rank;
// ds is sorted in place.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(math.Ceil(p/100*float64(len(ds)))) - 1
	i = max(0, min(i, len(ds)-1))
	return ds[i]
}
