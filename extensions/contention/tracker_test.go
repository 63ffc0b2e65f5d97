package contention

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/proxy"
)

const (
	okR      = "+OK\r\n"
	queued   = "+QUEUED\r\n"
	nil2     = "*-1\r\n"
	nil3     = "_\r\n"
	commitR  = "*1\r\n+OK\r\n"
	execAbrt = "-EXECABORT Transaction discarded because of previous errors.\r\n"
	noMulti  = "-ERR EXEC without MULTI\r\n"
	staleR   = "-ERR update version is stale\r\n"
	casFail  = "*3\r\n+CAS_FAILED\r\n$1\r\nv\r\n:7\r\n"
	casOK    = "*3\r\n+OK\r\n+\r\n:8\r\n"
)

// newTestTracker is a tracker on the default config changed by edit (if
// not nil), with a window so long that windows end only by Flush or Close,
// a fake clock and a log buffer.
func newTestTracker(t *testing.T, edit func(*Config)) (*Tracker, *proxytest.SyncBuffer, *fakeClock) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Window = time.Hour
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	buf := &proxytest.SyncBuffer{}
	clk := &fakeClock{t: time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)}
	tr := newTracker(cfg, jsonLogger(buf), clk.now)
	t.Cleanup(func() { _ = tr.Close() })
	return tr, buf, clk
}

func TestSessionOutcomes(t *testing.T) {
	tests := []struct {
		name   string
		events []*proxy.Event
		close  bool
		want   counts
	}{
		{"commit", []*proxy.Event{ev("watch", okR, "k"), ev("multi", okR), ev("exec", commitR)}, false,
			counts{Transactions: 1, Commits: 1}},
		{"abort resp2", []*proxy.Event{ev("watch", okR, "k"), ev("multi", okR), ev("exec", nil2)}, false,
			counts{Transactions: 1, Aborts: 1}},
		{"abort resp3", []*proxy.Event{ev("watch", okR, "k"), ev("multi", okR), ev("exec", nil3)}, false,
			counts{Transactions: 1, Aborts: 1}},
		{"execabort", []*proxy.Event{ev("watch", okR, "k"), ev("multi", okR), ev("exec", execAbrt)}, false,
			counts{Transactions: 1, ExecAborts: 1}},
		{"exec without multi keeps the watch", []*proxy.Event{ev("watch", okR, "k"), ev("exec", noMulti), ev("multi", okR), ev("exec", commitR)}, false,
			counts{Transactions: 1, Commits: 1, ExecErrors: 1}},
		{"error inside multi ends the transaction", []*proxy.Event{ev("watch", okR, "k"), ev("multi", okR), ev("exec", "-NOPERM no\r\n")}, false,
			counts{Transactions: 1, ExecErrors: 1}},
		{"unwatch gives up", []*proxy.Event{ev("watch", okR, "k"), ev("unwatch", okR)}, false,
			counts{GivenUp: 1}},
		{"unwatch with nothing watched is free", []*proxy.Event{ev("unwatch", okR), ev("watch", okR, "k"), ev("multi", okR), ev("exec", commitR), ev("unwatch", okR)}, false,
			counts{Transactions: 1, Commits: 1}},
		{"discard gives up", []*proxy.Event{ev("watch", okR, "k"), ev("multi", okR), ev("discard", okR)}, false,
			counts{GivenUp: 1}},
		{"reset gives up", []*proxy.Event{ev("watch", okR, "k"), ev("multi", okR), ev("reset", "+RESET\r\n")}, false,
			counts{GivenUp: 1}},
		{"disconnect gives up", []*proxy.Event{ev("watch", okR, "k")}, true,
			counts{GivenUp: 1}},
		{"watch inside multi is an error and not counted", []*proxy.Event{ev("multi", okR), ev("watch", "-ERR WATCH inside MULTI is not allowed\r\n", "k"), ev("exec", commitR)}, true,
			counts{Transactions: 1, Commits: 1}},
		{"unwatch inside multi is queued", []*proxy.Event{ev("watch", okR, "k"), ev("multi", okR), ev("unwatch", queued), ev("exec", nil2)}, false,
			counts{Transactions: 1, Aborts: 1}},
		{"exec with no reply gives up", []*proxy.Event{ev("watch", okR, "k"), ev("multi", okR), ev("exec", "")}, false,
			counts{GivenUp: 1}},
		{"retry then commit", []*proxy.Event{
			ev("watch", okR, "a", "b"), ev("multi", okR), ev("exec", nil2),
			ev("watch", okR, "b"), ev("watch", okR, "a"), ev("multi", okR), ev("exec", nil2),
			ev("watch", okR, "a", "b"), ev("multi", okR), ev("exec", commitR)}, false,
			counts{Transactions: 3, Aborts: 2, Commits: 1, Retries: 2, CommitRetries: 2, RetriesMax: 2}},
		{"retry chain abandoned for other keys", []*proxy.Event{
			ev("watch", okR, "a"), ev("multi", okR), ev("exec", nil2),
			ev("watch", okR, "b"), ev("multi", okR), ev("exec", commitR)}, false,
			counts{Transactions: 2, Aborts: 1, Commits: 1, ChainsGivenUp: 1}},
		{"unwatched transaction between attempts keeps the chain", []*proxy.Event{
			ev("watch", okR, "a"), ev("multi", okR), ev("exec", nil2),
			ev("multi", okR), ev("exec", commitR),
			ev("watch", okR, "a"), ev("multi", okR), ev("exec", commitR)}, false,
			counts{Transactions: 3, Aborts: 1, Commits: 2, Retries: 1, CommitRetries: 1, RetriesMax: 1}},
		{"retry chain abandoned by disconnect", []*proxy.Event{
			ev("watch", okR, "a"), ev("multi", okR), ev("exec", nil2)}, true,
			counts{Transactions: 1, Aborts: 1, ChainsGivenUp: 1}},
		{"retry chain abandoned by unwatch", []*proxy.Event{
			ev("watch", okR, "a"), ev("multi", okR), ev("exec", nil2),
			ev("watch", okR, "a"), ev("unwatch", okR)}, false,
			counts{Transactions: 1, Aborts: 1, GivenUp: 1, ChainsGivenUp: 1}},
		{"stale versioned writes", []*proxy.Event{
			evOut(proxy.Stale, "exset", staleR, "k", "v", "VER", "3"), evOut(proxy.Stale, "exincrby", staleR, "k", "1", "VER", "3"),
			evOut(proxy.Stale, "exincrbyfloat", staleR, "k", "1", "VER", "3"), evOut(proxy.Stale, "exappend", staleR, "k", "x", "VER", "3"),
			evOut(proxy.Stale, "exprepend", staleR, "k", "x", "VER", "3"), evOut(proxy.Stale, "excas", casFail, "k", "v", "3"),
			evOut(proxy.Stale, "excad", ":0\r\n", "k", "3"), evOut(proxy.Committed, "exset", okR, "k", "v"), evOut(proxy.Committed, "excas", casOK, "k", "v", "7"),
			evOut(proxy.Committed, "excad", ":1\r\n", "k", "8"), evOut(proxy.NoOutcome, "excad", ":-1\r\n", "k", "8"),
			evOut(proxy.Committed, "exset", okR, "k", "v", "VER", "0"), evOut(proxy.Committed, "exincrby", ":3\r\n", "k", "1", "ver", "2")}, false,
			// Applied conditional writes count as commits (EXCAS, EXCAD,
			// EXINCRBY ... VER 2); unconditional ones (EXSET without VER or
			// with VER 0, which checks nothing) do not.
			counts{Stale: 7, VersionedCommits: 3}},
		{"cas and cad compare failures", []*proxy.Event{
			evOut(proxy.CompareFailed, "cas", ":0\r\n", "k", "a", "b"), evOut(proxy.CompareFailed, "cad", ":0\r\n", "k", "a"),
			evOut(proxy.Committed, "cas", ":1\r\n", "k", "a", "b"), evOut(proxy.NoOutcome, "cas", ":-1\r\n", "k", "a", "b")}, false,
			counts{CASFailed: 2, CASCommits: 1}},
		{"refusals inside multi are only queued", []*proxy.Event{
			ev("multi", okR), evOut(proxy.NoOutcome, "exset", queued, "k", "v", "VER", "3"), evOut(proxy.NoOutcome, "cas", queued, "k", "a", "b"), ev("exec", "*2\r\n-ERR update version is stale\r\n:0\r\n")}, false,
			counts{Transactions: 1, Commits: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, _, _ := newTestTracker(t, nil)
			s := tr.Open(&proxy.SessionInfo{ID: 1, Addr: "10.0.0.1:5000", User: "default", Proto: 2})
			for _, e := range tc.events {
				s.Observe(e)
			}
			if tc.close {
				s.Close()
			}
			cur, _ := tr.snapshot(10)
			got := cur.Totals
			want := makeRow(&tc.want, nil)
			got.WatchExecCount, got.WatchExecP50Ms, got.WatchExecP99Ms, got.WatchExecHist = 0, 0, 0, nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("totals\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestWindowLogAndClose(t *testing.T) {
	tr, buf, clk := newTestTracker(t, func(c *Config) { c.Top = 2 })
	info := &proxy.SessionInfo{ID: 1, Addr: "10.0.0.1:5000", Name: "billing", User: "app", Proto: 3}
	s := tr.Open(info)
	t0 := clk.now()
	tx := func(key, reply string, watchToExec time.Duration) {
		w := ev("watch", okR, key)
		w.Sent = t0
		x := ev("exec", reply)
		x.Done = t0.Add(watchToExec)
		s.Observe(w)
		s.Observe(ev("multi", okR))
		s.Observe(x)
	}
	tx("order:1:lock", nil2, 3*time.Millisecond)
	tx("order:1:lock", commitR, 5*time.Millisecond)
	tx("order:2:lock", nil2, 1*time.Millisecond)
	tx("order:2:lock", nil2, 1*time.Millisecond)
	tx("order:2:lock", nil2, 1*time.Millisecond)
	tx("quiet", commitR, time.Millisecond)
	s.Observe(evOut(proxy.Stale, "excas", casFail, "user:7f3a9c21e0", "v", "1"))
	clk.advance(10 * time.Second)
	tr.Flush()

	// Something in the next window, then Close must log it.
	tx("order:3:lock", nil2, time.Millisecond)
	s.Close()
	clk.advance(2 * time.Second)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	lines := parseLog(t, buf.String())

	var windows []logLine
	for _, l := range lines {
		if l.Msg == MsgWindow {
			windows = append(windows, l)
		}
	}
	if len(windows) != 2 {
		t.Fatalf("want 2 window events, got %d:\n%s", len(windows), buf.String())
	}
	w0 := windows[0]
	if w0.Raw["window_start"] != "2026-11-22T01:00:00Z" || w0.Raw["window_end"] != "2026-11-22T01:00:10Z" || w0.Raw["final"] != false {
		t.Errorf("window bounds: %v", w0.Raw)
	}
	if w0.Row.Transactions != 6 || w0.Row.Aborts != 4 || w0.Row.Commits != 2 || w0.Row.Stale != 1 {
		t.Errorf("window totals: %+v", w0.Row)
	}
	// Retries: order:1 aborted once then committed (1 retry); order:2
	// aborted three times in a row (2 retries), then the session moved
	// on to "quiet", which gave that chain up.
	if w0.Row.Retries != 3 || w0.Row.CommitRetries != 1 || w0.Row.RetriesMax != 1 || w0.Row.ChainsGivenUp != 1 {
		t.Errorf("window retries: %+v", w0.Row)
	}
	if windows[1].Raw["final"] != true || windows[1].Row.Aborts != 1 || windows[1].Row.ChainsGivenUp != 1 {
		t.Errorf("final window: %+v %v", windows[1].Row, windows[1].Raw)
	}

	// Top 2 keys of the first window: order:2 (3 conflicts), then
	// order:1 and user:... (1 each; order:1 has more transactions).
	var keys []string
	for _, l := range lines[:len(lines)/2+1] {
		if l.Msg == MsgKey && l.Raw["window_end"] == "2026-11-22T01:00:10Z" {
			keys = append(keys, l.Row.Key)
		}
	}
	if !reflect.DeepEqual(keys, []string{"order:2:lock", "order:1:lock"}) {
		t.Errorf("hot keys = %v", keys)
	}
	k1, _ := findRow(lines, MsgKey, "order:1:lock")
	if k1.Pattern != "order:*:lock" || k1.Transactions != 2 || k1.AbortRatio != 0.5 || k1.RetriesPerCommit != 1 ||
		k1.WatchExecCount != 2 || !reflect.DeepEqual(k1.Clients, []string{"billing"}) {
		t.Errorf("order:1:lock row: %+v", k1)
	}
	// 3ms lands in [2560µs, 3072µs), 5ms in [4096µs, 5120µs): p50 and p99
	// are bucket upper bounds.
	if k1.WatchExecP50Ms != 3.072 || k1.WatchExecP99Ms != 5.12 {
		t.Errorf("order:1:lock p50/p99 = %v/%v, hist %v", k1.WatchExecP50Ms, k1.WatchExecP99Ms, k1.WatchExecHist)
	}
	p, ok := findRow(lines, MsgPattern, "order:*:lock")
	if !ok || p.Transactions != 5 || p.Aborts != 4 || p.Commits != 1 {
		t.Errorf("pattern row: %+v", p)
	}
	c, ok := findRow(lines, MsgClient, "billing")
	if !ok || c.Transactions != 6 || c.Stale != 1 {
		t.Errorf("client row: %+v", c)
	}
	// "quiet" had no conflict: below the threshold, never logged.
	if _, ok := findRow(lines, MsgKey, "quiet"); ok {
		t.Error("key without conflicts was logged")
	}
}

func TestNothingHappenedLogsNothing(t *testing.T) {
	tr, buf, _ := newTestTracker(t, nil)
	s := tr.Open(&proxy.SessionInfo{ID: 1, Addr: "127.0.0.1:1"})
	s.Observe(evOut(proxy.Committed, "exset", okR, "k", "v"))
	s.Observe(ev("multi", okR))
	tr.Flush()
	_ = tr.Close()
	if buf.String() != "" {
		t.Errorf("quiet windows logged: %s", buf.String())
	}
}

func TestAbortEvents(t *testing.T) {
	tr, buf, _ := newTestTracker(t, func(c *Config) { c.AbortEvents, c.AbortSampleRate, c.AbortRateLimit = true, 1, 2 })
	s := tr.Open(&proxy.SessionInfo{ID: 1, Addr: "10.1.1.1:999", DB: 2, User: "app"})
	for i := 0; i < 5; i++ {
		s.Observe(ev("watch", okR, "a", "b"))
		s.Observe(ev("multi", okR))
		x := ev("exec", nil2)
		x.Queued = []string{"set", "incr"}
		s.Observe(x)
	}
	_ = tr.Close()
	lines := parseLog(t, buf.String())
	var aborts []logLine
	for _, l := range lines {
		if l.Msg == MsgAbort {
			aborts = append(aborts, l)
		}
	}
	// The clock does not move: the bucket holds PerSecond tokens, the rest
	// are dropped and counted.
	if len(aborts) != 2 {
		t.Fatalf("want 2 abort events (rate limit), got %d", len(aborts))
	}
	a := aborts[1].Raw
	if !reflect.DeepEqual(a["keys"], []any{"a", "b"}) || !reflect.DeepEqual(a["queued"], []any{"set", "incr"}) ||
		a["client"] != "10.1.1.1" || a["db"] != 2.0 || a["user"] != "app" || a["attempt"] != 2.0 {
		t.Errorf("abort event: %v", a)
	}
	w := sumWindows(lines)
	if w.Aborts != 5 {
		t.Errorf("aborts = %d", w.Aborts)
	}
	for _, l := range lines {
		if l.Msg == MsgWindow && l.Raw["abort_events_dropped"] != 3.0 {
			t.Errorf("abort_events_dropped = %v", l.Raw["abort_events_dropped"])
		}
	}
}

// TestInstanceField: with Deps.Instance set, every event the tracker
// writes names the proxy, so the report can merge many sidecars' logs;
// without it no event has the field.
func TestInstanceField(t *testing.T) {
	for _, inst := range []string{"pod-7f9c", ""} {
		cfg := DefaultConfig()
		cfg.Window, cfg.AbortEvents, cfg.AbortSampleRate, cfg.AbortRateLimit = time.Hour, true, 1, 100
		buf := &proxytest.SyncBuffer{}
		tr, err := New(cfg, Deps{Logger: jsonLogger(buf), Instance: inst})
		if err != nil {
			t.Fatal(err)
		}
		s := tr.Open(&proxy.SessionInfo{ID: 1, Addr: "127.0.0.1:999"})
		s.Observe(ev("watch", okR, "k"))
		s.Observe(ev("multi", okR))
		s.Observe(ev("exec", nil2))
		s.Observe(evOut(proxy.CompareFailed, "excas", "*3\r\n+CAS_FAILED\r\n$1\r\nv\r\n:2\r\n", "k2", "v", "1"))
		_ = tr.Close()
		lines := parseLog(t, buf.String())
		msgs := map[string]bool{}
		for _, l := range lines {
			msgs[l.Msg] = true
			got, has := l.Raw["instance"]
			if inst == "" && has || inst != "" && got != inst {
				t.Errorf("instance %q: %s has instance %v", inst, l.Msg, got)
			}
		}
		for _, m := range []string{MsgWindow, MsgKey, MsgPattern, MsgClient, MsgAbort, MsgStale} {
			if !msgs[m] {
				t.Errorf("instance %q: no %s event in\n%s", inst, m, buf.String())
			}
		}
	}
}

func TestHandler(t *testing.T) {
	tr, _, clk := newTestTracker(t, nil)
	s := tr.Open(&proxy.SessionInfo{ID: 1, Addr: "10.0.0.1:5000", Name: "api"})
	s.Observe(ev("watch", okR, "cart:42"))
	s.Observe(ev("multi", okR))
	s.Observe(ev("exec", nil2))
	srv := httptest.NewServer(tr.Handler())
	defer srv.Close()

	get := func(q string) (int, map[string]*Window) {
		resp, err := http.Get(srv.URL + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]*Window
		if resp.StatusCode == 200 {
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, body
	}
	code, body := get("/?top=5")
	if code != 200 || body["last"] != nil || !body["current"].Partial || len(body["current"].Keys) != 1 ||
		body["current"].Keys[0].Key != "cart:42" || body["current"].Patterns[0].Pattern != "cart:*" {
		t.Fatalf("current: %d %+v", code, body["current"])
	}
	clk.advance(10 * time.Second)
	tr.Flush()
	_, body = get("")
	if body["last"] == nil || body["last"].Totals.Aborts != 1 || body["current"].Totals.Aborts != 0 {
		t.Errorf("after flush: last %+v current %+v", body["last"], body["current"])
	}
	if code, _ := get("/?top=x"); code != http.StatusBadRequest {
		t.Errorf("bad top: %d", code)
	}
	resp, err := http.Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}

// TestConcurrentSessions runs many sessions with concurrent Flush and
// Handler calls (meaningful under -race) and checks nothing is lost.
func TestConcurrentSessions(t *testing.T) {
	tr, buf, _ := newTestTracker(t, func(c *Config) { c.MaxKeys = 64 })
	const sessions, per = 16, 500
	var wg sync.WaitGroup
	for i := 0; i < sessions; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s := tr.Open(&proxy.SessionInfo{ID: uint64(i), Addr: "10.0.0." + strconv.Itoa(i) + ":1"})
			for j := 0; j < per; j++ {
				k := "k:" + strconv.Itoa(j%100)
				s.Observe(ev("watch", okR, k))
				s.Observe(ev("multi", okR))
				if j%3 == 0 {
					s.Observe(ev("exec", nil2))
				} else {
					s.Observe(ev("exec", commitR))
				}
			}
			s.Close()
		}(i)
	}
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(1)
	go func() {
		defer bg.Done()
		h := tr.Handler()
		for {
			select {
			case <-stop:
				return
			default:
			}
			tr.Flush()
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
		}
	}()
	wg.Wait()
	close(stop)
	bg.Wait()
	_ = tr.Close()
	got := sumWindows(parseLog(t, buf.String()))
	// Per session: j%3==0 aborts (167 of 500), and each abort on key k is
	// followed by a different key, so every chain is given up.
	wantAborts := int64(sessions * 167)
	if got.Transactions != sessions*per || got.Aborts != wantAborts || got.Commits != sessions*per-wantAborts ||
		got.ChainsGivenUp != wantAborts {
		t.Errorf("totals %+v", got)
	}
}
