package exstring

import (
	"crypto/sha1"
	"encoding/hex"
	"strconv"
	"strings"

	_ "embed" // the Lua library ships inside the binary
)

// The library reproduces spec/exstring.md byte for byte on Redis 7.0,
// with these differences that stock Redis imposes (each has a test):
//
//   - Integer replies go through a C double in Redis's Lua bridge, so a
//     version or EXINCRBY value that a double cannot hold (|v| > 2^53, not
//     a multiple of its spacing) is sent as a bulk string of its exact
//     digits, never as a wrong integer. FixBigInts restores the module's
//     integer reply from a complete reply.
//   - EX/PX/EXAT/PXAT times whose conversion to an absolute time in ms
//     overflows int64 (undefined behaviour in the module) answer
//     "ERR syntax error" and change nothing.
//   - A past EXAT/PXAT makes the key expire at once (PEXPIREAT now); the
//     module lets it live until the clock ticks.
//   - The key is a hash: TYPE must be rewritten to the extype handler;
//     OBJECT ENCODING, MEMORY USAGE, DEBUG OBJECT, hash commands and
//     keyspace notifications show the hash. A hash that is not a
//     well-formed exString (user hash, extra or missing field, bad
//     version or flags) answers WRONGTYPE to every ex command.
//   - Replication and AOF carry the Lua's effects (HSET, PEXPIREAT,
//     PERSIST, DEL), so replicas keep TTLs exactly (the module's KEEPTTL
//     replication bug is not reproduced).
//
// EXINCRBYFLOAT is exact: numbers are parsed, summed and compared with
// MIN/MAX as 80-bit long doubles (big-number arithmetic in Lua, taken
// only where magnitudes cannot decide), and Redis's HINCRBYFLOAT formats
// the result like the module (%.17Lf), with the module's "-0" restored.

// luaBody is the one source of truth for the semantics of the commands:
// handlers H[name](keys, args) that return the client's reply verbatim.
//
//go:embed exstring.lua
var luaBody string

// Handlers lists the Lua handler names, one per command, in a fixed order.
// A handler is named like the client command it implements, except TYPE,
// whose handler is "extype" (it answers exstrtype for a versioned string
// and the native type otherwise).
var Handlers = []string{
	"exset", "exget", "exsetver", "exincrby", "exincrbyfloat", "excas",
	"excad", "exappend", "exprepend", "exgae", "cas", "cad", "extype",
}

// Commands lists the lower-case client command names the library
// implements, in the order of Handlers ("type" is served by "extype").
var Commands = []string{
	"exset", "exget", "exsetver", "exincrby", "exincrbyfloat", "excas",
	"excad", "exappend", "exprepend", "exgae", "cas", "cad", "type",
}

// readOnly are the handlers that never write; their functions carry the
// no-writes flag so FCALL_RO and read-only replicas accept them.
var readOnly = map[string]bool{"exget": true, "extype": true}

var (
	version = func() string {
		sum := sha1.Sum([]byte(luaBody))
		return hex.EncodeToString(sum[:])[:8]
	}()
	library = buildLibrary()
)

// Version is a short content hash of the Lua (8 hex digits). It is part of
// the library and function names, so a proxy never calls a function of a
// different body and two proxy versions can share one Redis.
func Version() string { return version }

// LibraryName is the name of the function library Library declares.
func LibraryName() string { return "exstring_" + version }

// Handler maps a client command name or a handler name (any case) to its
// handler name, or "" when the library does not implement it.
func Handler(cmd string) string {
	cmd = strings.ToLower(cmd)
	if cmd == "type" {
		return "extype"
	}
	for _, h := range Handlers {
		if h == cmd {
			return h
		}
	}
	return ""
}

// FunctionName is the Redis function that implements cmd (a client
// command or handler name): "<handler>_<version>". Call it as
// FCALL <name> 1 <key> <args...>, or with numkeys 0 when the client gave
// no key (the function then replies with the arity error). It returns ""
// for an unknown cmd.
func FunctionName(cmd string) string {
	h := Handler(cmd)
	if h == "" {
		return ""
	}
	return h + "_" + version
}

// Library returns the Redis 7 function library, ready for FUNCTION LOAD:
// "#!lua name=exstring_<version>", the shared body, and one
// register_function per handler.
func Library() string { return library }

func buildLibrary() string {
	var b strings.Builder
	b.WriteString("#!lua name=" + LibraryName() + "\n")
	b.WriteString(luaBody)
	b.WriteString("\n")
	for _, h := range Handlers {
		flags := "{}"
		if readOnly[h] {
			flags = "{'no-writes'}"
		}
		b.WriteString("redis.register_function{function_name='" + h + "_" + version +
			"', callback=H." + h + ", flags=" + flags + "}\n")
	}
	return b.String()
}

// Script returns an EVAL script implementing cmd (a client command or
// handler name) for servers without functions: the shared body followed by
// a call of the handler with KEYS and ARGV. It returns "" for an unknown cmd.
func Script(cmd string) string {
	h := Handler(cmd)
	if h == "" {
		return ""
	}
	return luaBody + "\nreturn H." + h + "(KEYS, ARGV)\n"
}

// ScriptSHA is the SHA1 under which Redis caches Script(cmd), the name
// EVALSHA takes.
func ScriptSHA(cmd string) string {
	s := Script(cmd)
	if s == "" {
		return ""
	}
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// intPositions says where a handler's reply holds integers: -1 for the
// top-level reply itself, i >= 0 for element i of a top-level array.
var intPositions = map[string][]int{
	"exset":     {-1},
	"exappend":  {-1},
	"exprepend": {-1},
	"exincrby":  {-1, 0, 1},
	"excas":     {2},
	"exget":     {1, 2},
	"exgae":     {1, 2},
}

// FixBigInts repairs what Lua cannot say. Redis turns a Lua number into an
// integer reply through a C double, which is exact only up to 2^53 (and
// for a few larger values); the library therefore returns any other
// version or EXINCRBY value as a bulk string holding its exact decimal
// digits, where the module replies with an integer. Given the complete
// reply (RESP2 or RESP3) of handler h (a client command or handler name),
// FixBigInts returns the reply with each such bulk string turned into the
// integer the module sends, and true; it returns nil and false when there
// is nothing to fix or reply is not one complete reply. A bulk string at an
// integer position is always such a number: the library puts nothing else
// there.
func FixBigInts(h string, reply []byte) ([]byte, bool) {
	pos := intPositions[Handler(h)]
	if len(pos) == 0 || len(reply) == 0 {
		return nil, false
	}
	// A first pass only looks, so the common case (nothing to fix)
	// allocates nothing.
	if _, fixed, ok := fixInts(pos, reply, false); !ok || !fixed {
		return nil, false
	}
	out, _, _ := fixInts(pos, reply, true)
	return out, true
}

// fixInts walks one reply; with build it also returns the fixed copy.
// fixed says whether a bulk string stands at an integer position, ok
// whether reply is exactly one complete reply of a handler's shape.
func fixInts(pos []int, reply []byte, build bool) (out []byte, fixed, ok bool) {
	isInt := func(i int) bool {
		for _, p := range pos {
			if p == i {
				return true
			}
		}
		return false
	}
	emit := func(b ...byte) {
		if build {
			out = append(out, b...)
		}
	}
	// elem handles the element at reply[off:], converting it when
	// convert is set; it returns the offset after it, or -1.
	elem := func(off int, convert bool) int {
		end := lineEnd(reply, off)
		if end < 0 {
			return -1
		}
		switch reply[off] {
		case '$':
			n, ok := atoi(reply[off+1 : end])
			if !ok || n < 0 {
				emit(reply[off : end+2]...)
				return end + 2
			}
			bodyEnd := end + 2 + n
			if bodyEnd+2 > len(reply) || reply[bodyEnd] != '\r' || reply[bodyEnd+1] != '\n' {
				return -1
			}
			body := reply[end+2 : bodyEnd]
			if convert && isStrictInt64(body) {
				emit(':')
				emit(body...)
				emit('\r', '\n')
				fixed = true
			} else {
				emit(reply[off : bodyEnd+2]...)
			}
			return bodyEnd + 2
		case '+', '-', ':', '_', ',', '#', '(':
			emit(reply[off : end+2]...)
			return end + 2
		}
		return -1 // no handler returns nested aggregates
	}
	var next int
	if reply[0] == '*' {
		end := lineEnd(reply, 0)
		if end < 0 {
			return nil, false, false
		}
		n, ok := atoi(reply[1:end])
		if !ok {
			return nil, false, false
		}
		emit(reply[:end+2]...)
		next = end + 2
		for i := 0; i < n && next >= 0; i++ {
			if next >= len(reply) {
				return nil, false, false
			}
			next = elem(next, isInt(i))
		}
	} else {
		next = elem(0, isInt(-1))
	}
	if next != len(reply) {
		return nil, false, false
	}
	return out, fixed, true
}

// lineEnd is the index of the "\r\n" that ends the line starting at off,
// or -1.
func lineEnd(b []byte, off int) int {
	for i := off; i+1 < len(b); i++ {
		if b[i] == '\r' && b[i+1] == '\n' {
			return i
		}
	}
	return -1
}

func atoi(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 10 {
		return 0, false
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, len(b) > 0
}

// isStrictInt64 accepts what Redis's string2ll accepts (the Lua writes
// only such strings).
func isStrictInt64(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	_, err := strconv.ParseInt(string(b), 10, 64)
	return err == nil && (len(b) == 1 || (b[0] != '0' && !(b[0] == '-' && b[1] == '0'))) && b[0] != '+'
}
