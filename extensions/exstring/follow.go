package exstring

import (
	"bytes"

	"github.com/exproxy/exproxy/proxy"
	"github.com/exproxy/exproxy/proxy/resp"
)

// EXCAS commands with the same key and expected version, sent to Redis in
// one write, can commit one at a time at most: the first that runs moves
// the version on, or fails, and leaves every other one to fail the same
// way. The core may send only the first and answer the others from its
// reply (proxy.Follower); this file says which EXCAS may be grouped and
// what a follower's answer is.

// groupArgs names an EXCAS's group: its key (args[1]) and expected
// version (args[3]).
const groupArgs = 1<<1 | 1<<3

// groupOf says whether the EXCAS args may be grouped, and by which
// arguments. Only the plain form is: EXCAS key value version, with a
// version the Lua parses without error (a non-negative integer written
// as Redis writes it). Then what the Lua does with it depends on the key
// alone, and a follower's own arguments cannot fail where its leader's
// did not. The expiration options are left out: they change nothing in
// the outcome, but would have to be checked here exactly as the Lua
// checks them.
func groupOf(args [][]byte, argc int) uint16 {
	if argc != 4 || len(args) != 4 || !plainVersion(args[3]) {
		return 0
	}
	return groupArgs
}

// plainVersion reports whether v is 0 or a positive integer of at most 18
// digits with no leading zero: always in range, always what parse_int
// accepts, and compared byte for byte by the Lua (obj.ver ~= v).
func plainVersion(v []byte) bool {
	if len(v) == 0 || len(v) > 18 || (v[0] == '0' && len(v) > 1) {
		return false
	}
	for _, ch := range v {
		if ch < '0' || ch > '9' {
			return false
		}
	}
	return true
}

// casCommitted is how the Lua's EXCAS reply starts when the write was
// applied ({OK, "", version}), in RESP2 and RESP3 alike.
const casCommitted = "*3\r\n+OK\r\n+\r\n"

// Follow answers an EXCAS that ran right after its leader, an EXCAS of
// the same key and expected version: if the leader committed, the key now
// holds the leader's value at the version in its reply, so the follower
// fails with both, as the Lua's CAS_FAILED reply gives them; otherwise
// (refused, no such key, a type error, any error of Redis's or of the
// library) nothing changed, and the follower gets what the leader got.
func (c *command) Follow(dst, leaderReply []byte, leaderArgs [][]byte) []byte {
	if bytes.HasPrefix(leaderReply, []byte(casCommitted)) && len(leaderArgs) >= 2 {
		dst = append(dst, "*3\r\n+CAS_FAILED\r\n"...)
		dst = resp.AppendBulk(dst, leaderArgs[1])
		return append(dst, leaderReply[len(casCommitted):]...)
	}
	return append(dst, leaderReply...)
}

var _ proxy.Follower = (*command)(nil)
