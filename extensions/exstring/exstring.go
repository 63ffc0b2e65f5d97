// Package exstring adds Tair-style versioned strings (EXSET, EXGET, EXCAS
// ... and CAS/CAD on plain strings) to stock Redis. The semantics live in a
// Lua library (lua.go, exstring.lua) that the proxy loads into Redis itself;
// this file turns each client command into a call of that library, so the
// Lua's reply, already in the shape the client expects, passes through raw.
//
// EXSET k v NX becomes FCALL exset_<version> 1 k v NX on Redis 7+, or
// EVALSHA <sha> 1 k v NX where functions are unavailable. TYPE k becomes a
// call that answers "exstrtype" for a versioned string. COMMAND and its
// INFO/DOCS/COUNT/LIST/GETKEYS subcommands are completed with the added
// commands so that clients looking up key positions find them.
package exstring

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/exproxy/exproxy/proxy"
)

// Call modes, read on the hot path from Extension.mode.
const (
	modeFCALL   int32 = iota // FCALL <fn> (Redis 7 functions)
	modeEVALSHA              // EVALSHA <sha> (SCRIPT LOAD; Redis < 7)
)

// kinds of command the extension handles.
const (
	kindEx      = iota // implemented by the Lua library
	kindType           // TYPE: rewritten only for exactly one key
	kindCommand        // COMMAND: reply completed with the ex commands
)

// maxName is the longest command name the extension handles
// ("exincrbyfloat"); longer names are not ours, and lookup lower-cases into
// a fixed array so that it allocates nothing.
const maxName = 16

// Extension implements the exString commands by rewriting them into calls
// of the Lua library. Build it with New; it is safe for concurrent use.
type Extension struct {
	cfg  Config
	deps Deps
	mode atomic.Int32 // modeFCALL or modeEVALSHA

	cmds   []*command          // handled commands, in specs order then type, command
	byName map[string]*command // lower-case name -> command

	loader    loader
	startDone chan struct{} // for tests: closed when Start's goroutine ends

	// In front of a Redis Cluster, a loader per primary (cluster.go);
	// bg ends their background loads at Close.
	nmu      sync.Mutex
	nodes    map[string]*loader
	bg       context.Context
	bgCancel context.CancelFunc

	info [2][]byte // COMMAND INFO entries of all ex commands, RESP2 and RESP3, concatenated
	docs [2][]byte // COMMAND DOCS name/entry pairs, concatenated
}

// command is one handled command with its precomputed prefixes. It is also
// the ReplyHandler of its rewrites, so that Check knows which command it
// speaks for without any per-call state.
type command struct {
	ext  *Extension
	name string // lower-case client-facing name
	kind int
	spec *cmdSpec // nil for type and command

	// prefix[mode][numkeys] is the pre-encoded replacement of the name:
	// FCALL <fn> <numkeys> or EVALSHA <sha> <numkeys>.
	prefix [2][2][]byte
	script string // Lua body for SCRIPT LOAD
	sha    string // SHA1 of script, what EVALSHA names

	noperm [2][]byte // replacement NOPERM replies per mode
	inner  []byte    // replacement for an ACL refusal inside the Lua
	bigInt bool      // replies may hold integers Lua sent as bulk strings (FixBigInts)
	write  int       // what its replies say about a write (outcome.go)
	groups bool      // EXCAS, when cfg.AnswerStale: offered for a group (follow.go)
	info   [2][]byte // COMMAND INFO entry per protocol
	docs   [2][]byte // COMMAND DOCS name + entry per protocol
}

// New builds the extension: it precomputes every prefix and COMMAND entry
// and prepares (without dialling) the connection that loads the library.
// Call Start to load it in the background, Close to release it.
// cfg.Enabled is the caller's to honour: it builds the extension only when
// it is set.
func New(cfg Config, deps Deps) (*Extension, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("exstring: %w", err)
	}
	if err := deps.setDefaults(); err != nil {
		return nil, err
	}
	e := &Extension{cfg: cfg, deps: deps, byName: make(map[string]*command), nodes: map[string]*loader{}}
	e.bg, e.bgCancel = context.WithCancel(context.Background())
	if cfg.Scripts {
		e.mode.Store(modeEVALSHA)
	}
	add := func(name, lua string, kind int, spec *cmdSpec) {
		c := &command{ext: e, name: name, kind: kind, spec: spec, write: writeKinds[name]}
		if lua != "" {
			c.script = Script(lua)
			sum := sha1.Sum([]byte(c.script))
			c.sha = hex.EncodeToString(sum[:])
			for nk := 0; nk < 2; nk++ {
				c.prefix[modeFCALL][nk] = prefix("FCALL", FunctionName(lua), nk)
				c.prefix[modeEVALSHA][nk] = prefix("EVALSHA", c.sha, nk)
			}
			c.noperm[modeFCALL] = nopermReply(name, "FCALL", "fcall")
			c.noperm[modeEVALSHA] = nopermReply(name, "EVALSHA", "evalsha")
			c.inner = innerNopermReply(name)
			c.bigInt = len(intPositions[Handler(lua)]) > 0
		}
		c.groups = name == "excas" && cfg.AnswerStale
		e.cmds = append(e.cmds, c)
		e.byName[name] = c
	}
	for i := range specs {
		add(specs[i].name, specs[i].name, kindEx, &specs[i])
	}
	add("type", "extype", kindType, nil)
	add("command", "", kindCommand, nil)
	e.buildCommandEntries()
	e.loader.init(e)
	return e, nil
}

// prefix encodes the three bulk strings that replace a command's name.
func prefix(call, fn string, numkeys int) []byte {
	b := make([]byte, 0, 32+len(fn))
	for _, s := range []string{call, fn, strconv.Itoa(numkeys)} {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, "\r\n"...)
		b = append(b, s...)
		b = append(b, "\r\n"...)
	}
	return b
}

// nopermReply is what a client without the right to run the library sees:
// Redis would name FCALL, a command the client never sent.
func nopermReply(name, call, lower string) []byte {
	return []byte("-NOPERM this user has no permissions to run the '" + name +
		"' command (exproxy implements it with " + call + ": grant +" + lower + ", or +@scripting)\r\n")
}

// luaCalls are the commands the Lua runs (exstring.lua's redis.call), which
// Redis checks against the client's ACL user like any other command.
const luaCalls = "HLEN, HMGET, HSET, HDEL, HINCRBYFLOAT, GET, SET, DEL, PERSIST, PEXPIREAT, TIME, TYPE"

// innerNopermReply replaces Redis's "ERR The user executing the script
// can't run this command ... script: exset_1a2b3c4d, on @user_function:487",
// which names neither the client's command nor what to grant.
func innerNopermReply(name string) []byte {
	return []byte("-NOPERM this user has no permissions to run the '" + name +
		"' command (exproxy implements it in Lua, which runs " + luaCalls +
		" as this user: grant them, e.g. +@hash +@string +@keyspace +time)\r\n")
}

// Commands lists the lower-case command names the extension handles.
func (e *Extension) Commands() []string {
	names := make([]string, len(e.cmds))
	for i, c := range e.cmds {
		names[i] = c.name
	}
	return names
}

// lookup finds the command named name in any case without allocating.
func (e *Extension) lookup(name []byte) *command {
	if len(name) > maxName {
		return nil
	}
	var buf [maxName]byte
	for i, ch := range name {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		buf[i] = ch
	}
	return e.byName[string(buf[:len(name)])] // the compiler does not allocate for a map index
}

// Rewrite turns an ex command into a call of the library. It allocates
// nothing for the ex commands and TYPE; COMMAND is rare and may.
func (e *Extension) Rewrite(args [][]byte, argc int, s *proxy.SessionInfo) (proxy.Rewrite, bool) {
	if len(args) == 0 {
		return proxy.Rewrite{}, false
	}
	c := e.lookup(args[0])
	if c == nil {
		return proxy.Rewrite{}, false
	}
	switch c.kind {
	case kindType:
		// TYPE with a wrong number of arguments keeps Redis's own error.
		if argc != 2 {
			return proxy.Rewrite{}, false
		}
	case kindCommand:
		return e.rewriteCommand(args, argc, s)
	}
	// With no key the Lua still runs (numkeys 0) and answers the arity
	// error in the module's words.
	nk := 1
	if argc < 2 {
		nk = 0
	}
	rw := proxy.Rewrite{Prefix: c.prefix[e.mode.Load()][nk], PrefixArgs: 3, Reply: c}
	if c.groups {
		rw.Group = groupOf(args, argc)
	}
	return rw, true
}

// Transform restores integers beyond 2^53 in a reply too long for Check
// to see whole.
func (c *command) Transform(reply []byte, proto int) []byte {
	if fixed, ok := FixBigInts(c.name, reply); ok {
		return fixed
	}
	return reply
}

// Check recovers from a library that vanished and clarifies permission
// errors. It looks only at error replies.
func (c *command) Check(head []byte, proto int) (proxy.ReplyAction, []byte) {
	if len(head) == 0 {
		return proxy.Forward, nil
	}
	if head[0] != '-' {
		// Lua can return an integer beyond 2^53 only as a bulk string of
		// its digits; put back the module's integer reply. Only a reply
		// that fits in head can be fixed (FixBigInts checks it is whole):
		// the integers sit in small replies, or after a value of at most
		// a couple of hundred bytes.
		if c.bigInt && bytes.IndexByte(head, '$') >= 0 {
			if fixed, ok := FixBigInts(c.name, head); ok {
				return proxy.Replace, fixed
			}
			if len(head) >= proxy.HeadSize && (head[0] == '*' || head[0] == '>') {
				// The reply goes on past head (a long value before the
				// version): look at all of it in Transform.
				return proxy.Buffer, nil
			}
		}
		return proxy.Forward, nil
	}
	switch {
	case hasPrefix(head, "-ERR Function not found"), hasPrefix(head, "-NOSCRIPT "):
		// FUNCTION FLUSH, SCRIPT FLUSH, a restart or a failover to a
		// server that never saw the library.
		return proxy.Retry, nil
	case hasPrefix(head, "-NOPERM this user has no permissions to run the 'fcall' command"):
		return proxy.Replace, c.noperm[modeFCALL]
	case hasPrefix(head, "-NOPERM this user has no permissions to run the 'evalsha' command"):
		return proxy.Replace, c.noperm[modeEVALSHA]
	case hasPrefix(head, "-ERR The user executing the script can't run this command"):
		return proxy.Replace, c.inner
	case hasPrefix(head, cantExecute):
		// RESP2 subscribed mode: Redis refuses the command it ran by
		// name ("Can't execute 'fcall': only (P|S)SUBSCRIBE / ..."); with
		// the module it would name the client's command.
		if repl, ok := c.renamed(head, len(cantExecute)); ok {
			return proxy.Replace, repl
		}
	case unknownFCALL(head):
		// Redis before 7 (or FCALL renamed away): use scripts from now
		// on. The core rewrites a command again to resend it, so the
		// resend goes out as EVALSHA.
		c.ext.switchToScripts("FCALL is unknown to the server")
		return proxy.Retry, nil
	}
	return proxy.Forward, nil
}

// cantExecute starts Redis 7.0's refusal of a command in RESP2 subscribed
// mode (server.c processCommand): "-ERR Can't execute '<name>': only
// (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in
// this context". It is the one refusal there that names the command Redis
// ran (an unknown FCALL and NOPERM have their own cases above; arity
// cannot fail for a rewrite, which always has its three arguments; the
// others - NOAUTH, OOM, READONLY, MASTERDOWN, LOADING, BUSY, NOREPLICAS,
// MISCONF - name no command).
const cantExecute = "-ERR Can't execute '"

// renamed returns the error line in head with the command name that
// starts at head[at] - one of the calls the rewrite makes - replaced by the
// client's command name, keeping the rest of Redis's text as it is. ok is
// false when the name is not such a call or the line is not whole in head.
func (c *command) renamed(head []byte, at int) (repl []byte, ok bool) {
	rest := head[at:]
	q := bytes.IndexByte(rest, '\'')
	end := bytes.Index(rest, []byte("\r\n"))
	if q < 0 || end < q || !isCallName(rest[:q]) {
		return nil, false
	}
	repl = make([]byte, 0, len(head)+len(c.name))
	repl = append(repl, head[:at]...)
	repl = append(repl, c.name...)
	return append(repl, rest[q:end+2]...), true
}

// isCallName reports the commands a rewrite runs, as Redis names them in
// errors (its lower-case full name).
func isCallName(name []byte) bool {
	switch string(name) {
	case "fcall", "fcall_ro", "evalsha", "evalsha_ro":
		return true
	}
	return false
}

// Reload loads the library again; concurrent calls share loads.
func (c *command) Reload(ctx context.Context) error { return c.ext.Reload(ctx) }

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

// unknownFCALL matches Redis 7's "-ERR unknown command 'FCALL', with args
// beginning with: ..." and 6.x's variant with backquotes.
func unknownFCALL(head []byte) bool {
	const p = "-ERR unknown command "
	if !hasPrefix(head, p) || len(head) < len(p)+6 {
		return false
	}
	name := head[len(p)+1 : len(p)+6]
	return equalFold(name, "fcall") && (head[len(p)+6] == '\'' || head[len(p)+6] == '`')
}

func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, ch := range b {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		if ch != lower[i] {
			return false
		}
	}
	return true
}

// Compile-time interface guards.
var (
	_ proxy.Rewriter         = (*Extension)(nil)
	_ proxy.ReplyTransformer = (*command)(nil)
)
