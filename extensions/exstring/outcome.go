package exstring

import "github.com/exproxy/exproxy/proxy"

// Replies of the spec (spec/exstring.md; exstring.lua sends them) that
// decide what a conditional write came to. exstring.lua is the source of
// truth; TestOutcomeRepliesMatchTheLua keeps these in step with it.
const (
	// replyStale refuses EXSET/EXINCRBY/EXINCRBYFLOAT/EXAPPEND/EXPREPEND
	// ... VER v when the version moved on (E_STALE in the Lua).
	replyStale = "-ERR update version is stale"
	// replyCASFailed heads EXCAS's refusal: CAS_FAILED, the current value
	// and version.
	replyCASFailed = "*3\r\n+CAS_FAILED\r\n"
	// replyCASDone heads EXCAS's success: OK, "", the new version.
	replyCASDone = "*3\r\n+OK\r\n"
)

// What a command's replies can say about a write (command.write).
const (
	writeNone      = iota // not a write: EXGET, EXGAE, TYPE, COMMAND
	writeVersioned        // a write that a VER check may refuse with replyStale
	writeSetVer           // EXSETVER: :1 set, :0 no such key
	writeCAS              // EXCAS: replyCASDone, replyCASFailed, :-1 no such key
	writeCAD              // EXCAD: :1 deleted, :0 stale version, :-1 no such key
	writeCompare          // CAS, CAD: :1 done, :0 value differs, :-1 no such key
)

// writeKinds classifies the commands of specs by name.
var writeKinds = map[string]int{
	"exset": writeVersioned, "exincrby": writeVersioned, "exincrbyfloat": writeVersioned,
	"exappend": writeVersioned, "exprepend": writeVersioned,
	"exsetver": writeSetVer, "excas": writeCAS, "excad": writeCAD, "cas": writeCompare, "cad": writeCompare,
}

// Outcome implements proxy.Outcomer: what the write the reply answers came
// to. head is at least the reply's first line, which is all it reads but
// for EXCAS's first element.
func (c *command) Outcome(head []byte) proxy.Outcome {
	if len(head) == 0 {
		return proxy.NoOutcome
	}
	switch c.write {
	case writeVersioned:
		switch {
		case hasPrefix(head, replyStale):
			return proxy.Stale
		case hasPrefix(head, "+OK\r\n") || head[0] == ':' || head[0] == '*' || head[0] == '$' && !isNil(head):
			// +OK or :version (EXSET), :n or [n, version] (EXINCRBY,
			// EXAPPEND, ...), the new float as a bulk string.
			return proxy.Committed
		}
		// Null (NX/XX not met), +QUEUED, or another error.
	case writeSetVer:
		return integerOutcome(head, proxy.NoOutcome)
	case writeCAS:
		switch {
		case hasPrefix(head, replyCASDone):
			return proxy.Committed
		case hasPrefix(head, replyCASFailed):
			return proxy.Stale
		}
	case writeCAD:
		return integerOutcome(head, proxy.Stale)
	case writeCompare:
		return integerOutcome(head, proxy.CompareFailed)
	}
	return proxy.NoOutcome
}

// integerOutcome reads the :1 / :0 replies: 1 is done, 0 is zero, anything
// else (-1: no such key, an error) decides nothing.
func integerOutcome(head []byte, zero proxy.Outcome) proxy.Outcome {
	switch {
	case hasPrefix(head, ":1\r\n"):
		return proxy.Committed
	case hasPrefix(head, ":0\r\n"):
		return zero
	}
	return proxy.NoOutcome
}

// isNil reports a RESP2 null bulk string (RESP3's null, _, has a type
// byte of its own).
func isNil(head []byte) bool { return hasPrefix(head, "$-1\r\n") }

var _ proxy.Outcomer = (*command)(nil)
