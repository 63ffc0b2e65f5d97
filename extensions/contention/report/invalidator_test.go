package report

// End to end: a real redis-server, the proxy core with the tracker as its
// observer (and WriteWatcher), go-redis clients that count their own
// outcomes, and the report over what the tracker logged.

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/exproxy/exproxy/extensions/contention"
	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
)

func named(tb testing.TB, addr string, proto int, name string) *redis.Client {
	return proxytest.NewGoRedis(tb, addr, proto, func(o *redis.Options) {
		o.ClientName = name
		o.PoolSize = 1
	})
}

// waitForWriteHook waits until the proxy reports writes to watched keys:
// the core reads Redis's command table in the background at start. It
// uses clients of its own, so the test's numbers are untouched but for
// the probe key's.
func waitForWriteHook(t *testing.T, tr *contention.Tracker, proxyAddr string) {
	t.Helper()
	ctx := context.Background()
	watcher := named(t, proxyAddr, 2, "probe-watcher")
	writer := named(t, proxyAddr, 2, "probe-writer")
	defer watcher.Close()
	defer writer.Close()
	h := tr.Handler()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		err := watcher.Watch(ctx, func(tx *redis.Tx) error {
			if err := writer.Set(ctx, "probe", "x", 0).Err(); err != nil {
				return err
			}
			_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error { p.Set(ctx, "probe", "y", 0); return nil })
			return err
		}, "probe")
		if err != nil && !errors.Is(err, redis.TxFailedErr) {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		var body struct {
			Current contention.Window `json:"current"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if body.Current.Totals.Attributed > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the proxy core never reported a write to a watched key (proxy.WriteWatcher)")
}

// TestReportNamesTheInvalidator: "checkout" increments a key with a
// WATCH retry loop through the proxy; between its WATCH and EXEC,
// "billing" (through the same proxy) or a client connected to Redis
// directly writes the key. Every abort is one of those writes; the report
// names billing, its command and the key with exactly billing's own count
// of interfering writes, and the direct writes as outside this proxy.
func TestReportNamesTheInvalidator(t *testing.T) {
	rs := redistest.Start(t)
	buf := &proxytest.SyncBuffer{}
	cfg := contention.DefaultConfig()
	cfg.Window = time.Hour
	cfg.AbortEvents, cfg.AbortRateLimit = true, 10000
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	tr, err := contention.New(cfg, contention.Deps{Logger: zap.New(zapcore.NewCore(enc, buf, zap.InfoLevel)), Instance: "pod-a"})
	if err != nil {
		t.Fatal(err)
	}
	p := proxytest.StartProxy(t, rs.Addr, proxytest.WithObservers(tr))
	waitForWriteHook(t, tr, p.Addr)

	ctx := context.Background()
	victim := named(t, p.Addr, 3, "checkout")
	billing := named(t, p.Addr, 2, "billing")
	direct := proxytest.NewGoRedis(t, rs.Addr, 2)
	const key, rounds = "stock:42", 60
	var aborts, commits, billingWrites, directWrites int64
	for i := 0; i < rounds; i++ {
		for attempt := 0; ; attempt++ {
			err := victim.Watch(ctx, func(tx *redis.Tx) error {
				n, err := tx.Get(ctx, key).Int64()
				if err != nil && !errors.Is(err, redis.Nil) {
					return err
				}
				if attempt == 0 {
					switch i % 3 {
					case 0:
						if err := billing.Incr(ctx, key).Err(); err != nil {
							return err
						}
						billingWrites++
					case 1:
						if err := direct.Incr(ctx, key).Err(); err != nil {
							return err
						}
						directWrites++
					}
				}
				_, err = tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
					pipe.Set(ctx, key, n+1, 0)
					return nil
				})
				return err
			}, key)
			if errors.Is(err, redis.TxFailedErr) {
				aborts++
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			commits++
			break
		}
	}
	_ = victim.Close()
	_ = billing.Close()
	p.Shutdown(t)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if aborts != billingWrites+directWrites {
		t.Fatalf("checkout counted %d aborts, but %d + %d writes interfered", aborts, billingWrites, directWrites)
	}
	log := buf.String()

	// --by invalidator: billing, its command and the key, and outside.
	out, stderr, code := run(t, log, "--by", "invalidator", "--format", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rows := map[string]Row{}
	for _, r := range jsonRows(t, out) {
		rows[r.Invalidator] = r
	}
	b := rows["billing"]
	if b.Aborts != billingWrites || b.Conflicts != billingWrites ||
		!reflect.DeepEqual(b.InvalidatedKeys, []contention.Link{{Key: key, Command: "incr", Aborts: billingWrites}}) ||
		!reflect.DeepEqual(b.Clients, []string{"checkout"}) {
		t.Errorf("billing wrote %d times between checkout's WATCH and EXEC; report row %+v", billingWrites, b)
	}
	// (The probe's first tries may have come before the core knew the
	// command table: count the test's key only.)
	var outside int64
	for _, l := range rows[contention.OutsideLabel].InvalidatedKeys {
		if l.Key == key {
			outside += l.Aborts
		}
	}
	if outside != directWrites {
		t.Errorf("%d direct writes; outside row %+v", directWrites, rows[contention.OutsideLabel])
	}
	if len(rows) != 3 { // billing, outside and the probe's writer
		t.Errorf("invalidators %v", rows)
	}

	// --by key: the key names billing and outside, with the counts.
	out, _, _ = run(t, log, "--by", "key", "--format", "json")
	var k Row
	for _, r := range jsonRows(t, out) {
		if r.Key == key {
			k = r
		}
	}
	wantLinks := []contention.Link{{Invalidator: "billing", Command: "incr", Aborts: billingWrites}, {Invalidator: contention.OutsideLabel, Aborts: directWrites}}
	contention.SortLinks(wantLinks)
	if k.Aborts != aborts || k.Commits != commits || k.Attributed != billingWrites || k.Outside != directWrites || !reflect.DeepEqual(k.Invalidators, wantLinks) {
		t.Errorf("key row %+v\nwant aborts %d commits %d, invalidators %+v", k, aborts, commits, wantLinks)
	}

	// CSV: the new columns come last, by name.
	out, _, _ = run(t, log, "--by", "key", "--format", "csv")
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	for _, r := range recs[1:] {
		if r[0] != key {
			continue
		}
		// billing and the outside tie at 20 each: the client comes first.
		if want := "billing incr " + strconv.FormatInt(billingWrites, 10); billingWrites == directWrites && r[col["top_invalidator"]] != want {
			t.Errorf("csv top_invalidator %q, want %q", r[col["top_invalidator"]], want)
		}
		if r[col["attributed"]] != strconv.FormatInt(billingWrites, 10) || r[col["outside"]] != strconv.FormatInt(directWrites, 10) {
			t.Errorf("csv attributed %s outside %s", r[col["attributed"]], r[col["outside"]])
		}
	}

	// The table says it in words.
	out, _, _ = run(t, log, "--by", "key")
	if !strings.Contains(out, "billing incr") || !strings.Contains(out, key) {
		t.Errorf("table:\n%s", out)
	}
	out, _, _ = run(t, log, "--by", "invalidator")
	if !strings.Contains(out, "billing") || !strings.Contains(out, contention.OutsideLabel) || !strings.Contains(out, key+" incr") {
		t.Errorf("invalidator table:\n%s", out)
	}
	t.Logf("checkout: %d commits, %d aborts; billing %d writes, direct %d\n%s", commits, aborts, billingWrites, directWrites, out)

	// The per-abort events name the blocker.
	var byBilling, byOutside int64
	for _, l := range strings.Split(log, "\n") {
		var e struct {
			Msg            string `json:"msg"`
			Client         string `json:"client"`
			Blocker        string `json:"blocker"`
			BlockerCommand string `json:"blocker_command"`
			BlockerKey     string `json:"blocker_key"`
		}
		if json.Unmarshal([]byte(l), &e) != nil || e.Msg != contention.MsgAbort || e.Client != "checkout" {
			continue
		}
		switch {
		case e.Blocker == "billing" && e.BlockerCommand == "incr" && e.BlockerKey == key:
			byBilling++
		case e.Blocker == contention.OutsideLabel:
			byOutside++
		default:
			t.Errorf("abort event %s", l)
		}
	}
	if byBilling != billingWrites || byOutside != directWrites {
		t.Errorf("abort events: %d by billing, %d outside; want %d, %d", byBilling, byOutside, billingWrites, directWrites)
	}
}
