package contention

import (
	"bufio"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/exproxy/exproxy/proxy"
)

// jsonLogger writes what the proxy writes in production: zap JSON lines.
func jsonLogger(w zapcore.WriteSyncer) *zap.Logger {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	return zap.New(zapcore.NewCore(enc, w, zap.InfoLevel))
}

// logLine is one decoded event: its message, the Row fields and the rest.
type logLine struct {
	Msg string
	Row Row
	Raw map[string]any
}

func parseLog(t testing.TB, s string) []logLine {
	t.Helper()
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l.Raw); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, sc.Text())
		}
		if err := json.Unmarshal(sc.Bytes(), &l.Row); err != nil {
			t.Fatalf("log line does not decode as Row: %v: %s", err, sc.Text())
		}
		l.Msg, _ = l.Raw["msg"].(string)
		out = append(out, l)
	}
	return out
}

// sumWindows adds the totals of every contention.window line.
func sumWindows(lines []logLine) Row {
	var r Row
	for _, l := range lines {
		if l.Msg != MsgWindow {
			continue
		}
		r.Transactions += l.Row.Transactions
		r.Commits += l.Row.Commits
		r.Aborts += l.Row.Aborts
		r.ExecAborts += l.Row.ExecAborts
		r.ExecErrors += l.Row.ExecErrors
		r.GivenUp += l.Row.GivenUp
		r.Stale += l.Row.Stale
		r.CASFailed += l.Row.CASFailed
		r.Retries += l.Row.Retries
		r.CommitRetries += l.Row.CommitRetries
		r.ChainsGivenUp += l.Row.ChainsGivenUp
		r.RetriesMax = max(r.RetriesMax, l.Row.RetriesMax)
		r.WatchExecCount += l.Row.WatchExecCount
		r.VersionedCommits += l.Row.VersionedCommits
		r.CASCommits += l.Row.CASCommits
		r.Attributed += l.Row.Attributed
		r.Outside += l.Row.Outside
		r.Unattributed += l.Row.Unattributed
	}
	return r
}

func findRow(lines []logLine, msg, name string) (Row, bool) {
	for _, l := range lines {
		if l.Msg != msg {
			continue
		}
		if l.Row.Key == name && msg == MsgKey || l.Row.Pattern == name && msg == MsgPattern || l.Row.Client == name && msg == MsgClient {
			return l.Row, true
		}
	}
	return Row{}, false
}

// fakeClock is a settable clock so window bounds are deterministic.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// evOut builds the event of a versioned or compare-and-set write, whose
// outcome the extension implementing it would report.
func evOut(o proxy.Outcome, name, reply string, args ...string) *proxy.Event {
	e := ev(name, reply, args...)
	e.Outcome = o
	return e
}

// ev builds an event; reply is the raw reply as Redis would send it.
func ev(name, reply string, args ...string) *proxy.Event {
	e := &proxy.Event{Name: name}
	for _, a := range args {
		e.Args = append(e.Args, []byte(a))
	}
	if reply != "" {
		e.Reply = []byte(reply)
		e.Kind = reply[0]
	}
	return e
}
