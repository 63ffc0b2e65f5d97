package exstring

// End-to-end tests in front of a Redis Cluster (3 primaries, 3
// replicas), shared by the tests below and started on first use: the
// library on every primary, the spec's examples and the pipeline across
// a FUNCTION FLUSH on a cluster, and 32 clients doing EXCAS increments on
// keys in every slot while a primary is killed and while slots move.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zapcore"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
	pcluster "github.com/exproxy/exproxy/proxy/cluster"
)

var (
	clusterOnce sync.Once
	theCluster  *redistest.Cluster
	clusterErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if theCluster != nil {
		theCluster.Stop()
	}
	os.Exit(code)
}

func needCluster(t *testing.T) *redistest.Cluster {
	t.Helper()
	clusterOnce.Do(func() { theCluster, clusterErr = redistest.NewCluster() })
	if clusterErr != nil {
		t.Fatalf("cluster: %v", clusterErr)
	}
	return theCluster
}

// clusterE2E is the extension and the proxy in front of the shared
// cluster.
type clusterE2E struct {
	*proxytest.ClusterHarness
	ext *Extension
}

func startClusterE2E(t *testing.T, cfg Config) *clusterE2E {
	t.Helper()
	c := needCluster(t)
	seeds := c.Addrs()
	log, _ := proxytest.NewLogger(t, zapcore.InfoLevel)
	ext := newExt(t, cfg, Deps{Upstream: proxy.Upstream{Network: "tcp", Addr: seeds[0], Cluster: true, Seeds: seeds}, Logger: log})
	ext.Start(context.Background())
	x := &clusterE2E{ClusterHarness: proxytest.StartCluster(t, c, proxytest.WithRewriters(ext)), ext: ext}
	x.WaitReady(t)
	x.waitLoaded(t)
	return x
}

// waitLoaded waits until the library is on every primary.
func (x *clusterE2E) waitLoaded(t *testing.T) {
	t.Helper()
	proxytest.Eventually(t, "the library on every primary", func() bool {
		for _, n := range x.Cluster.Primaries(t) {
			if !x.hasLibrary(n) {
				return false
			}
		}
		return true
	})
}

func (x *clusterE2E) hasLibrary(n *redistest.ClusterNode) bool {
	if x.ext.Mode() == "evalsha" {
		ex, err := x.Cluster.Client(n).ScriptExists(context.Background(), ScriptSHA("exset")).Result()
		return err == nil && ex[0]
	}
	libs, err := x.Cluster.Client(n).FunctionList(context.Background(), redis.FunctionListQuery{LibraryNamePattern: LibraryName()}).Result()
	return err == nil && len(libs) == 1
}

func (x *clusterE2E) raw(t *testing.T, proto int) *proxytest.Conn {
	rc := proxytest.Dial(t, x.Addr)
	if proto == 3 {
		if got := rc.Do("HELLO", "3"); !strings.HasPrefix(got, "%") {
			t.Fatalf("HELLO 3: %q", got)
		}
	}
	return rc
}

func (x *clusterE2E) flushData(t *testing.T) {
	x.FlushAll(t)
}

// target is the cluster as the byte-exact cases of proxy_test.go see it.
func (x *clusterE2E) target() *target {
	return &target{
		addr:   x.Addr,
		raw:    x.raw,
		client: x.Client,
		direct: func(t *testing.T, key string) *proxytest.Conn {
			return proxytest.Dial(t, x.Cluster.SlotOwner(t, pcluster.SlotString(key)).Addr)
		},
		flushLibrary: func(t *testing.T) {
			for _, n := range x.Cluster.Primaries(t) {
				if err := x.Cluster.Client(n).FunctionFlush(ctxT(t)).Err(); err != nil {
					t.Fatal(err)
				}
			}
		},
	}
}

// TestClusterConformance runs proxy_test.go's byte-exact cases through
// one proxy in front of the package's cluster, their keys on several
// nodes. Not here: what needs a Redis of its own (ACL users, renamed
// commands, a restart) and the concurrent increments, whose cluster form
// is the EXCAS load tests below.
func TestClusterConformance(t *testing.T) {
	x := startClusterE2E(t, Config{})
	tg := x.target()
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *target)
	}{
		{"MultiExec", runMultiExec},
		{"CommandIntrospection", runCommandIntrospection},
		{"RedisCLI", runRedisCLI},
		{"RetryMinimal", runRetryMinimal},
		{"FlushInsideTransaction", runFlushInsideTransaction},
		{"ExecElements", runExecElements},
		{"LongReplyIntegers", runLongReplyIntegers},
		{"SubscribedContext", runSubscribedContext},
		{"LenientLineEnds", runLenientLineEnds},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x.flushData(t)
			tc.run(t, tg)
			// A case that flushed the library leaves it reloaded only on
			// the nodes its commands reached; the next case's
			// transactions could not recover it (their commands are not
			// resent), as on one Redis, which each case starts afresh.
			for _, n := range x.Cluster.Primaries(t) {
				if err := x.Cluster.Client(n).FunctionLoadReplace(ctxT(t), Library()).Err(); err != nil {
					t.Fatalf("FUNCTION LOAD on %s: %v", n.Addr, err)
				}
			}
		})
	}
	t.Run("SubscribedContext/evalsha", func(t *testing.T) {
		xs := startClusterE2E(t, Config{Scripts: true})
		xs.flushData(t)
		runSubscribedContext(t, xs.target())
	})
}

// The library is loaded on every primary as the proxy names them, and a
// primary that lost it gets it again when a command there needs it.
func TestClusterLibraryOnEveryNode(t *testing.T) {
	x := startClusterE2E(t, Config{})
	nodes := x.ext.Nodes()
	for _, n := range x.Cluster.Primaries(t) {
		if !slices.Contains(nodes, n.Addr) {
			t.Fatalf("the extension loads on %v, not on primary %s", nodes, n.Addr)
		}
	}
	rdb := x.Client(t, 2)
	for _, n := range x.Cluster.Primaries(t) {
		if err := x.Cluster.Client(n).FunctionFlush(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 30; i++ {
		k := "lib:" + strconv.Itoa(i)
		if err := rdb.Do(ctxT(t), "EXSET", k, "v").Err(); err != nil {
			t.Fatalf("EXSET %s after FUNCTION FLUSH on every node: %v", k, err)
		}
	}
	x.waitLoaded(t)
}

func TestClusterSpecExamples(t *testing.T) {
	x := startClusterE2E(t, Config{})
	runSpecExamples(t, x.raw, x.flushData)
}

func TestClusterSpecExamplesScripts(t *testing.T) {
	x := startClusterE2E(t, Config{Scripts: true})
	runSpecExamples(t, x.raw, x.flushData)
}

// A pipeline across every node with FUNCTION FLUSH (sent to every
// primary) in the middle: every reply comes back, right and in order.
func TestClusterPipelineAcrossFlush(t *testing.T) {
	x := startClusterE2E(t, Config{AnswerStale: true}) // doomed EXCAS answered in the proxy, as by default
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			x.flushData(t)
			ctx := ctxT(t)
			rdb := x.Client(t, proto)
			cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i := 0; i < 100; i++ {
					switch {
					case i == 50:
						p.Do(ctx, "FUNCTION", "FLUSH")
					case i%4 == 0:
						p.Do(ctx, "EXSET", "k"+strconv.Itoa(i), "v"+strconv.Itoa(i))
					case i%4 == 1:
						p.Do(ctx, "EXGET", "k"+strconv.Itoa(i-1))
					case i%4 == 2:
						p.Do(ctx, "EXINCRBY", "cnt"+strconv.Itoa(i%3), "1")
					default:
						p.Do(ctx, "INCR", "plain"+strconv.Itoa(i%5))
					}
				}
				return nil
			})
			if err != nil {
				t.Fatalf("pipeline: %v", err)
			}
			incr := map[string]int64{}
			for i, c := range cmds {
				v, err := c.(*redis.Cmd).Result()
				if err != nil {
					t.Errorf("command %d %v: %v", i, c.Args(), err)
					continue
				}
				var want any
				switch {
				case i == 50, i%4 == 0:
					want = "OK"
				case i%4 == 1:
					want = fmt.Sprint([]any{"v" + strconv.Itoa(i-1), int64(1)})
					v = fmt.Sprint(v)
				default:
					k := fmt.Sprint(c.Args()[1])
					incr[k]++
					want = incr[k]
				}
				if v != want {
					t.Errorf("reply %d to %v = %#v, want %#v", i, c.Args(), v, want)
				}
			}
		})
	}
	x.waitLoaded(t)
}

// excasLoad runs 32 clients doing EXCAS increments on keys in every
// slot until stop, counting the increments acknowledged per key.
// Errors a client may see while a node fails (the connection closed
// with a command in flight, a CLUSTERDOWN past the wait bound) are
// counted apart: their increments' fate is unknown.
type excasLoad struct {
	keys    []string
	acked   []atomic.Int64
	unknown []atomic.Int64
	errs    sync.Map
	ops     atomic.Int64
	stop    atomic.Bool
	wg      sync.WaitGroup
}

func startEXCAS(t *testing.T, x *clusterE2E, nkeys int) *excasLoad {
	l := &excasLoad{acked: make([]atomic.Int64, nkeys), unknown: make([]atomic.Int64, nkeys)}
	rdb := x.Client(t, 2)
	for i := 0; i < nkeys; i++ {
		// Keys spread over the slots: i*16384/nkeys is the slot aimed
		// at, found with a hash tag.
		k := fmt.Sprintf("{%s}:ex", tagForSlot(i*16384/nkeys))
		l.keys = append(l.keys, k)
		if err := rdb.Do(ctxT(t), "EXSET", k, "0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	for w := 0; w < 32; w++ {
		l.wg.Add(1)
		go func(w int) {
			defer l.wg.Done()
			cl := x.Client(t, 2+w%2, func(o *redis.Options) { o.ReadTimeout = 30 * time.Second })
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for !l.stop.Load() {
				i := rng.IntN(nkeys)
				l.increment(cl, i)
				l.ops.Add(1)
			}
		}(w)
	}
	return l
}

// increment adds one to key i with EXGET + EXCAS, retrying on a stale
// version.
func (l *excasLoad) increment(cl *redis.Client, i int) {
	ctx := context.Background()
	k := l.keys[i]
	cur, err := cl.Do(ctx, "EXGET", k).Slice()
	if err != nil {
		l.errs.Store("EXGET: "+err.Error(), true)
		return
	}
	for tries := 0; tries < 100 && !l.stop.Load(); tries++ {
		n, _ := strconv.ParseInt(cur[0].(string), 10, 64)
		r, err := cl.Do(ctx, "EXCAS", k, strconv.FormatInt(n+1, 10), cur[1]).Slice()
		if err != nil {
			// Sent, and no reply: applied or not, nobody can tell.
			l.unknown[i].Add(1)
			l.errs.Store("EXCAS: "+err.Error(), true)
			return
		}
		if r[0] == "OK" {
			l.acked[i].Add(1)
			return
		}
		cur = r[1:]
	}
}

func (l *excasLoad) finish(t *testing.T, x *clusterE2E) (errors []string) {
	l.stop.Store(true)
	l.wg.Wait()
	l.errs.Range(func(k, _ any) bool {
		errors = append(errors, k.(string))
		return true
	})
	rdb := x.Client(t, 2)
	applied := 0
	defer func() { t.Logf("%d increments of unknown outcome were applied", applied) }()
	for i, k := range l.keys {
		v, err := rdb.Do(ctxT(t), "EXGET", k).Slice()
		if err != nil {
			t.Fatalf("EXGET %s: %v", k, err)
		}
		n, _ := strconv.ParseInt(v[0].(string), 10, 64)
		a, u := l.acked[i].Load(), l.unknown[i].Load()
		if n < a || n > a+u {
			t.Errorf("%s = %d: %d increments acknowledged, %d of unknown outcome", k, n, a, u)
		}
		applied += int(n - a)
	}
	return errors
}

func tagForSlot(slot int) string {
	for i := 0; ; i++ {
		tag := "s" + strconv.Itoa(i)
		if pcluster.SlotString(tag) == slot {
			return tag
		}
	}
}

// Slots move (key by key, then with redis-cli --cluster reshard) while 32
// clients increment keys in every slot with EXCAS: no client sees an
// error, and the final values are the acknowledged increments.
func TestClusterEXCASUnderReshard(t *testing.T) {
	x := startClusterE2E(t, Config{AnswerStale: true}) // doomed EXCAS answered in the proxy, as by default
	c := x.Cluster
	l := startEXCAS(t, x, 256)
	time.Sleep(300 * time.Millisecond)
	prims := c.Primaries(t)
	c.MoveSlots(t, prims[0], prims[1], 64)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.ReshardCLI(ctx, prims[1], prims[2], 200); err != nil {
		t.Fatalf("redis-cli reshard: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	if errs := l.finish(t, x); len(errs) > 0 {
		t.Errorf("clients saw errors while slots moved: %v", errs)
	}
	t.Logf("%d increments", l.ops.Load())
}

// A primary is killed (SIGKILL) while 32 clients increment keys in every
// slot with EXCAS: commands to its slots wait for the replica that takes
// over; clients that had a command in flight on it see their connection
// close (as with one Redis); every acknowledged increment survives.
func TestClusterEXCASUnderFailover(t *testing.T) {
	x := startClusterE2E(t, Config{AnswerStale: true}) // doomed EXCAS answered in the proxy, as by default
	c := x.Cluster
	l := startEXCAS(t, x, 256)
	time.Sleep(300 * time.Millisecond)
	killed, promoted := c.KillPrimary(t, 1)
	t.Logf("killed %s, %s took over", killed.Addr, promoted.Addr)
	time.Sleep(500 * time.Millisecond)
	errs := l.finish(t, x)
	for _, e := range errs {
		// Only what one Redis going away gives: a dropped connection.
		if !strings.Contains(e, "EOF") && !strings.Contains(e, "connection reset") && !strings.Contains(e, "broken pipe") {
			t.Errorf("a client saw: %s", e)
		}
	}
	t.Logf("%d increments; errors: %v", l.ops.Load(), errs)
	if !slices.Contains(x.ext.Nodes(), promoted.Addr) {
		t.Errorf("the library is not loaded on the promoted primary %s (loads on %v)", promoted.Addr, x.ext.Nodes())
	}
	c.Restart(t, killed)
}

// A manual CLUSTER FAILOVER (a planned switch to a replica) while 32
// clients increment keys in every slot with EXCAS: no client sees an
// error, and the final values are the acknowledged increments.
func TestClusterEXCASUnderManualFailover(t *testing.T) {
	x := startClusterE2E(t, Config{AnswerStale: true}) // doomed EXCAS answered in the proxy, as by default
	c := x.Cluster
	l := startEXCAS(t, x, 256)
	time.Sleep(300 * time.Millisecond)
	prim := c.Primaries(t)[2]
	replicas := c.ReplicasOf(t, prim)
	if len(replicas) == 0 {
		t.Fatalf("primary %s has no replica", prim.Addr)
	}
	c.Failover(t, replicas[0])
	t.Logf("%s took over from %s", replicas[0].Addr, prim.Addr)
	time.Sleep(300 * time.Millisecond)
	if errs := l.finish(t, x); len(errs) > 0 {
		t.Errorf("clients saw errors during a manual failover: %v", errs)
	}
	t.Logf("%d increments", l.ops.Load())
}
