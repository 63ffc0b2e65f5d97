package contention

import (
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/exproxy/exproxy/proxy"
)

// at sets an event's Sent and Done.
func at(e *proxy.Event, sent, done time.Time) *proxy.Event {
	e.Sent, e.Done = sent, done
	return e
}

// writeEv is the event the proxy core delivers for a write to watched keys.
func writeEv(name string, sent, done time.Time, keys ...string) *proxy.Event {
	e := &proxy.Event{Name: name, Write: true, Kind: '+', Reply: []byte(okR), Sent: sent, Done: done}
	for _, k := range keys {
		e.Keys = append(e.Keys, []byte(k))
	}
	return e
}

func logLines(t *testing.T, lines []logLine, msg string) []logLine {
	t.Helper()
	var out []logLine
	for _, l := range lines {
		if l.Msg == msg {
			out = append(out, l)
		}
	}
	return out
}

// TestAttributionWatchAbort: a writer's SET between the victim's WATCH and
// EXEC is named as the abort's blocker in the abort event, on the key,
// the pattern and the victim's rows, and as an invalidator of its own.
func TestAttributionWatchAbort(t *testing.T) {
	tr, buf, clk := newTestTracker(t, func(c *Config) { c.AbortEvents, c.AbortRateLimit = true, 100 })
	victim := tr.Open(&proxy.SessionInfo{ID: 1, Addr: "10.0.0.1:5000", Name: "checkout", User: "app", DB: 2})
	writer := tr.Open(&proxy.SessionInfo{ID: 2, Addr: "10.0.0.2:6000", Name: "billing", User: "ops", DB: 2})
	t0 := clk.now()
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

	if tr.Watching() {
		t.Fatal("Watching before any WATCH")
	}
	victim.Observe(at(ev("watch", okR, "order:7:lock", "order:8:lock"), ms(0), ms(1)))
	if !tr.Watching() || !tr.Watched([]byte("order:7:lock")) || tr.Watched([]byte("order:9:lock")) {
		t.Fatalf("Watching %v, Watched(7) %v, Watched(9) %v", tr.Watching(), tr.Watched([]byte("order:7:lock")), tr.Watched([]byte("order:9:lock")))
	}
	writer.Observe(writeEv("incr", ms(2), ms(3), "order:7:lock"))
	victim.Observe(at(ev("multi", okR), ms(4), ms(5)))
	victim.Observe(at(ev("exec", nil2), ms(6), ms(7)))
	if n := tr.pendingCount(); n != 0 {
		t.Fatalf("%d conflicts wait, the write was known", n)
	}
	clk.advance(time.Second)
	_ = tr.Close()
	lines := parseLog(t, buf.String())

	aborts := logLines(t, lines, MsgAbort)
	if len(aborts) != 1 {
		t.Fatalf("want 1 abort event, got %d:\n%s", len(aborts), buf.String())
	}
	a := aborts[0].Raw
	want := map[string]any{
		"blocker": "billing", "blocker_addr": "10.0.0.2:6000", "blocker_user": "ops", "blocker_db": 2.0,
		"blocker_command": "incr", "blocker_key": "order:7:lock", "blocker_before_ms": 4.0,
		"blocker_at": ms(2).UTC().Format(time.RFC3339Nano),
	}
	for k, v := range want {
		if a[k] != v {
			t.Errorf("abort event %s = %v, want %v", k, a[k], v)
		}
	}
	w := logLines(t, lines, MsgWindow)[0].Row
	if w.Aborts != 1 || w.Attributed != 1 || w.Outside != 0 || w.Unattributed != 0 {
		t.Errorf("window: %+v", w)
	}
	billing := []Link{{Invalidator: "billing", Command: "incr", Aborts: 1}}
	k7, _ := findRow(lines, MsgKey, "order:7:lock")
	if !reflect.DeepEqual(k7.Invalidators, billing) || k7.Attributed != 1 {
		t.Errorf("key row: %+v", k7)
	}
	// The other watched key was not written: no invalidator on it.
	if k8, _ := findRow(lines, MsgKey, "order:8:lock"); k8.Invalidators != nil || k8.Attributed != 0 || k8.Aborts != 1 {
		t.Errorf("unwritten key row: %+v", k8)
	}
	if p, _ := findRow(lines, MsgPattern, "order:*:lock"); !reflect.DeepEqual(p.Invalidators, billing) {
		t.Errorf("pattern row: %+v", p)
	}
	if c, _ := findRow(lines, MsgClient, "checkout"); !reflect.DeepEqual(c.Invalidators, billing) {
		t.Errorf("victim row: %+v", c)
	}
	inv := logLines(t, lines, MsgInvalidator)
	if len(inv) != 1 {
		t.Fatalf("want 1 invalidator event, got %d", len(inv))
	}
	r := inv[0].Row
	if r.Invalidator != "billing" || r.Aborts != 1 || r.Rank != 1 || !reflect.DeepEqual(r.Clients, []string{"checkout"}) ||
		!reflect.DeepEqual(r.InvalidatedKeys, []Link{{Key: "order:7:lock", Command: "incr", Aborts: 1}}) {
		t.Errorf("invalidator row: %+v", r)
	}
}

// TestAttributionRules walks which writes count as a conflict's cause.
func TestAttributionRules(t *testing.T) {
	type write struct {
		name       string
		db         int
		sent, done int // ms after the WATCH was sent
		key        string
	}
	tests := []struct {
		name    string
		writes  []write // before the EXEC's reply is observed
		late    []write // after it
		expire  bool    // let the grace pass
		blocker string  // "" = still waiting
		command string
	}{
		{"write between watch and exec", []write{{"set", 0, 2, 3, "k"}}, nil, false, "w0", "set"},
		{"write done before the watch was sent", []write{{"set", 0, -3, -1, "k"}}, nil, true, OutsideLabel, ""},
		{"write sent after the exec reply", nil, []write{{"set", 0, 11, 12, "k"}}, true, OutsideLabel, ""},
		{"write in another database", []write{{"set", 1, 2, 3, "k"}}, nil, true, OutsideLabel, ""},
		{"write to another key", []write{{"set", 0, 2, 3, "other"}}, nil, true, OutsideLabel, ""},
		{"the newest of two", []write{{"set", 0, 2, 3, "k"}, {"del", 0, 4, 5, "k"}}, nil, false, "w1", "del"},
		{"reply after the victim's", nil, []write{{"hset", 0, 5, 12, "k"}}, false, "w0", "hset"},
		{"no write at all", nil, nil, true, OutsideLabel, ""},
		{"no write yet", nil, nil, false, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, _, clk := newTestTracker(t, nil)
			t0 := clk.now()
			ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
			victim := tr.Open(&proxy.SessionInfo{ID: 100, Addr: "10.0.0.1:1", Name: "victim"})
			// Keep "other" tracked too, so a write to it is recorded.
			holder := tr.Open(&proxy.SessionInfo{ID: 101, Addr: "10.0.0.3:1", Name: "holder"})
			holder.Observe(at(ev("watch", okR, "other"), ms(-10), ms(-10)))
			victim.Observe(at(ev("watch", okR, "k"), ms(0), ms(1)))
			do := func(ws []write) {
				for i, w := range ws {
					s := tr.Open(&proxy.SessionInfo{ID: uint64(i + 1), Addr: "10.0.0.2:" + strconv.Itoa(i), Name: "w" + strconv.Itoa(i), DB: w.db})
					s.Observe(writeEv(w.name, ms(w.sent), ms(w.done), w.key))
				}
			}
			do(tc.writes)
			victim.Observe(at(ev("multi", okR), ms(6), ms(7)))
			victim.Observe(at(ev("exec", nil2), ms(8), ms(10)))
			do(tc.late)
			if tc.expire {
				clk.advance(attributionGrace + time.Second)
				tr.maintain()
			}
			cur, _ := tr.snapshot(10)
			var got string
			var cmd string
			switch {
			case cur.Totals.Attributed == 1 && len(cur.Invalidators) == 1:
				got, cmd = cur.Invalidators[0].Invalidator, cur.Invalidators[0].InvalidatedKeys[0].Command
			case cur.Totals.Outside == 1:
				got = OutsideLabel
			}
			if got != tc.blocker || cmd != tc.command {
				t.Errorf("blocker %q (%q), want %q (%q); totals %+v", got, cmd, tc.blocker, tc.command, cur.Totals)
			}
			if wait := tr.pendingCount(); (tc.blocker == "") != (wait == 1) {
				t.Errorf("%d conflicts waiting", wait)
			}
		})
	}
}

// TestAttributionStale: a refused versioned write is blamed on the last
// write to its key before it, whether that write came as a versioned
// command the tracker observes or as a plain write the core reports.
func TestAttributionStale(t *testing.T) {
	tr, buf, clk := newTestTracker(t, func(c *Config) { c.AbortEvents, c.AbortRateLimit = true, 100 })
	t0 := clk.now()
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	wallet := tr.Open(&proxy.SessionInfo{ID: 1, Addr: "10.0.0.1:1", Name: "wallet"})
	payout := tr.Open(&proxy.SessionInfo{ID: 2, Addr: "10.0.0.2:1", Name: "payout"})
	admin := tr.Open(&proxy.SessionInfo{ID: 3, Addr: "10.0.0.3:1", Name: "admin"})

	wallet.Observe(at(ev("exget", "*2\r\n$1\r\n5\r\n:3\r\n", "acct:1"), ms(0), ms(1)))
	payout.Observe(at(evOut(proxy.Committed, "excas", casOK, "acct:1", "4", "3"), ms(2), ms(3)))
	wallet.Observe(at(evOut(proxy.Stale, "excas", casFail, "acct:1", "6", "3"), ms(4), ms(5)))
	// A plain write reported by the core, then a failed CAS.
	wallet.Observe(at(evOut(proxy.Committed, "cas", ":1\r\n", "flag", "a", "b"), ms(6), ms(7)))
	admin.Observe(writeEv("set", ms(8), ms(9), "flag"))
	wallet.Observe(at(evOut(proxy.CompareFailed, "cas", ":0\r\n", "flag", "b", "c"), ms(10), ms(11)))
	// A first refusal on a key never seen: no write, outside.
	wallet.Observe(at(evOut(proxy.Stale, "exset", staleR, "acct:2", "v", "VER", "9"), ms(12), ms(13)))
	if n := tr.pendingCount(); n != 1 {
		t.Fatalf("%d conflicts waiting, want 1 (acct:2)", n)
	}
	_ = tr.Close() // gives the waiting one up: outside
	lines := parseLog(t, buf.String())
	w := logLines(t, lines, MsgWindow)[0].Row
	if w.Stale != 2 || w.CASFailed != 1 || w.VersionedCommits != 1 || w.CASCommits != 1 || w.Attributed != 2 || w.Outside != 1 {
		t.Errorf("window: %+v", w)
	}
	if w.ConflictRatio != 3.0/5 {
		t.Errorf("conflict ratio %v, want 3/5", w.ConflictRatio)
	}
	stale := logLines(t, lines, MsgStale)
	if len(stale) != 3 {
		t.Fatalf("want 3 stale events, got %d", len(stale))
	}
	for i, want := range []struct{ blocker, command string }{{"payout", "excas"}, {"admin", "set"}, {OutsideLabel, ""}} {
		if r := stale[i].Raw; r["blocker"] != want.blocker || (want.command != "" && r["blocker_command"] != want.command) {
			t.Errorf("stale event %d: %v, want blocker %s %s", i, r, want.blocker, want.command)
		}
	}
	if _, has := stale[2].Raw["blocker_addr"]; has {
		t.Errorf("an outside blocker has an address: %v", stale[2].Raw)
	}
	k, _ := findRow(lines, MsgKey, "acct:1")
	if k.Stale != 1 || k.VersionedCommits != 1 || k.ConflictRatio != 0.5 ||
		!reflect.DeepEqual(k.Invalidators, []Link{{Invalidator: "payout", Command: "excas", Stale: 1}}) {
		t.Errorf("acct:1 row: %+v", k)
	}
	var names []string
	for _, l := range logLines(t, lines, MsgInvalidator) {
		names = append(names, l.Row.Invalidator)
	}
	if !reflect.DeepEqual(names, []string{OutsideLabel, "admin", "payout"}) {
		t.Errorf("invalidators %v", names)
	}
}

// TestAttributionBounded: the set holds at most attribution-max-keys keys;
// a conflict on keys it could not take is unattributed. Keys nobody uses
// any more leave it after attribution-ttl.
func TestAttributionBounded(t *testing.T) {
	tr, _, clk := newTestTracker(t, func(c *Config) { c.AttributionMaxKeys, c.AttributionTTL = 2, 10*time.Second })
	s := tr.Open(&proxy.SessionInfo{ID: 1, Addr: "10.0.0.1:1"})
	tx := func(key string) {
		s.Observe(ev("watch", okR, key))
		s.Observe(ev("multi", okR))
		s.Observe(ev("exec", nil2))
	}
	tx("a")
	tx("b")
	tx("c") // the set is full
	clk.advance(attributionGrace)
	tr.maintain()
	cur, _ := tr.snapshot(10)
	if cur.Totals.Outside != 2 || cur.Totals.Unattributed != 1 || tr.keys.n.Load() != 2 || tr.keys.full.Load() != 1 {
		t.Errorf("totals %+v, %d keys, %d refused", cur.Totals, tr.keys.n.Load(), tr.keys.full.Load())
	}
	clk.advance(10 * time.Second)
	tr.maintain()
	if tr.Watching() || tr.keys.n.Load() != 0 {
		t.Errorf("after the ttl: Watching %v, %d keys", tr.Watching(), tr.keys.n.Load())
	}
	// A key watched now is never swept, however old.
	s.Observe(ev("watch", okR, "held"))
	clk.advance(time.Hour)
	tr.maintain()
	if !tr.Watched([]byte("held")) {
		t.Error("a watched key was swept")
	}
	s.Observe(ev("unwatch", okR))
	clk.advance(10 * time.Second)
	tr.maintain()
	if tr.Watched([]byte("held")) {
		t.Error("an unwatched key outlived the ttl")
	}
}

// TestAttributionOff: with attribution off the tracker never watches and
// counts conflicts as before.
func TestAttributionOff(t *testing.T) {
	tr, buf, _ := newTestTracker(t, func(c *Config) { c.Attribution, c.AbortEvents, c.AbortRateLimit = false, true, 100 })
	s := tr.Open(&proxy.SessionInfo{ID: 1, Addr: "10.0.0.1:1"})
	s.Observe(ev("watch", okR, "k"))
	if tr.Watching() || tr.Watched([]byte("k")) {
		t.Error("Watching with attribution off")
	}
	s.Observe(writeEv("set", time.Time{}, time.Time{}, "k"))
	s.Observe(ev("multi", okR))
	s.Observe(ev("exec", nil2))
	_ = tr.Close()
	lines := parseLog(t, buf.String())
	w := logLines(t, lines, MsgWindow)[0].Row
	if w.Aborts != 1 || w.Attributed+w.Outside+w.Unattributed != 0 {
		t.Errorf("window %+v", w)
	}
	if a := logLines(t, lines, MsgAbort); len(a) != 1 || a[0].Raw["blocker"] != nil {
		t.Errorf("abort events %v", a)
	}
}

// TestWatchedAllocs: the core calls Watched for every write while any
// key is watched; it must not allocate, hit or miss.
func TestWatchedAllocs(t *testing.T) {
	tr, _, _ := newTestTracker(t, nil)
	s := tr.Open(&proxy.SessionInfo{ID: 1, Addr: "10.0.0.1:1"})
	s.Observe(ev("watch", okR, "hot"))
	hit, miss := []byte("hot"), []byte("cold:1234")
	if n := testing.AllocsPerRun(1000, func() {
		if !tr.Watching() || !tr.Watched(hit) || tr.Watched(miss) {
			t.Fatal("wrong answer")
		}
	}); n != 0 {
		t.Errorf("Watching/Watched allocate %v times per call", n)
	}
}

// TestVersionedAllocs: on the proxy's hot path — a refused versioned
// write attributed to the write before it, a committed one, EXGET, an
// unconditional EXSET and the core's report of a write to a tracked key —
// the tracker allocates nothing once the keys are in its tables, for a
// short key and for one longer than Go converts on the stack, each event
// on another key than the one before.
func TestVersionedAllocs(t *testing.T) {
	tr, _, clk := newTestTracker(t, nil)
	t0 := clk.now()
	victim := tr.Open(&proxy.SessionInfo{ID: 1, Addr: "10.0.0.1:1", Name: "victim"})
	writer := tr.Open(&proxy.SessionInfo{ID: 2, Addr: "10.0.0.2:1", Name: "writer"})
	keys := []string{"acct:1", "tenant:7f3c9a2e-4b1d-4c8e-9f0a-1b2c3d4e5f60:balance"}
	var evs []*proxy.Event
	for _, k := range keys {
		writer.Observe(at(evOut(proxy.Committed, "excas", casOK, k, "v", "7"), t0, t0))
		evs = append(evs,
			evOut(proxy.Stale, "excas", casFail, k, "v", "99"),
			evOut(proxy.Committed, "excas", casOK, k, "v", "8"),
			ev("exget", "*2\r\n$1\r\nv\r\n:8\r\n", k),
			evOut(proxy.Committed, "exset", okR, k, "v"),
		)
	}
	for _, e := range evs {
		at(e, t0.Add(time.Millisecond), t0.Add(2*time.Millisecond))
	}
	writes := []*proxy.Event{writeEv("set", t0, t0, keys[0]), writeEv("set", t0, t0, keys[1])}
	for _, e := range evs { // every entry admitted to the tables first
		victim.Observe(e)
	}
	for i, e := range evs {
		if n := testing.AllocsPerRun(200, func() {
			victim.Observe(e)
			writer.Observe(writes[(i+1)%2])
		}); n != 0 {
			t.Errorf("%s %s (%v): %v allocations", e.Name, e.Args[0], e.Outcome, n)
		}
	}
	if n := tr.pendingCount(); n != 0 {
		t.Errorf("%d refusals wait: they should have found the write before them", n)
	}
}

// TestConcurrentAttribution: many victims and writers at once, with
// Flush, maintenance and scrapes beside them (meaningful under -race).
func TestConcurrentAttribution(t *testing.T) {
	tr, buf, _ := newTestTracker(t, nil)
	const sessions, per = 8, 300
	done := make(chan struct{})
	for i := 0; i < sessions; i++ {
		go func(i int) {
			defer func() { done <- struct{}{} }()
			s := tr.Open(&proxy.SessionInfo{ID: uint64(i + 1), Addr: "10.0.0." + strconv.Itoa(i) + ":1", Name: "c" + strconv.Itoa(i)})
			for j := 0; j < per; j++ {
				k := "k:" + strconv.Itoa(j%10)
				now := time.Now()
				s.Observe(at(ev("watch", okR, k), now, now))
				s.Observe(writeEv("set", now, time.Now(), "k:"+strconv.Itoa((j+1)%10)))
				s.Observe(ev("multi", okR))
				s.Observe(at(ev("exec", nil2), now, time.Now()))
			}
			s.Close()
		}(i)
	}
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				done <- struct{}{}
				return
			default:
			}
			tr.Flush()
			tr.maintain()
		}
	}()
	for i := 0; i < sessions; i++ {
		<-done
	}
	close(stop)
	<-done
	_ = tr.Close()
	got := sumWindows(parseLog(t, buf.String()))
	if got.Aborts != sessions*per || got.Attributed+got.Outside+got.Unattributed != got.Aborts {
		t.Errorf("aborts %d, want %d; attributed %d + outside %d + unattributed %d", got.Aborts, sessions*per, got.Attributed, got.Outside, got.Unattributed)
	}
}

// TestAttributionQueuedWrites: a write queued in MULTI happens when its
// EXEC commits, and not at all when the EXEC aborts: the core reports it
// with the +QUEUED reply, and the tracker records it at the EXEC.
func TestAttributionQueuedWrites(t *testing.T) {
	tr, _, clk := newTestTracker(t, nil)
	t0 := clk.now()
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	victim := tr.Open(&proxy.SessionInfo{ID: 1, Addr: "10.0.0.1:1", Name: "victim"})
	loser := tr.Open(&proxy.SessionInfo{ID: 2, Addr: "10.0.0.2:1", Name: "loser"})
	winner := tr.Open(&proxy.SessionInfo{ID: 3, Addr: "10.0.0.3:1", Name: "winner"})
	queuedSet := func(sent, done time.Time) *proxy.Event {
		e := writeEv("set", sent, done, "counter")
		e.Reply, e.Kind = []byte(queued), '+'
		return e
	}
	victim.Observe(at(ev("watch", okR, "counter"), ms(0), ms(1)))
	// winner queues its SET before the victim's EXEC, but its EXEC runs
	// after the victim's: its write cannot have aborted the victim.
	winner.Observe(at(ev("multi", okR), ms(2), ms(2)))
	winner.Observe(queuedSet(ms(3), ms(3)))
	// loser's transaction aborts: its queued SET never happened.
	loser.Observe(at(ev("multi", okR), ms(4), ms(4)))
	loser.Observe(queuedSet(ms(5), ms(5)))
	loser.Observe(at(ev("exec", nil2), ms(6), ms(7)))
	victim.Observe(at(ev("multi", okR), ms(8), ms(8)))
	victim.Observe(at(ev("exec", nil2), ms(9), ms(10)))
	winner.Observe(at(ev("exec", "*1\r\n+OK\r\n"), ms(11), ms(12)))
	if n := tr.pendingCount(); n != 1 {
		t.Fatalf("%d conflicts wait, want the victim's", n)
	}
	// Now a committed queued write inside the victim's next attempt.
	victim.Observe(at(ev("watch", okR, "counter"), ms(20), ms(21)))
	winner.Observe(at(ev("multi", okR), ms(22), ms(22)))
	winner.Observe(queuedSet(ms(23), ms(23)))
	winner.Observe(at(ev("exec", "*1\r\n+OK\r\n"), ms(24), ms(25)))
	victim.Observe(at(ev("multi", okR), ms(26), ms(26)))
	victim.Observe(at(ev("exec", nil2), ms(27), ms(28)))
	clk.advance(attributionGrace + time.Second)
	tr.maintain()
	cur, _ := tr.snapshot(10)
	// Two aborts of the victim and the loser's own (which watched
	// nothing, so there is nothing to attribute): the victim's first found
	// no write (outside), its second winner's SET at winner's EXEC.
	if cur.Totals.Aborts != 3 || cur.Totals.Attributed != 1 || cur.Totals.Outside != 1 {
		t.Fatalf("totals %+v", cur.Totals)
	}
	for _, r := range cur.Invalidators {
		if r.Invalidator == "winner" && !reflect.DeepEqual(r.Clients, []string{"victim"}) {
			t.Errorf("winner invalidated %v", r.Clients)
		}
		if r.Invalidator == "loser" {
			t.Errorf("the aborted transaction's write was recorded: %+v", r)
		}
	}
}

// TestAttributionArm: the keys of a WATCH are tracked from when the core
// sends it (Arm), so a write sent before Redis's +OK reaches the tracker
// is recorded and blamed when Redis ran it after the WATCH. A key armed
// by a WATCH that failed holds no watcher and leaves after the ttl.
func TestAttributionArm(t *testing.T) {
	tr, _, clk := newTestTracker(t, func(c *Config) { c.AttributionTTL = 10 * time.Second })
	t0 := clk.now()
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	victim := tr.Open(&proxy.SessionInfo{ID: 1, Addr: "10.0.0.1:1", Name: "victim"})
	writer := tr.Open(&proxy.SessionInfo{ID: 2, Addr: "10.0.0.2:1", Name: "writer"})

	tr.Arm([][]byte{[]byte("counter")}) // the victim's WATCH is being sent at 0 ms
	if !tr.Watching() || !tr.Watched([]byte("counter")) {
		t.Fatal("an armed key is not watched")
	}
	// The writer's INCR is sent at 1 ms, before the WATCH's +OK (3 ms)
	// has reached the tracker, and Redis runs it after the WATCH.
	writer.Observe(writeEv("incr", ms(1), ms(2), "counter"))
	victim.Observe(at(ev("watch", okR, "counter"), ms(0), ms(3)))
	victim.Observe(at(ev("multi", okR), ms(4), ms(4)))
	victim.Observe(at(ev("exec", nil2), ms(5), ms(6)))
	if n := tr.pendingCount(); n != 0 {
		t.Fatalf("%d conflicts wait: the write sent before the WATCH's reply was not recorded", n)
	}
	cur, _ := tr.snapshot(10)
	if cur.Totals.Aborts != 1 || cur.Totals.Attributed != 1 || len(cur.Invalidators) != 1 || cur.Invalidators[0].Invalidator != "writer" {
		t.Errorf("totals %+v, invalidators %+v", cur.Totals, cur.Invalidators)
	}

	// A WATCH that Redis refused (no +OK): its armed key takes no
	// watcher, so the sweep drops it after the ttl; the victim's key,
	// released at its EXEC, goes too.
	tr.Arm([][]byte{[]byte("refused")})
	victim.Observe(at(ev("watch", "-NOAUTH Authentication required.\r\n", "refused"), ms(7), ms(8)))
	if e := tr.keys.lookup([]byte("refused")); e == nil || e.watchers.Load() != 0 {
		t.Fatalf("armed entry %+v", e)
	}
	clk.advance(11 * time.Second)
	tr.maintain()
	if tr.Watching() {
		t.Errorf("%d keys outlived the ttl", tr.keys.n.Load())
	}

	// Arm takes no more keys than a session's WATCH keeps.
	many := make([][]byte, maxWatchKeys+10)
	for i := range many {
		many[i] = []byte("k" + strconv.Itoa(i))
	}
	tr.Arm(many)
	if n := tr.keys.n.Load(); n != maxWatchKeys {
		t.Errorf("Arm of %d keys tracks %d", len(many), n)
	}
}
