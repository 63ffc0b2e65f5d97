package proxy

import (
	"strings"
	"testing"
)

// TestPlaceOf pins down where each command may run; each row is a reason
// a session must, or need not, have a connection of its own.
func TestPlaceOf(t *testing.T) {
	tab := newTable([]Rewriter{prefixRewriter{}}, nil)
	for _, tc := range []struct {
		cmd  string
		want placement
	}{
		{"GET k", placeShared},
		{"set k v EX 10", placeShared},
		{"EVALSHA abc 1 k", placeShared},
		{"FCALL f 0", placeShared},
		{"EXGET k", placeShared}, // a rewritten command
		{"NOSUCHCOMMAND a", placeShared},
		{"XREAD COUNT 1 STREAMS s 0", placeShared},
		{"XREAD BLOCK 0 STREAMS s 0", placeOwn},
		{"xreadgroup GROUP g c block 10 STREAMS s >", placeOwn},
		{"CLIENT SETINFO LIB-NAME x", placeShared},
		{"CLIENT MAINT_NOTIFICATIONS on", placeShared},
		{"CLIENT SETNAME x", placeOwnForever},
		{"CLIENT TRACKING on", placeOwnForever},
		{"CLIENT REPLY OFF", placeOwnForever},
		{"CLIENT ID", placeOwnForever},
		{"HELLO 3", placeRepool},
		{"HELLO 3 AUTH u p", placeRepool},
		{"HELLO 3 SETNAME n", placeOwnForever},
		{"HELLO", placeRepool}, // targetOf finds nothing to change: it runs where the session is
		{"SELECT 1", placeRepool},
		{"AUTH pw", placeRepool},
		{"RESET", placeRepool},
		{"MULTI", placeOwn},
		{"EXEC", placeShared}, // on a shared connection there is no MULTI to end
		{"DISCARD", placeShared},
		{"WATCH k", placeOwn},
		{"UNWATCH", placeShared},
		{"SUBSCRIBE ch", placeOwn},
		{"PSUBSCRIBE p*", placeOwn},
		{"UNSUBSCRIBE", placeOwn}, // RESP3 answers it with a push, which a shared connection cannot pair
		{"MONITOR", placeOwnForever},
		{"QUIT", placeQuit},
		{"BLPOP l 0", placeOwn},
		{"BZMPOP 0 1 z MIN", placeOwn},
		{"WAIT 1 0", placeOwn},
		{"DEBUG SLEEP 0", placeOwnForever},
		{"PSYNC ? -1", placeOwnForever},
		{"READONLY", placeOwnForever},
		{"SCRIPT KILL", placeOwn}, // must not queue behind the script it kills
		{"script load x", placeShared},
		{"FUNCTION KILL", placeOwn},
		{"SHUTDOWN NOSAVE", placeOwn},
	} {
		var args [][]byte
		for _, f := range strings.Fields(tc.cmd) {
			args = append(args, []byte(f))
		}
		if got := placeOf(tab.lookup(args[0]), args); got != tc.want {
			t.Errorf("placeOf(%q) = %d, want %d", tc.cmd, got, tc.want)
		}
	}
}

// TestTargetOf: the pool a repool command asks for, and the malformed
// ones that ask for none (Redis refuses them where the session is).
func TestTargetOf(t *testing.T) {
	tab := newTable(nil, nil)
	s := &session{}
	s.conns.key = poolKey{proto: 2, db: 3}
	for _, tc := range []struct {
		cmd  string
		ok   bool
		want poolKey
	}{
		{"SELECT 5", true, poolKey{proto: 2, db: 5}},
		{"SELECT x", false, poolKey{}},
		{"SELECT -1", false, poolKey{}},
		{"SELECT 1 2", false, poolKey{}},
		{"AUTH pw", true, poolKey{user: "default", cred: credHash("pw"), proto: 2, db: 3}},
		{"AUTH u pw", true, poolKey{user: "u", cred: credHash("pw"), proto: 2, db: 3}},
		{"AUTH", false, poolKey{}},
		{"HELLO 3", true, poolKey{proto: 3, db: 3}},
		{"HELLO 2 AUTH u pw", true, poolKey{user: "u", cred: credHash("pw"), proto: 2, db: 3}},
		{"HELLO 3 AUTH u", false, poolKey{}},
		{"HELLO 4", false, poolKey{}},
		{"HELLO", false, poolKey{}},
		{"RESET", true, anonymous},
	} {
		var args [][]byte
		for _, f := range strings.Fields(tc.cmd) {
			args = append(args, []byte(f))
		}
		got, _, ok := s.targetOf(tab.lookup(args[0]), args)
		if ok != tc.ok || ok && got != tc.want {
			t.Errorf("targetOf(%q) = %+v, %v; want %+v, %v", tc.cmd, got, ok, tc.want, tc.ok)
		}
	}
}
