package exstring

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zapcore"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
)

func TestGroupOf(t *testing.T) {
	args := func(s ...string) [][]byte {
		out := make([][]byte, len(s))
		for i := range s {
			out[i] = []byte(s[i])
		}
		return out
	}
	tests := []struct {
		args []string
		want uint16
	}{
		{[]string{"EXCAS", "k", "v", "0"}, groupArgs},
		{[]string{"EXCAS", "k", "v", "17"}, groupArgs},
		{[]string{"EXCAS", "k", "v", "999999999999999999"}, groupArgs},
		{[]string{"EXCAS", "k", "v", "1000000000000000000"}, 0}, // 19 digits: range checks in the Lua
		{[]string{"EXCAS", "k", "v", "01"}, 0},                  // not a version the Lua parses
		{[]string{"EXCAS", "k", "v", "-1"}, 0},                  // a syntax error in the Lua
		{[]string{"EXCAS", "k", "v", "1x"}, 0},
		{[]string{"EXCAS", "k", "v", ""}, 0},
		{[]string{"EXCAS", "k", "v", "1", "EX", "10"}, 0}, // options: not grouped
		{[]string{"EXCAS", "k", "v"}, 0},
	}
	for _, tt := range tests {
		if got := groupOf(args(tt.args...), len(tt.args)); got != tt.want {
			t.Errorf("groupOf(%q) = %b, want %b", tt.args, got, tt.want)
		}
	}
	if got := groupOf(args("EXCAS", "k", "v"), 4); got != 0 {
		t.Errorf("groupOf of a command cut short = %b, want 0", got)
	}
}

func TestFollow(t *testing.T) {
	c := &command{name: "excas"}
	lead := [][]byte{[]byte("k"), []byte("new"), []byte("7")}
	tests := []struct{ leader, want string }{
		{"*3\r\n+OK\r\n+\r\n:8\r\n", "*3\r\n+CAS_FAILED\r\n$3\r\nnew\r\n:8\r\n"},
		{"*3\r\n+OK\r\n+\r\n$19\r\n9007199254740993000\r\n", "*3\r\n+CAS_FAILED\r\n$3\r\nnew\r\n$19\r\n9007199254740993000\r\n"},
		{"*3\r\n+CAS_FAILED\r\n$3\r\nold\r\n:9\r\n", "*3\r\n+CAS_FAILED\r\n$3\r\nold\r\n:9\r\n"},
		{":-1\r\n", ":-1\r\n"},
		{"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n", "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"},
		{"-ERR Function not found\r\n", "-ERR Function not found\r\n"},
	}
	for _, tt := range tests {
		if got := string(c.Follow([]byte("keep"), []byte(tt.leader), lead)); got != "keep"+tt.want {
			t.Errorf("Follow(%q) = %q, want %q", tt.leader, got, "keep"+tt.want)
		}
	}
}

// followPair is one Redis with two proxies in front of it, sharing
// upstream connections (where grouping happens): one answers stale EXCAS
// itself, the other sends every command.
type followPair struct {
	redis         *redistest.Server
	grouped, each *proxytest.Harness
}

func startFollowPair(t *testing.T, preload bool) *followPair {
	t.Helper()
	srv := redistest.Start(t)
	start := func(answer bool) *proxytest.Harness {
		deps := Deps{Upstream: proxy.Upstream{Addr: srv.Addr}}
		deps.Logger, _ = proxytest.NewLogger(t, zapcore.InfoLevel)
		ext := newExt(t, Config{Enabled: true, AnswerStale: answer}, deps)
		if preload {
			if err := ext.Load(ctxT(t)); err != nil {
				t.Fatalf("Load: %v", err)
			}
		}
		return proxytest.StartFor(t, srv, proxytest.WithRewriters(ext),
			proxytest.WithOptions(func(o *proxy.Options) { o.Mode = proxy.SharedUpstream }))
	}
	return &followPair{redis: srv, grouped: start(true), each: start(false)}
}

// fcalls is how many FCALLs Redis has run.
func fcalls(t *testing.T, h *proxytest.Harness) int {
	t.Helper()
	info := h.DirectRaw(t).Do("INFO", "commandstats")
	i := strings.Index(info, "cmdstat_fcall:calls=")
	if i < 0 {
		return 0
	}
	rest := info[i+len("cmdstat_fcall:calls="):]
	n, err := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
	if err != nil {
		t.Fatalf("commandstats: %q", info)
	}
	return n
}

// followSide is a proxy in front of Redis (or a Redis Cluster), as the
// grouping tests need it.
type followSide struct {
	raw      func(t *testing.T) *proxytest.Conn
	flushAll func(t *testing.T)
	flushLib func(t *testing.T)
	answered func() int64
	fcalls   func(t *testing.T) int // nil: not counted (a cluster)
}

func (p *followPair) sides() (grouped, each followSide) {
	side := func(h *proxytest.Harness) followSide {
		return followSide{
			raw:      func(t *testing.T) *proxytest.Conn { return h.ProxyRaw(t) },
			flushAll: func(t *testing.T) { h.DirectRaw(t).Do("FLUSHALL") },
			flushLib: func(t *testing.T) { h.DirectRaw(t).Do("FUNCTION", "FLUSH") },
			answered: func() int64 { return h.Srv.Stats().AnsweredByLeader },
			fcalls:   func(t *testing.T) int { return fcalls(t, h) },
		}
	}
	return side(p.grouped), side(p.each)
}

const bigVersion = "9007199254740993" // beyond 2^53: the Lua hands it back as a bulk string

// followCases are pipelines, each written at once, and how many of their
// commands the grouping proxy answers itself.
var followCases = []struct {
	name     string
	setup    [][]string
	pipeline [][]string
	answered int // followers answered by the proxy
	flush    bool
}{
	{"the leader commits", [][]string{{"EXSET", "k", "v0"}},
		[][]string{{"EXCAS", "k", "a", "1"}, {"EXCAS", "k", "b", "1"}, {"EXCAS", "k", "c", "1"}}, 2, false},
	{"the leader is stale", [][]string{{"EXSET", "k", "v0"}, {"EXSET", "k", "v1"}},
		[][]string{{"EXCAS", "k", "a", "1"}, {"EXCAS", "k", "b", "1"}, {"EXCAS", "k", "c", "1"}}, 2, false},
	{"no such key", nil,
		[][]string{{"EXCAS", "k", "a", "1"}, {"EXCAS", "k", "b", "1"}}, 1, false},
	{"wrong type", [][]string{{"RPUSH", "k", "x"}},
		[][]string{{"EXCAS", "k", "a", "1"}, {"EXCAS", "k", "b", "1"}}, 1, false},
	{"groups among other commands", [][]string{{"EXSET", "k", "v0"}, {"EXSET", "j", "w0"}},
		[][]string{{"EXCAS", "k", "a", "1"}, {"EXCAS", "k", "b", "1"}, {"EXCAS", "j", "x", "1"}, {"EXCAS", "j", "y", "1"},
			{"GET", "p"}, {"EXCAS", "k", "c", "1"}, {"EXCAS", "k", "d", "2"}, {"EXCAS", "k", "e", "2"}, {"INCR", "n"}}, 3, false},
	// One client's commands run in the order it sent them: a command
	// may not be answered as if it ran right after its leader when an
	// earlier command of the same client runs after that leader.
	{"a client's own order is kept", [][]string{{"EXSET", "k", "v0"}, {"EXSET", "j", "w0"}},
		[][]string{{"EXCAS", "k", "a", "1"}, {"GET", "p"}, {"EXCAS", "j", "x", "1"}, {"EXCAS", "k", "b", "1"},
			{"INCR", "n"}, {"EXCAS", "j", "y", "1"}, {"EXCAS", "k", "c", "2"}, {"EXGET", "k"}, {"EXCAS", "k", "d", "1"}}, 0, false},
	{"versions beyond 2^53", [][]string{{"EXSET", "k", "v0", "ABS", bigVersion}},
		[][]string{{"EXCAS", "k", "a", bigVersion}, {"EXCAS", "k", "b", bigVersion}, {"EXCAS", "k", "c", bigVersion}}, 2, false},
	{"options are not grouped", [][]string{{"EXSET", "k", "v0"}},
		[][]string{{"EXCAS", "k", "a", "1", "EX", "100"}, {"EXCAS", "k", "b", "1", "EX", "100"}}, 0, false},
	{"versions the Lua refuses are not grouped", [][]string{{"EXSET", "k", "v0"}},
		[][]string{{"EXCAS", "k", "a", "01"}, {"EXCAS", "k", "b", "01"}, {"EXCAS", "k", "c", "-1"}, {"EXCAS", "k", "c", "-1"}}, 0, false},
	{"the library is gone", [][]string{{"EXSET", "k", "v0"}},
		[][]string{{"EXCAS", "k", "a", "1"}, {"EXCAS", "k", "b", "1"}, {"EXCAS", "k", "c", "1"}}, 2, true},
}

// runFollowCases runs each of followCases through the proxy that groups
// stale EXCAS and through the one that sends each, from the same state
// of Redis: the replies must be the same bytes, and so must the keys
// afterwards. It also checks that the grouping took place where it
// should (the counter, and fewer FCALLs where they are counted). tag
// prefixes every key (a hash tag puts them in one slot of a cluster).
func runFollowCases(t *testing.T, grouped, each followSide, tag string) {
	keyed := func(cmds [][]string) [][]string {
		out := make([][]string, len(cmds))
		for i, c := range cmds {
			out[i] = append([]string{c[0], tag + c[1]}, c[2:]...)
		}
		return out
	}
	for _, proto := range []int{2, 3} {
		for _, tt := range followCases {
			t.Run(fmt.Sprintf("%s/RESP%d", tt.name, proto), func(t *testing.T) {
				setup, pipeline := keyed(tt.setup), keyed(tt.pipeline)
				want := runPipeline(t, each, proto, setup, pipeline, tt.flush, tag)
				got := runPipeline(t, grouped, proto, setup, pipeline, tt.flush, tag)
				got.compare(t, want, pipeline)
				if got.answered != int64(tt.answered) {
					t.Errorf("%d commands answered by their leader, want %d", got.answered, tt.answered)
				}
				if grouped.fcalls != nil && !tt.flush && got.ran != want.ran-tt.answered {
					t.Errorf("Redis ran %d FCALLs for the grouped pipeline, want %d (%d sent one by one, less %d answered)",
						got.ran, want.ran-tt.answered, want.ran, tt.answered)
				}
			})
		}
	}
}

// pipelineRun is what one pipeline came to through one proxy.
type pipelineRun struct {
	replies  []string
	after    string // the keys afterwards
	ran      int    // FCALLs Redis ran, where counted
	answered int64  // commands the proxy answered from a leader's reply
}

// runPipeline sets up Redis's state, then writes the pipeline at once
// (one read of the proxy, one batch) through x.
func runPipeline(t *testing.T, x followSide, proto int, setup, pipeline [][]string, flush bool, tag string) (r pipelineRun) {
	t.Helper()
	x.flushAll(t)
	rc := x.raw(t)
	if proto == 3 {
		rc.Do("HELLO", "3")
	}
	for _, c := range setup {
		if got := rc.Do(c...); strings.HasPrefix(got, "-") {
			t.Fatalf("%q: %q", c, got)
		}
	}
	if flush {
		x.flushLib(t)
	}
	before, answeredBefore := 0, x.answered()
	if x.fcalls != nil {
		before = x.fcalls(t)
	}
	var all []byte
	for _, c := range pipeline {
		all = append(all, proxytest.EncodeCommand(c...)...)
	}
	rc.Write(all)
	r.replies = rc.ReadN(len(pipeline))
	if x.fcalls != nil {
		r.ran = x.fcalls(t) - before
	}
	r.answered = x.answered() - answeredBefore
	r.after = rc.Do("EXGET", tag+"k") + rc.Do("EXGET", tag+"j") + rc.Do("GET", tag+"n")
	return r
}

// compare fails the test where r differs from want, the same pipeline
// sent one command at a time.
func (r pipelineRun) compare(t *testing.T, want pipelineRun, pipeline [][]string) {
	t.Helper()
	for i := range want.replies {
		if r.replies[i] != want.replies[i] {
			t.Errorf("reply %d to %q: %q, want %q (as sent one by one)", i, pipeline[i], r.replies[i], want.replies[i])
		}
	}
	if r.after != want.after {
		t.Errorf("state afterwards %q, want %q", r.after, want.after)
	}
}

// TestFollowersRandomPipelines is runFollowCases on random pipelines of
// versioned and plain commands on two keys, where groups form, break and
// interleave: every reply and the keys afterwards must be what the
// proxy that sends each command gets.
func TestFollowersRandomPipelines(t *testing.T) {
	grouped, each := startFollowPair(t, true).sides()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	setup := [][]string{{"EXSET", "k", "a"}, {"EXSET", "j", "b"}}
	var answered int64
	rounds := 60
	if testing.Short() {
		rounds = 15
	}
	for round := 0; round < rounds; round++ {
		n := 4 + rng.IntN(12)
		pipeline := make([][]string, n)
		for i := range pipeline {
			key, ver, val := pick("k", "j"), pick("1", "2", "3"), "v"+strconv.Itoa(i)
			switch rng.IntN(10) {
			case 0:
				pipeline[i] = []string{"EXSET", key, val}
			case 1:
				pipeline[i] = []string{"EXGET", key}
			case 2:
				pipeline[i] = []string{"EXCAS", key, val, ver, "EX", "100"}
			case 3:
				pipeline[i] = []string{"DEL", key}
			case 4:
				pipeline[i] = []string{"INCR", "n"}
			default:
				pipeline[i] = []string{"EXCAS", key, val, ver}
			}
		}
		proto := 2 + rng.IntN(2)
		want := runPipeline(t, each, proto, setup, pipeline, false, "")
		got := runPipeline(t, grouped, proto, setup, pipeline, false, "")
		got.compare(t, want, pipeline)
		if got.ran != want.ran-int(got.answered) {
			t.Errorf("pipeline %q: Redis ran %d FCALLs, want %d less the %d answered", pipeline, got.ran, want.ran, got.answered)
		}
		if t.Failed() {
			t.Fatalf("pipeline %d (RESP%d) differs: %q", round, proto, pipeline)
		}
		answered += got.answered
	}
	if answered == 0 {
		t.Errorf("no command was answered by its leader in %d random pipelines", rounds)
	}
	t.Logf("%d commands answered by their leader", answered)
}

func TestFollowersAnswerAsRedisWould(t *testing.T) {
	grouped, each := startFollowPair(t, true).sides()
	runFollowCases(t, grouped, each, "")
}

// TestClusterFollowersAnswerAsRedisWould runs the same cases in front of
// a Redis Cluster, every key in one slot.
func TestClusterFollowersAnswerAsRedisWould(t *testing.T) {
	side := func(x *clusterE2E) followSide {
		tg := x.target()
		return followSide{
			raw:      func(t *testing.T) *proxytest.Conn { return tg.raw(t, 2) },
			flushAll: func(t *testing.T) { x.FlushAll(t) },
			flushLib: tg.flushLibrary,
			answered: func() int64 { return x.Srv.Stats().AnsweredByLeader },
		}
	}
	grouped := side(startClusterE2E(t, Config{Enabled: true, AnswerStale: true}))
	each := side(startClusterE2E(t, Config{Enabled: true}))
	runFollowCases(t, grouped, each, "{follow}")
}

// TestFollowersAcrossClients has many clients race EXCAS increments on
// one key through a proxy that groups them: no increment may be lost or
// counted twice, whoever's command led.
func TestFollowersAcrossClients(t *testing.T) {
	const workers, per = 32, 100
	p := startFollowPair(t, true)
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			rdb := p.grouped.Client(t, proto, func(o *redis.Options) { o.PoolSize = workers })
			key := "counter" + strconv.Itoa(proto)
			if err := rdb.Do(ctxT(t), "EXSET", key, "0").Err(); err != nil {
				t.Fatal(err)
			}
			var stale atomic.Int64
			before := p.grouped.Srv.Stats().AnsweredByLeader
			concurrently(t, workers, per, func(ctx context.Context) error {
				cur, err := rdb.Do(ctx, "EXGET", key).Slice()
				if err != nil {
					return err
				}
				for {
					n, _ := strconv.ParseInt(cur[0].(string), 10, 64)
					r, err := rdb.Do(ctx, "EXCAS", key, strconv.FormatInt(n+1, 10), cur[1]).Slice()
					if err != nil {
						return err
					}
					if r[0] == "OK" {
						return nil
					}
					if r[0] != "CAS_FAILED" {
						return fmt.Errorf("EXCAS replied %v", r)
					}
					stale.Add(1)
					cur = r[1:]
				}
			})
			got, err := rdb.Do(ctxT(t), "EXGET", key).Slice()
			if err != nil {
				t.Fatal(err)
			}
			if total := workers * per; got[0] != strconv.Itoa(total) || got[1] != int64(total)+1 {
				t.Errorf("%s = %v, want [%d %d]", key, got, total, total+1)
			}
			answered := p.grouped.Srv.Stats().AnsweredByLeader - before
			if answered > stale.Load() {
				t.Errorf("%d answered by their leader, but only %d refusals", answered, stale.Load())
			}
			t.Logf("%d refusals, %d of them answered by the proxy", stale.Load(), answered)
		})
	}
}

// TestFollowersLostWithTheirLeader: when the connection is lost with a
// group's leader unanswered, its followers' outcome is as unknown as the
// leader's, and their client is closed without a reply, as Redis going
// away would close it.
func TestFollowersLostWithTheirLeader(t *testing.T) {
	p := startFollowPair(t, true)
	rc := p.grouped.ProxyRaw(t)
	if got := rc.Do("EXSET", "k", "v0"); got != "+OK\r\n" {
		t.Fatalf("EXSET: %q", got)
	}
	lostBefore := p.grouped.Srv.Stats().LostCommands
	answeredBefore := p.grouped.Srv.Stats().AnsweredByLeader
	p.redis.Signal(syscall.SIGSTOP) // Redis reads nothing more: the leader stays unanswered
	var all []byte
	for _, v := range []string{"a", "b", "c"} {
		all = append(all, proxytest.EncodeCommand("EXCAS", "k", v, "1")...)
	}
	rc.Write(all)
	deadline := time.Now().Add(proxytest.IOTimeout)
	for p.grouped.Srv.Stats().AnsweredByLeader-answeredBefore < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the pipeline was not grouped")
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.redis.Stop() // SIGKILL: the connection is lost with all three in flight
	if got, err := rc.ReadUntilEOF(); got != "" || (err != nil && !proxytest.IsReset(err)) {
		t.Fatalf("client got %q (%v), want the connection closed without a reply", got, err)
	}
	if lost := p.grouped.Srv.Stats().LostCommands - lostBefore; lost != 3 {
		t.Errorf("%d commands counted lost, want 3 (the leader and its two followers)", lost)
	}
}
