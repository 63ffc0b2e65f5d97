package report

import (
	"context"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/exproxy/exproxy/extensions/contention"
	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
)

// pythonWithRedis finds a python3 that can import redis-py (Debian's
// python3-redis installs it for /usr/bin/python3, which a pyenv or venv
// python3 on PATH may shadow), or "".
func pythonWithRedis() string {
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(py, "-c", "import redis").Run() == nil {
			return py
		}
	}
	return ""
}

// TestRedisPyAtomicCounter runs the README's seed example: redis-py's
// atomic-counter loop, unchanged, in three processes through the proxy
// beside a batch job of plain INCRs. The report must agree with what the
// processes counted, and name the batch job as the top invalidator.
func TestRedisPyAtomicCounter(t *testing.T) {
	py := pythonWithRedis()
	if py == "" {
		t.Skip("no python3 with redis-py (apt-get install python3-redis)")
	}
	rs := redistest.Start(t)
	buf := &proxytest.SyncBuffer{}
	cfg := contention.DefaultConfig()
	cfg.Window = time.Hour
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	tr, err := contention.New(cfg, contention.Deps{Logger: zap.New(zapcore.NewCore(enc, buf, zap.InfoLevel))})
	if err != nil {
		t.Fatal(err)
	}
	p := proxytest.StartProxy(t, rs.Addr, proxytest.WithObservers(tr))
	waitForWriteHook(t, tr, p.Addr)
	_, port, _ := strings.Cut(p.Addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "../../../docs/examples/atomic_counter.py", "--port", port, "--increments", "200").CombinedOutput()
	if err != nil {
		t.Fatalf("atomic_counter.py: %v\n%s", err, out)
	}
	p.Shutdown(t)
	_ = tr.Close()
	m := regexp.MustCompile(`total: commits=(\d+) aborts=(\d+) incrs=(\d+)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no totals in\n%s", out)
	}
	commits, _ := strconv.ParseInt(m[1], 10, 64)
	aborts, _ := strconv.ParseInt(m[2], 10, 64)
	t.Logf("atomic_counter.py:\n%s", out)

	rep, _, _ := run(t, buf.String(), "--by", "key", "--format", "json")
	var k Row
	for _, r := range jsonRows(t, rep) {
		if r.Key == "OUR-SEQUENCE-KEY" {
			k = r
		}
	}
	if k.Commits != commits || k.Aborts != aborts || k.Transactions != commits+aborts {
		t.Errorf("report: %d commits, %d aborts of %d transactions; the workers counted %d and %d", k.Commits, k.Aborts, k.Transactions, commits, aborts)
	}
	if aborts == 0 {
		t.Fatal("no contention: nothing to attribute")
	}
	// Every abort's write came through the proxy, and the batch job's
	// INCRs (INCRBY in redis-py) are the most frequent writes. All but a
	// few are attributed: a write already on its way to Redis when the
	// key's very first WATCH is sent is not seen (docs/contention.md,
	// limits), which the start of the run, all processes at once, can hit.
	if k.Attributed+k.Outside+k.Unattributed != aborts || k.Outside > aborts/100 || k.Unattributed != 0 ||
		len(k.Invalidators) == 0 || k.Invalidators[0].Invalidator != "batch-import" || k.Invalidators[0].Command != "incrby" {
		t.Errorf("attributed %d, outside %d, unattributed %d of %d aborts; invalidators %+v", k.Attributed, k.Outside, k.Unattributed, aborts, k.Invalidators)
	}
	table, _, _ := run(t, buf.String(), "--by", "invalidator")
	t.Logf("exproxy contention --by invalidator:\n%s", table)
}
