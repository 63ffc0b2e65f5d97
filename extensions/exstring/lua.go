package exstring

import (
	"crypto/sha1"
	"encoding/hex"
	"strings"

	_ "embed" // the Lua library ships inside the binary
)

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
