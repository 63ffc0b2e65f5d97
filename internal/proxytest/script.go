package proxytest

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Step is one command of a script; N is how many values it answers with
// (0 means 1; pushes count as values).
type Step struct {
	Args []string
	N    int
}

// C is a Step answered by one value.
func C(args ...string) Step { return Step{Args: args} }

// ResetRedis empties data, scripts and functions so a script can run
// again from the same state.
func (h *Harness) ResetRedis(tb testing.TB) {
	tb.Helper()
	a := h.DirectRaw(tb)
	defer a.Close()
	for _, cmd := range [][]string{{"FLUSHALL"}, {"SCRIPT", "FLUSH"}, {"FUNCTION", "FLUSH"}} {
		if got := a.Do(cmd...); got != "+OK\r\n" {
			tb.Fatalf("%v: %q", cmd, got)
		}
	}
}

// RunScript runs steps on a fresh connection to addr and returns each
// step's reply bytes. prelude, when set, is sent first (its reply is not
// returned); proto 3 then sends HELLO 3 (its reply is not returned either:
// it holds the connection id).
func RunScript(tb testing.TB, addr string, proto int, prelude []string, steps []Step) []string {
	tb.Helper()
	r := Dial(tb, addr)
	defer r.Close()
	if len(prelude) > 0 {
		r.Do(prelude...)
	}
	if proto == 3 {
		if got := r.Do("HELLO", "3"); !strings.HasPrefix(got, "%") {
			tb.Fatalf("HELLO 3 on %s: %q", addr, got)
		}
	}
	out := make([]string, len(steps))
	for i, s := range steps {
		r.Send(s.Args...)
		n := max(s.N, 1)
		var sb strings.Builder
		for j := 0; j < n; j++ {
			v, err := r.ReadE()
			sb.WriteString(v)
			if err != nil {
				tb.Errorf("%s step %d %q: read: %v (got %q)", addr, i, s.Args, err, sb.String())
				out[i] = sb.String()
				return out
			}
		}
		out[i] = sb.String()
	}
	return out
}

// SameAsRedis runs steps directly against Redis, resets Redis, runs them
// through the proxy, and requires byte-identical replies.
func (h *Harness) SameAsRedis(tb testing.TB, proto int, steps []Step) {
	tb.Helper()
	h.SameAsRedisPrelude(tb, proto, nil, steps)
}

// SameAsRedisPrelude is SameAsRedis with prelude sent first on both
// connections (by default AUTH with the harness's Password, if any).
func (h *Harness) SameAsRedisPrelude(tb testing.TB, proto int, prelude []string, steps []Step) {
	tb.Helper()
	if h.Password != "" && prelude == nil {
		prelude = []string{"AUTH", h.Password}
	}
	h.ResetRedis(tb)
	want := RunScript(tb, h.Redis.Addr, proto, prelude, steps)
	h.ResetRedis(tb)
	got := RunScript(tb, h.Addr, proto, prelude, steps)
	for i := range steps {
		// HELLO's map holds the connection id, which differs.
		if HelloMask(got[i]) != HelloMask(want[i]) {
			tb.Errorf("RESP%d step %d %q:\n proxy: %s\ndirect: %s", proto, i, steps[i].Args, Clip(got[i]), Clip(want[i]))
		}
	}
}

// SameAsRedisPipelined is SameAsRedis with every step sent in one write,
// so the proxy frames the replies of many types in one batch.
func (h *Harness) SameAsRedisPipelined(tb testing.TB, proto int, steps []Step) {
	tb.Helper()
	run := func(addr string) string {
		h.ResetRedis(tb)
		r := Dial(tb, addr)
		defer r.Close()
		if h.Password != "" {
			r.Do("AUTH", h.Password)
		}
		var in []byte
		if proto == 3 {
			in = append(in, EncodeCommand("HELLO", "3")...)
		}
		values := 0
		for _, s := range steps {
			in = append(in, EncodeCommand(s.Args...)...)
			values += max(s.N, 1)
		}
		in = append(in, EncodeCommand("ECHO", "--end--")...)
		errc := make(chan error, 1)
		go func() { errc <- r.WriteE(in) }()
		var out strings.Builder
		if proto == 3 {
			r.Read()
		}
		for i := 0; i < values; i++ {
			v, err := r.ReadE()
			out.WriteString(v)
			if err != nil {
				tb.Errorf("%s: value %d: %v", addr, i, err)
				return out.String()
			}
		}
		if v := r.Read(); v != "$7\r\n--end--\r\n" {
			tb.Errorf("%s: after %d values, %q instead of the end marker", addr, values, v)
		}
		if err := <-errc; err != nil {
			tb.Errorf("%s: write: %v", addr, err)
		}
		return HelloMask(out.String())
	}
	want := run(h.Redis.Addr)
	got := run(h.Addr)
	if got != want {
		// Find the first difference for a readable message.
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		lo := max(0, i-80)
		tb.Errorf("RESP%d pipelined replies differ at byte %d:\n proxy: %s\ndirect: %s", proto, i,
			Clip(got[lo:min(len(got), i+200)]), Clip(want[lo:min(len(want), i+200)]))
	}
}

// helloID is the connection id in a HELLO reply, RESP2 or RESP3.
var helloID = regexp.MustCompile(`\$2\r\nid\r\n:[0-9]+\r\n`)

// HelloMask replaces the connection id in HELLO replies, which differs
// between any two connections, with a placeholder.
func HelloMask(s string) string { return helloID.ReplaceAllString(s, "$$2\r\nid\r\n:ID\r\n") }

// Clip quotes s for a failure message, cut to its first 400 bytes.
func Clip(s string) string {
	if len(s) > 400 {
		return fmt.Sprintf("%q...(%d bytes)", s[:400], len(s))
	}
	return strconv.Quote(s)
}
