package contention

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestGrafanaDashboard keeps deploy/grafana-contention.json in step with
// the metrics: it is JSON with panels, and every contention metric its
// queries name is one the tracker exports.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/grafana-contention.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	tr, _, _ := newTestTracker(t, nil)
	ch := make(chan *prometheus.Desc, 64)
	tr.Collector().Describe(ch)
	close(ch)
	exported := map[string]bool{}
	name := regexp.MustCompile(`fqName: "([^"]+)"`)
	for desc := range ch {
		exported[name.FindStringSubmatch(desc.String())[1]] = true
	}
	used := regexp.MustCompile(`exproxy_contention_[a-z_]+`)
	var titles []string
	for _, p := range d.Panels {
		titles = append(titles, p.Title)
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range used.FindAllString(tg.Expr, -1) {
				m = strings.TrimSuffix(m, "_bucket")
				if !exported[m] {
					t.Errorf("panel %q queries %s, which the tracker does not export", p.Title, m)
				}
			}
		}
	}
	for _, want := range []string{"Aborts per second by key pattern", "Conflict ratio by key pattern", "Top invalidators", "WATCH→EXEC latency"} {
		if !strings.Contains(strings.Join(titles, "\n"), want) {
			t.Errorf("no panel %q in %q", want, titles)
		}
	}
}
