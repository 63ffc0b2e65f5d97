package proxy

import (
	"strings"
	"testing"
)

// TestShareable pins down which commands may run on a shared upstream
// connection; each row is a reason a session must, or need not, move to a
// connection of its own.
func TestShareable(t *testing.T) {
	tab := newTable([]Rewriter{prefixRewriter{}}, nil)
	for _, tc := range []struct {
		cmd   string
		share bool
	}{
		{"GET k", true},
		{"set k v EX 10", true},
		{"EVALSHA abc 1 k", true},
		{"FCALL f 0", true},
		{"EXGET k", true}, // a rewritten command
		{"NOSUCHCOMMAND a", true},
		{"XREAD COUNT 1 STREAMS s 0", true},
		{"XREAD BLOCK 0 STREAMS s 0", false},
		{"xreadgroup GROUP g c block 10 STREAMS s >", false},
		{"CLIENT SETINFO LIB-NAME x", true},
		{"CLIENT MAINT_NOTIFICATIONS on", true},
		{"CLIENT SETNAME x", false},
		{"CLIENT TRACKING on", false},
		{"CLIENT REPLY OFF", false},
		{"CLIENT ID", false},
		{"HELLO 3", false}, // routeShared moves it between shared connections
		{"SELECT 1", false},
		{"AUTH pw", false},
		{"MULTI", false},
		{"EXEC", false},
		{"WATCH k", false},
		{"UNWATCH", false},
		{"SUBSCRIBE ch", false},
		{"PSUBSCRIBE p*", false},
		{"MONITOR", false},
		{"RESET", false},
		{"QUIT", false},
		{"BLPOP l 0", false},
		{"BZMPOP 0 1 z MIN", false},
		{"WAIT 1 0", false},
		{"DEBUG SLEEP 0", false},
		{"PSYNC ? -1", false},
		{"READONLY", false},
	} {
		var args [][]byte
		for _, f := range strings.Fields(tc.cmd) {
			args = append(args, []byte(f))
		}
		if got := shareable(tab.lookup(args[0]), args); got != tc.share {
			t.Errorf("shareable(%q) = %v, want %v", tc.cmd, got, tc.share)
		}
	}
}

func TestHelloProto(t *testing.T) {
	tab := newTable(nil, nil)
	for _, tc := range []struct {
		cmd  string
		want int
	}{
		{"HELLO 3", 3}, {"hello 2", 2}, {"HELLO", 0}, {"HELLO 4", 0},
		{"HELLO 3 AUTH u p", 0}, {"HELLO 3 SETNAME n", 0}, {"HELLO 30", 0},
	} {
		var args [][]byte
		for _, f := range strings.Fields(tc.cmd) {
			args = append(args, []byte(f))
		}
		if got := helloProto(tab.lookup(args[0]), args); got != tc.want {
			t.Errorf("helloProto(%q) = %d, want %d", tc.cmd, got, tc.want)
		}
	}
}
