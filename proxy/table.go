package proxy

import "strings"

// cmdKind marks the commands the core itself must understand: those that
// change what the session is (db, name, user, protocol), how replies pair
// with commands (pub/sub, MONITOR, CLIENT REPLY), or transactions.
type cmdKind uint8

const (
	kindPlain cmdKind = iota
	kindSelect
	kindAuth
	kindHello
	kindClient // CLIENT SETNAME / REPLY / ...: decided by the subcommand
	kindReset
	kindMulti
	kindExec
	kindDiscard
	kindSubscribe   // SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE
	kindUnsubscribe // UNSUBSCRIBE, PUNSUBSCRIBE, SUNSUBSCRIBE
	kindMonitor
	kindQuit
	kindSync // SYNC, PSYNC: what follows is an RDB payload and a replication stream, not replies
	kindWatch
	kindUnwatch
)

// command is one row of the routing table: what the core and the
// extensions want done with a command of that name.
type command struct {
	name     string // lower case; also the Event name
	kind     cmdKind
	rewriter Rewriter
	observed bool // some Observer wants it
	// own: a plain command that needs a connection of its own (it blocks,
	// or leaves state there that cannot be shared); placement.go's placeOf
	// decides for the other kinds. blockArg: it does only when a BLOCK
	// argument says so (XREAD, XREADGROUP).
	own      placement
	blockArg bool
	// ownSub: the subcommands that need a connection of their own.
	ownSub string
}

// maxNameLen bounds the names we look up; longer names are never in the
// table, and lower-casing them would need more than the stack buffer.
const maxNameLen = 32

// table maps lower-case command names to their routing. It is built once
// and only read afterwards, so lookups take no lock.
type table map[string]*command

func newTable(rewriters []Rewriter, observers []Observer) table {
	t := table{}
	get := func(name string) *command {
		c := t[name]
		if c == nil {
			c = &command{name: name}
			t[name] = c
		}
		return c
	}
	for name, kind := range map[string]cmdKind{
		"select": kindSelect, "auth": kindAuth, "hello": kindHello,
		"client": kindClient, "reset": kindReset, "multi": kindMulti,
		"exec": kindExec, "discard": kindDiscard, "monitor": kindMonitor,
		"quit": kindQuit,
		"sync": kindSync, "psync": kindSync,
		"watch": kindWatch, "unwatch": kindUnwatch,
		"subscribe": kindSubscribe, "psubscribe": kindSubscribe, "ssubscribe": kindSubscribe,
		"unsubscribe": kindUnsubscribe, "punsubscribe": kindUnsubscribe, "sunsubscribe": kindUnsubscribe,
	} {
		get(name).kind = kind
	}
	// Blocking commands hold their connection only while they run.
	for _, name := range []string{
		"blpop", "brpop", "brpoplpush", "blmove", "blmpop", "bzpopmin", "bzpopmax", "bzmpop",
		"wait", "waitaof",
	} {
		get(name).own = placeOwn
	}
	// SCRIPT KILL and FUNCTION KILL must reach Redis while a script runs,
	// which a shared connection queues them behind; SHUTDOWN likewise.
	get("shutdown").own = placeOwn
	get("script").ownSub = "kill"
	get("function").ownSub = "kill"
	// These leave state on the connection that the proxy does not follow.
	for _, name := range []string{
		"readonly", "readwrite", "asking", "replconf",
		"debug", // DEBUG SLEEP, DEBUG PROTOCOL push, ...: connection-level effects
	} {
		get(name).own = placeOwnForever
	}
	get("xread").blockArg = true
	get("xreadgroup").blockArg = true
	// Earlier rewriters take precedence: the order is fixed by the caller.
	for i := len(rewriters) - 1; i >= 0; i-- {
		for _, name := range rewriters[i].Commands() {
			get(strings.ToLower(name)).rewriter = rewriters[i]
		}
	}
	// Observers may want any command; ask about the ones we know of plus
	// the transaction and versioned-write names they are built for.
	if len(observers) > 0 {
		names := []string{"watch", "unwatch", "multi", "exec", "discard", "reset"}
		for name := range t {
			names = append(names, name)
		}
		for _, name := range names {
			for _, o := range observers {
				if o.Observes(name) {
					get(name).observed = true
				}
			}
		}
	}
	return t
}

// lookup finds name (any case) without allocating.
func (t table) lookup(name []byte) *command {
	if len(name) > maxNameLen || len(t) == 0 {
		return nil
	}
	var buf [maxNameLen]byte
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return t[string(buf[:len(name)])] // the compiler does not allocate for this conversion
}

// equalFold reports whether b equals the lower-case ASCII word s, in any case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
