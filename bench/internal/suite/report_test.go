package suite

import (
	"math"
	"strings"
	"testing"
)

func runs(rps, cpuUS float64) []passRun {
	return []passRun{{rps: rps, cpuUSReq: cpuUS, ctxPerReq: 0.1}, {rps: rps, cpuUSReq: cpuUS, ctxPerReq: 0.1}}
}

// The best proxy of a row is marked per column, and exproxy's target is
// the best C proxy's CPU and ratio, whichever C proxy that is.
func TestSummarizePassTargets(t *testing.T) {
	direct := side{name: "direct"}
	ex := side{name: "exproxy", pid: 1}
	twem := side{name: "twemproxy", pid: 2, c: true}
	pred := side{name: "predixy", pid: 3, c: true}
	r := &passResult{
		sides: []side{direct, ex, twem, pred},
		runs: map[string][]passRun{
			"direct": runs(100, math.NaN()), "exproxy": runs(55, 9), "twemproxy": runs(50, 8), "predixy": runs(45, 7.5),
		},
		ratios: map[string][]float64{"exproxy": {0.55, 0.55}, "twemproxy": {0.5, 0.5}, "predixy": {0.45, 0.45}},
	}
	rows := summarizePass(r)
	byName := map[string]passRow{}
	for _, row := range rows {
		byName[row.sd.name] = row
	}
	if !byName["exproxy"].bestRatio || byName["twemproxy"].bestRatio || !byName["predixy"].bestCPU || byName["exproxy"].bestCPU {
		t.Fatalf("best marks wrong: %+v", rows)
	}
	exRow := byName["exproxy"]
	if exRow.targetCPU != 7.5 || exRow.targetRatio != 0.5 {
		t.Fatalf("targets %v %v, want predixy's CPU 7.5 and twemproxy's ratio 0.5", exRow.targetCPU, exRow.targetRatio)
	}
	cpuOK, ratioOK, ok := exRow.target()
	if !ok || cpuOK || !ratioOK {
		t.Fatalf("target() = %v %v %v, want CPU missed, ratio met", cpuOK, ratioOK, ok)
	}
	s := &Suite{main: &env{ex: ex}}
	if got := s.targetText(exRow); !strings.Contains(got, "CPU <= 7.50 MISSED") || !strings.Contains(got, "ratio >= 0.50 met") {
		t.Fatalf("targetText = %q", got)
	}

	// Without a C proxy there is nothing to compare with.
	r.sides = []side{direct, ex}
	for _, row := range summarizePass(r) {
		if row.sd.name == "exproxy" {
			if _, _, ok := row.target(); ok {
				t.Fatal("target without a C proxy")
			}
			if got := s.targetText(row); !strings.Contains(got, "no C proxy") {
				t.Fatalf("targetText = %q", got)
			}
		}
	}
}

func TestOCCRatios(t *testing.T) {
	a, b := occVariant{"excas", "exproxy"}, occVariant{"watch", "direct"}
	g := &occGroup{rounds: []map[occVariant]float64{{a: 10, b: 5}, {a: 6}, {a: 9, b: 3}}}
	got := g.ratios(a, b)
	if len(got) != 2 || got[0] != 2 || got[1] != 3 {
		t.Fatalf("ratios = %v, want [2 3] (a round missing one side is left out)", got)
	}
}

// The cluster rows start three more redis-servers: they run when named,
// with the cluster group and in the full run, never with --quick's
// default set nor with --only passthrough.
func TestClusterRowsSelection(t *testing.T) {
	names := func(c Config) string {
		var n []string
		for _, w := range (&Suite{cfg: c}).passWorkloads() {
			n = append(n, w.name)
		}
		return strings.Join(n, ",")
	}
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "p1-64B,p16-64B,p1-1KB,p1-16KB,c1000,idle1000,churn,p1-64B-auth,p1-64B-cluster,p16-64B-cluster"},
		{Config{Quick: true}, "p1-64B,p16-64B,p1-1KB,p1-16KB,c1000,idle1000,churn,p1-64B-auth"},
		{Config{Only: []string{"passthrough"}}, "p1-64B,p16-64B,p1-1KB,p1-16KB,c1000,idle1000,churn,p1-64B-auth"},
		{Config{Only: []string{"cluster"}, Quick: true}, "p1-64B-cluster,p16-64B-cluster"},
		{Config{Only: []string{"p1-64B-cluster", "p16-64B-cluster"}}, "p1-64B-cluster,p16-64B-cluster"},
		{Config{Only: []string{"p16-64B-cluster", "p1-64B"}, Quick: true}, "p1-64B,p16-64B-cluster"},
		{Config{Only: []string{"occ"}}, ""},
	}
	for _, tt := range tests {
		if got := names(tt.cfg); got != tt.want {
			t.Errorf("Only %v Quick %v: workloads %q, want %q", tt.cfg.Only, tt.cfg.Quick, got, tt.want)
		}
	}
	// The direct side of a cluster row is redis-benchmark --cluster; a
	// proxy side is plain redis-benchmark against the proxy.
	w := passWorkload{name: "p1-64B-cluster", cluster: true}
	if !clusterSide(w, side{name: "direct"}) || clusterSide(w, side{name: "exproxy", pid: 7}) || clusterSide(passWorkload{}, side{name: "direct"}) {
		t.Fatal("clusterSide")
	}
}

// churn runs redis-benchmark -k 0 (and no other row does), is cut by
// --quick, doubles with --busy, and its report says what its "request" is.
func TestChurnRow(t *testing.T) {
	s := &Suite{cfg: Config{Only: []string{"churn"}, Quick: true, Busy: true}}
	ws := s.passWorkloads()
	if len(ws) != 2 || ws[0].label() != "churn" || ws[1].label() != "churn/busy" {
		t.Fatalf("workloads %+v, want churn and churn/busy", ws)
	}
	if ws[0].requests != 6000 || ws[0].secs != 3 || !ws[0].reconnect || ws[0].clients != 50 || ws[0].pipeline != 1 || ws[0].size != 64 {
		t.Fatalf("churn workload %+v", ws[0])
	}
	if got := strings.Join(s.rbConfig(ws[0], "127.0.0.1:7000", "", false).Args(), " "); !strings.Contains(got, " -k 0 ") {
		t.Fatalf("churn args %q lack -k 0", got)
	}
	for _, w := range (&Suite{}).passWorkloads() {
		if got := strings.Join(s.rbConfig(w, "127.0.0.1:7000", "", false).Args(), " "); strings.Contains(got, "-k 0") != (w.name == "churn") {
			t.Errorf("%s: args %q", w.name, got)
		}
	}

	direct := side{name: "direct"}
	ex := side{name: "exproxy", pid: 1, ex: true}
	twem := side{name: "twemproxy", pid: 2, c: true}
	res := func(w passWorkload) *passResult {
		return &passResult{
			w: w, sides: []side{direct, ex, twem},
			runs:   map[string][]passRun{"direct": runs(12000, math.NaN()), "exproxy": runs(6000, 80), "twemproxy": runs(7000, 60)},
			ratios: map[string][]float64{"exproxy": {0.5, 0.5}, "twemproxy": {0.58, 0.58}},
		}
	}
	s.pass = []*passResult{res(ws[0]), res(ws[1])}
	var quiet, busy strings.Builder
	s.reportPassthrough(&quiet, false)
	s.reportPassthrough(&busy, true)
	for name, out := range map[string]string{"quiet": quiet.String(), "busy": busy.String()} {
		if strings.Count(out, "churn  ") != 1 || !strings.Contains(out, "churn: every request is a connection of its own") {
			t.Errorf("%s report lacks the churn row or its note:\n%s", name, out)
		}
		if !strings.Contains(out, "CPU <= 60.00 MISSED, ratio >= 0.58 MISSED") {
			t.Errorf("%s report lacks exproxy's target against twemproxy:\n%s", name, out)
		}
	}
}
