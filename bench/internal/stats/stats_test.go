package stats

import (
	"math"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	s := Summarize([]float64{3, 1, math.NaN(), 2, 10})
	if s.Median != 2.5 || s.Min != 1 || s.Max != 10 || s.N != 4 {
		t.Fatalf("got %+v", s)
	}
	if got := Summarize([]float64{0.9, 0.7, 0.8}).Format("%.2f"); got != "0.80 [0.70..0.90]" {
		t.Fatalf("format = %q", got)
	}
	if Summarize(nil).Valid() || Summarize(nil).Format("%f") != "n/a" {
		t.Fatal("empty summary should be invalid")
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i))
	}
	if p := Percentile(ds, 50); p != 50 {
		t.Fatalf("p50 = %v", p)
	}
	if p := Percentile(ds, 99); p != 99 {
		t.Fatalf("p99 = %v", p)
	}
	if p := Percentile(nil, 50); p != 0 {
		t.Fatalf("empty p50 = %v", p)
	}
}
