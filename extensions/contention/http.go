package contention

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Handler serves the live state as JSON: {"current": Window, "last": Window}
// where current is the window in progress (ranked by conflicts, without the
// threshold setting, so quiet activity shows too) and last the most
// recent complete window (null before the first one ends). The query
// parameter top=N (1..1000) overrides the configured top. Only GET and
// HEAD are served. cmd/exproxy mounts it at /contention on the admin server.
func (t *Tracker) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		top := t.cfg.Top
		if s := r.URL.Query().Get("top"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 1000 {
				http.Error(w, "top: want an integer in 1..1000", http.StatusBadRequest)
				return
			}
			top = n
		}
		cur, last := t.snapshot(top)
		body, err := json.MarshalIndent(struct {
			Current *Window `json:"current"`
			Last    *Window `json:"last"`
		}{cur, last}, "", "  ")
		if err != nil {
			http.Error(w, "contention: encoding state: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(append(body, '\n'))
	})
}
