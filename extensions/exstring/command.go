package exstring

import (
	"context"
	"path"
	"strconv"
	"strings"

	"github.com/exproxy/exproxy/proxy"
)

// cmdSpec describes one ex command for COMMAND INFO and COMMAND DOCS, in
// the shape Redis 7.0 gives for a comparable core command (SET, GETEX,
// APPEND, GETDEL).
type cmdSpec struct {
	name     string
	arity    int      // Redis convention: -N means at least N, name included
	flags    []string // command flags
	keyFlags []string // key-spec flags
	summary  string
	args     []arg
}

// arg is one entry of COMMAND DOCS "arguments".
type arg struct {
	name, typ, token string
	key, optional    bool
	sub              []arg
}

var (
	writeFlags   = []string{"write", "denyoom"}
	writeNoOOM   = []string{"write"}
	readFlags    = []string{"readonly"}
	keyUpdate    = []string{"RW", "access", "update"}
	keyRead      = []string{"RO", "access"}
	keyInsert    = []string{"RW", "insert"}
	keyDelete    = []string{"RW", "delete"}
	keySetVer    = []string{"RW", "update"}
	argK         = arg{name: "key", typ: "key", key: true}
	argCondition = arg{name: "condition", typ: "oneof", optional: true, sub: []arg{
		{name: "nx", typ: "pure-token", token: "NX"},
		{name: "xx", typ: "pure-token", token: "XX"},
	}}
	argVersion = arg{name: "version", typ: "oneof", optional: true, sub: []arg{
		{name: "version", typ: "integer", token: "VER"},
		{name: "absolute-version", typ: "integer", token: "ABS"},
	}}
	expireTimes = []arg{
		{name: "seconds", typ: "integer", token: "EX"},
		{name: "milliseconds", typ: "integer", token: "PX"},
		{name: "unix-time-seconds", typ: "unix-time", token: "EXAT"},
		{name: "unix-time-milliseconds", typ: "unix-time", token: "PXAT"},
	}
	argExpiration = arg{name: "expiration", typ: "oneof", optional: true,
		sub: append(append([]arg(nil), expireTimes...), arg{name: "keepttl", typ: "pure-token", token: "KEEPTTL"})}
	argWithVersion = arg{name: "withversion", typ: "pure-token", token: "WITHVERSION", optional: true}
)

// specs lists the client-facing ex commands, in the order COMMAND lists them.
var specs = []cmdSpec{
	{name: "exset", arity: -3, flags: writeFlags, keyFlags: keyUpdate,
		summary: "Set the value of a versioned string and increment its version",
		args: []arg{argK, {name: "value", typ: "string"}, argExpiration, argCondition, argVersion,
			{name: "flags", typ: "integer", token: "FLAGS", optional: true}, argWithVersion}},
	{name: "exget", arity: -2, flags: readFlags, keyFlags: keyRead,
		summary: "Get the value and version of a versioned string",
		args:    []arg{argK, {name: "withflags", typ: "pure-token", token: "WITHFLAGS", optional: true}}},
	{name: "exsetver", arity: 3, flags: writeNoOOM, keyFlags: keySetVer,
		summary: "Set the version of a versioned string",
		args:    []arg{argK, {name: "version", typ: "integer"}}},
	{name: "exincrby", arity: -3, flags: writeFlags, keyFlags: keyUpdate,
		summary: "Increment the integer value of a versioned string",
		args: []arg{argK, {name: "increment", typ: "integer"},
			{name: "default", typ: "integer", token: "DEF", optional: true},
			argExpiration, argCondition, argVersion,
			{name: "min", typ: "integer", token: "MIN", optional: true},
			{name: "max", typ: "integer", token: "MAX", optional: true},
			{name: "nonegative", typ: "pure-token", token: "NONEGATIVE", optional: true},
			argWithVersion}},
	{name: "exincrbyfloat", arity: -3, flags: writeFlags, keyFlags: keyUpdate,
		summary: "Increment the floating point value of a versioned string",
		args: []arg{argK, {name: "increment", typ: "double"}, argExpiration, argCondition, argVersion,
			{name: "min", typ: "double", token: "MIN", optional: true},
			{name: "max", typ: "double", token: "MAX", optional: true}}},
	{name: "excas", arity: -4, flags: writeFlags, keyFlags: keyUpdate,
		summary: "Set the value of a versioned string if its version matches",
		args: []arg{argK, {name: "newvalue", typ: "string"}, {name: "version", typ: "integer"},
			argExpiration}},
	{name: "excad", arity: 3, flags: writeNoOOM, keyFlags: keyDelete,
		summary: "Delete a versioned string if its version matches",
		args:    []arg{argK, {name: "version", typ: "integer"}}},
	{name: "exappend", arity: -3, flags: writeFlags, keyFlags: keyInsert,
		summary: "Append to the value of a versioned string",
		args:    []arg{argK, {name: "value", typ: "string"}, argCondition, argVersion}},
	{name: "exprepend", arity: -3, flags: writeFlags, keyFlags: keyInsert,
		summary: "Prepend to the value of a versioned string",
		args:    []arg{argK, {name: "value", typ: "string"}, argCondition, argVersion}},
	{name: "exgae", arity: -4, flags: writeNoOOM, keyFlags: keyUpdate,
		summary: "Get the value, version and flags of a versioned string and set its expiration",
		args:    []arg{argK, {name: "expiration", typ: "oneof", sub: expireTimes}}},
	{name: "cas", arity: -4, flags: writeFlags, keyFlags: keyUpdate,
		summary: "Set the value of a string if it equals an expected value",
		args: []arg{argK, {name: "oldvalue", typ: "string"}, {name: "newvalue", typ: "string"},
			argExpiration}},
	{name: "cad", arity: 3, flags: writeNoOOM, keyFlags: keyDelete,
		summary: "Delete a string if it equals an expected value",
		args:    []arg{argK, {name: "value", typ: "string"}}},
}

func (s *cmdSpec) aclCategories() []string {
	if s.flags[0] == "readonly" {
		return []string{"@read", "@string", "@slow"}
	}
	return []string{"@write", "@string", "@slow"}
}

// infoValue is the command's COMMAND INFO entry.
func (s *cmdSpec) infoValue() rv {
	keySpec := mapOf(
		bulk("flags"), simples(s.keyFlags...),
		bulk("begin_search"), mapOf(bulk("type"), bulk("index"), bulk("spec"), mapOf(bulk("index"), integer(1))),
		bulk("find_keys"), mapOf(bulk("type"), bulk("range"), bulk("spec"),
			mapOf(bulk("lastkey"), integer(0), bulk("keystep"), integer(1), bulk("limit"), integer(0))),
	)
	return array(
		bulk(s.name),
		integer(int64(s.arity)),
		simples(s.flags...),
		integer(1), integer(1), integer(1), // first key, last key, step
		simples(s.aclCategories()...),
		set(),        // tips
		set(keySpec), // key specs (a set in RESP3, as Redis 7.0 sends it)
		set(),        // subcommands
	)
}

// docsValue is the command's COMMAND DOCS entry (without its name).
func (s *cmdSpec) docsValue() rv {
	args := make([]rv, len(s.args))
	for i, a := range s.args {
		args[i] = a.value()
	}
	return mapOf(
		bulk("summary"), bulk(s.summary),
		bulk("since"), bulk("1.0.0"),
		bulk("group"), bulk("string"),
		bulk("complexity"), bulk("O(1)"),
		bulk("arguments"), array(args...),
	)
}

func (a arg) value() rv {
	kv := []rv{bulk("name"), bulk(a.name), bulk("type"), bulk(a.typ)}
	if a.key {
		kv = append(kv, bulk("key_spec_index"), integer(0))
	}
	if a.token != "" {
		kv = append(kv, bulk("token"), bulk(a.token))
	}
	if a.optional {
		kv = append(kv, bulk("flags"), simples("optional"))
	}
	if len(a.sub) > 0 {
		sub := make([]rv, len(a.sub))
		for i, s := range a.sub {
			sub[i] = s.value()
		}
		kv = append(kv, bulk("arguments"), array(sub...))
	}
	return mapOf(kv...)
}

// buildCommandEntries encodes every COMMAND INFO and DOCS entry once, in
// both protocols.
func (e *Extension) buildCommandEntries() {
	for _, c := range e.cmds {
		if c.spec == nil {
			continue
		}
		for p := 0; p < 2; p++ {
			proto := p + 2
			c.info[p] = c.spec.infoValue().encode(proto)
			c.docs[p] = c.spec.docsValue().appendRESP(bulk(c.name).encode(proto), proto)
			e.info[p] = append(e.info[p], c.info[p]...)
			e.docs[p] = append(e.docs[p], c.docs[p]...)
		}
	}
}

// exCommands returns the client-facing ex commands (not TYPE, COMMAND).
func (e *Extension) exCommands() []*command { return e.cmds[:len(specs)] }

func protoIndex(proto int) int {
	if proto >= 3 {
		return 1
	}
	return 0
}

// rewriteCommand handles COMMAND and its subcommands. COMMAND is rare, so
// this path allocates freely. Subcommands it does not know pass through.
func (e *Extension) rewriteCommand(args [][]byte, argc int, s *proxy.SessionInfo) (proxy.Rewrite, bool) {
	if len(args) < argc {
		return proxy.Rewrite{}, false // too large to have been buffered; not a real COMMAND call
	}
	if argc == 1 {
		return proxy.Rewrite{Reply: &commandReply{ext: e, op: opAll}}, true
	}
	names := make([]string, 0, argc-2)
	for _, a := range args[2:] {
		names = append(names, strings.ToLower(string(a)))
	}
	switch strings.ToLower(string(args[1])) {
	case "count":
		if argc == 2 {
			return proxy.Rewrite{Reply: &commandReply{ext: e, op: opCount}}, true
		}
	case "list":
		return proxy.Rewrite{Reply: &commandReply{ext: e, op: opList, names: names}}, true
	case "info":
		if argc == 2 {
			return proxy.Rewrite{Reply: &commandReply{ext: e, op: opAll}}, true
		}
		return proxy.Rewrite{Reply: &commandReply{ext: e, op: opInfo, names: names}}, true
	case "docs":
		return proxy.Rewrite{Reply: &commandReply{ext: e, op: opDocs, names: names}}, true
	case "getkeys", "getkeysandflags":
		if argc < 3 {
			break // Redis's own arity error
		}
		c := e.byName[names[0]]
		if c == nil || c.spec == nil {
			break
		}
		if argc-2 < -c.spec.arity || (c.spec.arity > 0 && argc-2 != c.spec.arity) {
			return proxy.Rewrite{Local: []byte("-ERR Invalid number of arguments specified for command\r\n")}, true
		}
		// Redis does not know the command and answers an error; Transform
		// replaces it with the answer, encoded in the protocol the session
		// speaks by the time the reply arrives (Rewrite must not read it).
		return proxy.Rewrite{Reply: &commandReply{ext: e, op: opGetKeys, key: string(args[3]), spec: c.spec,
			andFlags: strings.EqualFold(string(args[1]), "getkeysandflags")}}, true
	}
	return proxy.Rewrite{}, false
}

// COMMAND reply operations.
const (
	opAll     = iota // COMMAND, COMMAND INFO: append every entry
	opInfo           // COMMAND INFO names: fill the nulls of ex commands
	opDocs           // COMMAND DOCS [names]: append entries
	opCount          // COMMAND COUNT: add the number of ex commands
	opList           // COMMAND LIST [FILTERBY ...]: append matching names
	opGetKeys        // COMMAND GETKEYS[ANDFLAGS] exfoo key ...: answer for Redis
)

// commandReply completes one COMMAND reply. It is created per call because
// it needs the call's arguments; Transform is given only the reply.
type commandReply struct {
	ext   *Extension
	op    int
	names []string // lower-case arguments after the subcommand

	key      string   // opGetKeys: the key argument
	spec     *cmdSpec // opGetKeys: the command asked about
	andFlags bool     // opGetKeys: GETKEYSANDFLAGS
}

// Check asks for the whole reply: Transform changes it.
func (r *commandReply) Check(head []byte, proto int) (proxy.ReplyAction, []byte) {
	return proxy.Buffer, nil
}

// Reload has nothing to reload: COMMAND needs no library.
func (r *commandReply) Reload(ctx context.Context) error { return nil }

// Transform adds the ex commands to the reply. A reply it cannot read (an
// error, or a shape it does not expect) is returned unchanged.
func (r *commandReply) Transform(reply []byte, proto int) []byte {
	out, ok := r.transform(reply, proto)
	if !ok {
		return reply
	}
	return out
}

func (r *commandReply) transform(reply []byte, proto int) ([]byte, bool) {
	e, p := r.ext, protoIndex(proto)
	if r.op == opGetKeys {
		if hasPrefix(reply, "-NOPERM") {
			return nil, false // the client may not run COMMAND at all
		}
		if r.andFlags {
			return array(array(bulk(r.key), simples(r.spec.keyFlags...))).encode(proto), true
		}
		return array(bulk(r.key)).encode(proto), true
	}
	kind, n, body, err := header(reply, 0)
	if err != nil {
		return nil, false
	}
	if !complete(reply, kind, n, body) {
		return nil, false
	}
	switch r.op {
	case opCount:
		if kind != ':' {
			return nil, false
		}
		line, _, _ := readLine(reply, 0)
		v, err := strconv.ParseInt(string(line), 10, 64)
		if err != nil {
			return nil, false
		}
		return append(strconv.AppendInt([]byte{':'}, v+int64(len(specs)), 10), "\r\n"...), true
	case opAll:
		if kind != '*' || n < 0 {
			return nil, false
		}
		return withCount('*', n+int64(len(specs)), reply[body:], e.info[p]), true
	case opList:
		if kind != '*' || n < 0 {
			return nil, false
		}
		var add []byte
		count := n
		for _, c := range e.exCommands() {
			if r.listed(c) {
				add = bulk(c.name).appendRESP(add, proto)
				count++
			}
		}
		return withCount('*', count, reply[body:], add), true
	case opDocs:
		var add []byte
		var count int64
		for _, c := range e.exCommands() {
			if len(r.names) == 0 {
				add = append(add, c.docs[p]...)
				count++
				continue
			}
			for _, name := range r.names {
				if name == c.name {
					add = append(add, c.docs[p]...)
					count++
				}
			}
		}
		switch {
		case kind == '%' && n >= 0:
			return withCount('%', n+count, reply[body:], add), true
		case kind == '*' && n >= 0 && proto < 3:
			return withCount('*', n+2*count, reply[body:], add), true
		}
		return nil, false
	case opInfo:
		if kind != '*' || n != int64(len(r.names)) {
			return nil, false
		}
		out := append([]byte(nil), reply[:body]...)
		at := body
		for _, name := range r.names {
			end, err := skipValue(reply, at)
			if err != nil {
				return nil, false
			}
			if c := e.byName[name]; c != nil && c.spec != nil && isNull(reply[at:end]) {
				out = append(out, c.info[p]...)
			} else {
				out = append(out, reply[at:end]...)
			}
			at = end
		}
		return append(out, reply[at:]...), true
	}
	return nil, false
}

// complete checks that the reply is exactly one aggregate of n elements
// (or a line), so that rewriting its header cannot produce garbage.
func complete(reply []byte, kind byte, n int64, body int) bool {
	switch kind {
	case '*', '%':
		if n < 0 {
			return body == len(reply)
		}
		if kind == '%' {
			n *= 2
		}
		for ; n > 0; n-- {
			end, err := skipValue(reply, body)
			if err != nil {
				return false
			}
			body = end
		}
		return body == len(reply)
	case ':':
		return body == len(reply)
	}
	return false
}

// listed applies COMMAND LIST's FILTERBY to an ex command.
func (r *commandReply) listed(c *command) bool {
	if len(r.names) == 0 {
		return true
	}
	if len(r.names) != 3 || r.names[0] != "filterby" {
		return false // Redis answers a syntax error; the transform finds no array
	}
	switch r.names[1] {
	case "pattern":
		ok, err := path.Match(r.names[2], c.name)
		return err == nil && ok
	case "aclcat":
		for _, cat := range c.spec.aclCategories() {
			if cat[1:] == strings.TrimPrefix(r.names[2], "@") {
				return true
			}
		}
	}
	return false // FILTERBY MODULE: the ex commands belong to no module
}

// withCount writes an aggregate header with count, then body, then add.
func withCount(kind byte, count int64, body, add []byte) []byte {
	out := make([]byte, 0, 24+len(body)+len(add))
	out = append(out, kind)
	out = strconv.AppendInt(out, count, 10)
	out = append(out, "\r\n"...)
	out = append(out, body...)
	return append(out, add...)
}

// Compile-time interface guard.
var _ proxy.ReplyTransformer = (*commandReply)(nil)
