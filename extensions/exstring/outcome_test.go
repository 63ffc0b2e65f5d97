package exstring

import (
	"fmt"
	"strings"
	"testing"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
)

// TestOutcome feeds Outcome the replies Redis really sends to the
// rewritten commands, in RESP2 and RESP3, one step after another on the
// same keys.
func TestOutcome(t *testing.T) {
	const (
		none, done, stale, differs = proxy.NoOutcome, proxy.Committed, proxy.Stale, proxy.CompareFailed
	)
	steps := []struct {
		cmd  string
		want proxy.Outcome
	}{
		{"EXSET k v", done},
		{"EXSET k v VER 1", done},
		{"EXSET k v VER 1", stale},
		{"EXSET k v NX", none},
		{"EXSET k v XX WITHVERSION", done},
		{"EXSET k v EX 0", none}, // syntax error
		{"EXGET k", none},
		{"EXINCRBY n 1", done},
		{"EXINCRBY n 1 VER 9", stale},
		{"EXINCRBY n 1 MAX 1", none}, // overflow error
		{"EXINCRBY n 1 WITHVERSION", done},
		{"EXINCRBYFLOAT f 0.5", done},
		{"EXINCRBYFLOAT f 1 VER 9", stale},
		{"EXAPPEND s x", done},
		{"EXPREPEND s y VER 9", stale},
		{"EXSETVER k 10", done},
		{"EXSETVER nosuch 1", none},
		{"EXCAS k w 10", done},
		{"EXCAS k w 10", stale},
		{"EXCAS nosuch w 1", none},
		{"EXCAD k 10", stale},
		{"EXCAD k 11", done},
		{"EXCAD k 11", none},
		{"CAS p a b", done},
		{"CAS p a c", differs},
		{"CAS nosuch a b", none},
		{"CAD p x", differs},
		{"CAD p b", done},
		{"CAD p b", none},
		{"EXGAE s EX 100", none},
	}
	srv := redistest.Start(t)
	e := newExt(t, DefaultConfig(), Deps{Upstream: proxy.Upstream{Addr: srv.Addr}})
	if err := e.Load(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			rc := proxytest.Dial(t, srv.Addr)
			rc.Do("FLUSHALL")
			rc.Do("HELLO", fmt.Sprint(proto))
			rc.Do("SET", "p", "a")
			for _, s := range steps {
				reply, h := rewriteAndSend(t, e, rc, strings.Fields(s.cmd)...)
				o, ok := h.(proxy.Outcomer)
				if !ok {
					t.Fatalf("%s: reply handler %T is not an Outcomer", s.cmd, h)
				}
				if got := o.Outcome([]byte(reply)); got != s.want {
					t.Errorf("%s → %q: outcome %v, want %v", s.cmd, reply, got, s.want)
				}
				if got := o.Outcome([]byte("+QUEUED\r\n")); got != none {
					t.Errorf("%s queued in MULTI: outcome %v, want none", s.cmd, got)
				}
			}
		})
	}
}

// TestOutcomeRepliesMatchTheLua: the reply texts Outcome matches are the
// ones the Lua library sends.
func TestOutcomeRepliesMatchTheLua(t *testing.T) {
	lib := Library()
	for _, want := range []string{
		"local E_STALE = '" + strings.TrimPrefix(replyStale, "-") + "'",
		"local R_OK, R_EMPTY, R_CAS_FAILED = {ok = 'OK'}, {ok = ''}, {ok = 'CAS_FAILED'}",
		"{R_CAS_FAILED, obj.val, int_reply(obj.ver)}",
		"{R_OK, R_EMPTY, int_reply(ver)}",
	} {
		if !strings.Contains(lib, want) {
			t.Errorf("the Lua library no longer contains %q", want)
		}
	}
}
