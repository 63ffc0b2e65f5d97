package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/exproxy/exproxy/config"
	"github.com/exproxy/exproxy/extensions/contention"
	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
)

// TestExtensionsStaleCountsExact drives versioned writes through the
// extensions as serve wires them: EXCAS, EXSET ... VER and CAS with
// spoiled reads, counting refusals on the client side. The tracker learns
// what a write came to only from proxy.Event.Outcome, which exstring
// fills; the two extensions never import each other, so this is where
// they are tested together.
func TestExtensionsStaleCountsExact(t *testing.T) {
	// Both upstream modes here, whatever EXPROXY_TEST_UPSTREAM_MODE says:
	// make test's second pass, in shared mode, does not run this package.
	for _, mode := range []proxy.UpstreamMode{proxy.PinnedUpstream, proxy.SharedUpstream} {
		t.Run(mode.String(), func(t *testing.T) {
			rs := redistest.Start(t)
			buf := &proxytest.SyncBuffer{}
			log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), buf, zap.InfoLevel))
			cfg := config.Default()
			cfg.Contention.Window = time.Hour // one window, ended by Close
			ctx, cancel := context.WithTimeout(context.Background(), proxytest.IOTimeout)
			defer cancel()
			ext, err := buildExtensions(ctx, cfg, proxy.Upstream{Network: "tcp", Addr: rs.Addr}, log)
			if err != nil {
				t.Fatal(err)
			}
			defer ext.close()
			if err := ext.exstring.Load(ctx); err != nil {
				t.Fatalf("loading the exstring library: %v", err)
			}
			p := proxytest.StartProxy(t, rs.Addr, proxytest.WithRewriters(ext.rewriters...), proxytest.WithObservers(ext.observers...),
				proxytest.WithOptions(func(o *proxy.Options) { o.Mode = mode }))

			const clients, rounds = 4, 40
			type tally struct{ stale, casFailed, verOK, casOK int64 }
			results := make([]tally, clients)
			spoiler := newClient(t, p.Addr, 3, "spoiler")
			defer spoiler.Close()
			if err := spoiler.Do(ctx, "EXSET", "ver:1", "0").Err(); err != nil {
				t.Fatalf("EXSET through the proxy: %v", err)
			}
			if err := spoiler.Set(ctx, "plain:1", "0", 0).Err(); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for c := 0; c < clients; c++ {
				wg.Add(1)
				go func(c int) {
					defer wg.Done()
					cl := newClient(t, p.Addr, 2+c%2, "ver-"+strconv.Itoa(c))
					defer cl.Close()
					for i := 0; i < rounds; i++ {
						v, err := cl.Do(ctx, "EXGET", "ver:1").Slice()
						if err != nil {
							errs <- fmt.Errorf("EXGET: %w", err)
							return
						}
						ver := v[1].(int64)
						if i%3 == 0 { // spoil: the version moves on before our write
							if err := spoiler.Do(ctx, "EXSET", "ver:1", "s").Err(); err != nil {
								errs <- err
								return
							}
						}
						switch i % 2 {
						case 0:
							r, err := cl.Do(ctx, "EXCAS", "ver:1", "x", ver).Slice()
							if err != nil {
								errs <- fmt.Errorf("EXCAS: %w", err)
								return
							}
							if r[0] == "CAS_FAILED" {
								results[c].stale++
							} else {
								results[c].verOK++
							}
						default:
							err := cl.Do(ctx, "EXSET", "ver:1", "y", "VER", ver).Err()
							if err != nil && err.Error() == "ERR update version is stale" {
								results[c].stale++
							} else if err != nil {
								errs <- fmt.Errorf("EXSET: %w", err)
								return
							} else {
								results[c].verOK++
							}
						}
						// CAS on a plain string: compare against a value that is
						// right only when nobody else wrote in between.
						old, err := cl.Get(ctx, "plain:1").Result()
						if err != nil {
							errs <- err
							return
						}
						if i%5 == 0 {
							if err := spoiler.Set(ctx, "plain:1", "spoiled-"+strconv.Itoa(c*1000+i), 0).Err(); err != nil {
								errs <- err
								return
							}
						}
						n, err := cl.Do(ctx, "CAS", "plain:1", old, "c"+strconv.Itoa(c*1000+i)).Int64()
						if err != nil {
							errs <- fmt.Errorf("CAS: %w", err)
							return
						}
						if n == 0 {
							results[c].casFailed++
						} else {
							results[c].casOK++
						}
					}
				}(c)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			_ = spoiler.Close()
			p.Shutdown(t)
			ext.close()
			var want tally
			for _, r := range results {
				want.stale += r.stale
				want.casFailed += r.casFailed
				want.verOK += r.verOK
				want.casOK += r.casOK
			}
			got := staleInWindows(t, buf.String())
			t.Logf("clients: %d stale, %d cas_failed; logged %d, %d", want.stale, want.casFailed, got.Stale, got.CASFailed)
			if want.stale == 0 || want.casFailed == 0 {
				t.Fatalf("the spoiled writes did not fail: %+v", want)
			}
			if got.Stale != want.stale || got.CASFailed != want.casFailed {
				t.Errorf("logged stale %d cas_failed %d; clients %d %d", got.Stale, got.CASFailed, want.stale, want.casFailed)
			}
			// Successes beside failures: the applied EXCAS/EXSET ... VER
			// and CAS (the spoiler's unconditional EXSET and SET are not
			// attempts that could conflict, and are not counted).
			if got.VersionedCommits != want.verOK || got.CASCommits != want.casOK {
				t.Errorf("logged versioned_commits %d cas_commits %d; clients %d %d", got.VersionedCommits, got.CASCommits, want.verOK, want.casOK)
			}
			// Every refusal is attributed somewhere: to the spoiler or a
			// client (through this proxy) or to the outside.
			if n := got.Attributed + got.Outside + got.Unattributed; n != want.stale+want.casFailed || got.Attributed == 0 {
				t.Errorf("attributed %d + outside %d + unattributed %d; %d refusals", got.Attributed, got.Outside, got.Unattributed, want.stale+want.casFailed)
			}
		})
	}
}

// newClient is a go-redis client of addr with one connection, so one
// proxy session per client, named name.
func newClient(tb testing.TB, addr string, proto int, name string) *redis.Client {
	return proxytest.NewGoRedis(tb, addr, proto, func(o *redis.Options) {
		o.ClientName = name
		o.PoolSize = 1
	})
}

// staleInWindows adds up the stale and cas_failed counts of every
// contention.window event in a JSON log.
func staleInWindows(t *testing.T, log string) (sum contention.Row) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg string `json:"msg"`
			contention.Row
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, sc.Text())
		}
		if line.Msg == contention.MsgWindow {
			sum.Stale += line.Stale
			sum.CASFailed += line.CASFailed
			sum.VersionedCommits += line.VersionedCommits
			sum.CASCommits += line.CASCommits
			sum.Attributed += line.Attributed
			sum.Outside += line.Outside
			sum.Unattributed += line.Unattributed
		}
	}
	return sum
}
