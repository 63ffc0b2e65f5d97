package cluster

import (
	"fmt"
	"sort"
	"strings"
)

// CommandFlags are a command's flags from COMMAND.
type CommandFlags uint32

const (
	FlagWrite CommandFlags = 1 << iota
	FlagReadOnly
	FlagDenyOOM
	FlagModule
	FlagAdmin
	FlagPubSub
	FlagNoScript
	FlagBlocking
	FlagLoading
	FlagStale
	FlagSkipMonitor
	FlagSkipSlowlog
	FlagAsking
	FlagFast
	FlagNoAuth
	FlagMayReplicate
	FlagNoMandatoryKeys
	FlagNoMulti
	FlagMovableKeys
	FlagAllowBusy
)

var flagNames = map[string]CommandFlags{
	"write": FlagWrite, "readonly": FlagReadOnly, "denyoom": FlagDenyOOM,
	"module": FlagModule, "admin": FlagAdmin, "pubsub": FlagPubSub,
	"noscript": FlagNoScript, "blocking": FlagBlocking, "loading": FlagLoading,
	"stale": FlagStale, "skip_monitor": FlagSkipMonitor, "skip_slowlog": FlagSkipSlowlog,
	"asking": FlagAsking, "fast": FlagFast, "no_auth": FlagNoAuth,
	"may_replicate": FlagMayReplicate, "no_mandatory_keys": FlagNoMandatoryKeys,
	"no_multi": FlagNoMulti, "movablekeys": FlagMovableKeys, "allow_busy": FlagAllowBusy,
}

// RequestPolicy is the request_policy tip of a command: where a client of
// a cluster should send it when it has no key.
type RequestPolicy uint8

const (
	RequestDefault    RequestPolicy = iota // no tip: by key, or to any node
	RequestAllNodes                        // every node, replicas too (e.g. CONFIG SET)
	RequestAllShards                       // every primary (e.g. DBSIZE, KEYS, FLUSHALL)
	RequestMultiShard                      // split per key's shard (e.g. MGET, DEL)
	RequestSpecial                         // needs its own handling (e.g. SCAN)
)

// ResponsePolicy is the response_policy tip: how the replies of a fanned
// out command combine into one.
type ResponsePolicy uint8

const (
	ResponseDefault       ResponsePolicy = iota // no tip: merge arrays, or the one reply
	ResponseOneSucceeded                        // any success, else the error
	ResponseAllSucceeded                        // the success when all succeed, else an error
	ResponseAggLogicalAnd                       // AND of the integers
	ResponseAggLogicalOr                        // OR of the integers
	ResponseAggMin                              // the smallest integer
	ResponseAggMax                              // the largest integer
	ResponseAggSum                              // the sum (e.g. DBSIZE)
	ResponseSpecial                             // needs its own handling
)

var requestPolicies = map[string]RequestPolicy{
	"all_nodes": RequestAllNodes, "all_shards": RequestAllShards,
	"multi_shard": RequestMultiShard, "special": RequestSpecial,
}

var responsePolicies = map[string]ResponsePolicy{
	"one_succeeded": ResponseOneSucceeded, "all_succeeded": ResponseAllSucceeded,
	"agg_logical_and": ResponseAggLogicalAnd, "agg_logical_or": ResponseAggLogicalOr,
	"agg_min": ResponseAggMin, "agg_max": ResponseAggMax, "agg_sum": ResponseAggSum,
	"special": ResponseSpecial,
}

// KeySpecFlags are the flags of one key specification.
type KeySpecFlags uint16

const (
	SpecRO KeySpecFlags = 1 << iota
	SpecRW
	SpecOW
	SpecRM
	SpecAccess
	SpecUpdate
	SpecInsert
	SpecDelete
	// SpecNotKey: the arguments are not keys but route like keys (the
	// shard channels of SPUBLISH, SSUBSCRIBE, SUNSUBSCRIBE).
	SpecNotKey
	// SpecIncomplete: the spec may miss keys (SORT's BY/GET, MIGRATE's KEYS).
	SpecIncomplete
	// SpecVariableFlags: the key's flags depend on other arguments (SET ... GET).
	SpecVariableFlags
)

var specFlagNames = map[string]KeySpecFlags{
	"RO": SpecRO, "RW": SpecRW, "OW": SpecOW, "RM": SpecRM,
	"access": SpecAccess, "update": SpecUpdate, "insert": SpecInsert, "delete": SpecDelete,
	"not_key": SpecNotKey, "incomplete": SpecIncomplete, "variable_flags": SpecVariableFlags,
}

type beginKind uint8

const (
	beginUnknown beginKind = iota
	beginIndex
	beginKeyword
)

type findKind uint8

const (
	findUnknown findKind = iota
	findRange
	findKeynum
)

// keySpec is one key specification of Redis 7 COMMAND: where the search
// for keys begins (an argument index, or after a keyword searched from
// an index, backwards when startfrom is negative) and how the keys are
// found from there (a range to lastkey, -1 meaning the end, or with a
// limit dividing what is left; or a count in an argument).
type keySpec struct {
	flags     KeySpecFlags
	begin     beginKind
	index     int    // beginIndex
	keyword   string // beginKeyword, lower case
	startFrom int    // beginKeyword
	find      findKind
	lastKey   int // findRange
	limit     int // findRange
	keyNumIdx int // findKeynum
	firstKey  int // findKeynum
	keyStep   int
}

// Command is one command (or subcommand) of the table.
type Command struct {
	// Name is lower case; a subcommand's is "container|sub", as COMMAND
	// gives it ("object|encoding").
	Name string
	// Arity is Redis's: N exactly N arguments (the name included), -N at
	// least N.
	Arity    int
	Flags    CommandFlags
	Request  RequestPolicy
	Response ResponsePolicy
	// Nondeterministic: the nondeterministic_output tip (replies differ
	// between nodes or calls, e.g. RANDOMKEY, SCAN).
	Nondeterministic bool

	specs   []keySpec
	subs    map[string]*Command // by the part after '|', lower case
	getkeys func(args [][]byte, dst []int) []int
}

// Table says where the keys of each command are. It is built once from a
// COMMAND reply and only read afterwards, so it is safe for concurrent
// use without locks.
type Table struct {
	cmds map[string]*Command
}

// NewTable builds a table from a COMMAND reply as go-redis's Do returns it
// (RESP2 or RESP3). Redis 7 replies carry key specifications and
// subcommands; for older replies the legacy first/last/step key range is
// used.
func NewTable(reply any) (*Table, error) {
	entries, ok := array(reply)
	if !ok {
		return nil, fmt.Errorf("COMMAND: %T, want an array", reply)
	}
	t := &Table{cmds: make(map[string]*Command, len(entries))}
	for i, e := range entries {
		c, err := parseCommand(e)
		if err != nil {
			return nil, fmt.Errorf("COMMAND: entry %d: %w", i, err)
		}
		if c.Flags&FlagModule == 0 {
			c.getkeys = builtinGetKeys[c.Name]
		}
		t.cmds[c.Name] = c
	}
	return t, nil
}

func parseCommand(v any) (*Command, error) {
	a, ok := array(v)
	if !ok || len(a) < 6 {
		return nil, fmt.Errorf("%T of %d elements, want [name arity flags first last step ...]", v, len(a))
	}
	name, ok := str(a[0])
	if !ok || name == "" {
		return nil, fmt.Errorf("name %T", a[0])
	}
	c := &Command{Name: strings.ToLower(name)}
	arity, ok := integer(a[1])
	if !ok || arity > 1<<20 || arity < -(1<<20) {
		return nil, fmt.Errorf("%s: arity %v", name, a[1])
	}
	c.Arity = int(arity)
	flags, ok := stringArray(a[2])
	if !ok {
		return nil, fmt.Errorf("%s: flags %T", name, a[2])
	}
	for _, f := range flags {
		c.Flags |= flagNames[f]
	}
	var legacy [3]int64
	for i := range legacy {
		if legacy[i], ok = integer(a[3+i]); !ok {
			return nil, fmt.Errorf("%s: key position %T", name, a[3+i])
		}
	}
	if len(a) > 7 {
		tips, ok := stringArray(a[7])
		if !ok {
			return nil, fmt.Errorf("%s: tips %T", name, a[7])
		}
		for _, tip := range tips {
			k, v, _ := strings.Cut(tip, ":")
			switch k {
			case "request_policy":
				c.Request = requestPolicies[v]
			case "response_policy":
				c.Response = responsePolicies[v]
			case "nondeterministic_output":
				c.Nondeterministic = true
			}
		}
	}
	if len(a) > 8 {
		specs, ok := array(a[8])
		if !ok {
			return nil, fmt.Errorf("%s: key specs %T", name, a[8])
		}
		for i, s := range specs {
			ks, err := parseKeySpec(s)
			if err != nil {
				return nil, fmt.Errorf("%s: key spec %d: %w", name, i, err)
			}
			c.specs = append(c.specs, ks)
		}
	} else if legacy[0] > 0 {
		// Before Redis 7: the key range first..last (negative: from the
		// end) every step arguments.
		ks := keySpec{begin: beginIndex, index: int(legacy[0]), find: findRange, keyStep: int(legacy[2]), lastKey: int(legacy[1])}
		if legacy[1] >= 0 {
			ks.lastKey = int(legacy[1] - legacy[0])
		}
		c.specs = append(c.specs, ks)
	}
	if len(a) > 9 {
		subs, ok := array(a[9])
		if !ok {
			return nil, fmt.Errorf("%s: subcommands %T", name, a[9])
		}
		for _, sv := range subs {
			sub, err := parseCommand(sv)
			if err != nil {
				return nil, fmt.Errorf("%s: subcommand: %w", name, err)
			}
			parent, short, ok := strings.Cut(sub.Name, "|")
			if !ok || parent != c.Name || short == "" {
				return nil, fmt.Errorf("%s: subcommand named %q", name, sub.Name)
			}
			if c.subs == nil {
				c.subs = map[string]*Command{}
			}
			c.subs[short] = sub
		}
	}
	return c, nil
}

func parseKeySpec(v any) (keySpec, error) {
	var s keySpec
	err := pairs(v, func(k string, v any) error {
		switch k {
		case "flags":
			flags, ok := stringArray(v)
			if !ok {
				return fmt.Errorf("flags %T", v)
			}
			for _, f := range flags {
				s.flags |= specFlagNames[f]
			}
		case "begin_search":
			typ, spec, err := typedSpec(v)
			if err != nil {
				return fmt.Errorf("begin_search: %w", err)
			}
			switch typ {
			case "index":
				s.begin = beginIndex
				return pairs(spec, func(k string, v any) error {
					if k == "index" {
						return intField(&s.index, k, v)
					}
					return nil
				})
			case "keyword":
				s.begin = beginKeyword
				return pairs(spec, func(k string, v any) error {
					switch k {
					case "keyword":
						kw, ok := str(v)
						if !ok {
							return fmt.Errorf("keyword %T", v)
						}
						s.keyword = strings.ToLower(kw)
					case "startfrom":
						return intField(&s.startFrom, k, v)
					}
					return nil
				})
			}
		case "find_keys":
			typ, spec, err := typedSpec(v)
			if err != nil {
				return fmt.Errorf("find_keys: %w", err)
			}
			switch typ {
			case "range":
				s.find = findRange
				return pairs(spec, func(k string, v any) error {
					switch k {
					case "lastkey":
						return intField(&s.lastKey, k, v)
					case "keystep":
						return intField(&s.keyStep, k, v)
					case "limit":
						return intField(&s.limit, k, v)
					}
					return nil
				})
			case "keynum":
				s.find = findKeynum
				return pairs(spec, func(k string, v any) error {
					switch k {
					case "keynumidx":
						return intField(&s.keyNumIdx, k, v)
					case "firstkey":
						return intField(&s.firstKey, k, v)
					case "keystep":
						return intField(&s.keyStep, k, v)
					}
					return nil
				})
			}
		}
		return nil
	})
	return s, err
}

// typedSpec reads {type: T, spec: {...}}; an unknown type (a module
// command without specs says "unknown") leaves the spec unusable, which
// Keys treats as Redis does: no keys.
func typedSpec(v any) (typ string, spec any, err error) {
	err = pairs(v, func(k string, v any) error {
		switch k {
		case "type":
			var ok bool
			if typ, ok = str(v); !ok {
				return fmt.Errorf("type %T", v)
			}
		case "spec":
			spec = v
		}
		return nil
	})
	if err == nil && spec == nil {
		spec = []any{}
	}
	return typ, spec, err
}

func intField(dst *int, k string, v any) error {
	n, ok := integer(v)
	if !ok || n > 1<<20 || n < -(1<<20) {
		return fmt.Errorf("%s: %v", k, v)
	}
	*dst = int(n)
	return nil
}

// maxName bounds the command and subcommand names looked up without
// allocating.
const maxName = 64

func find(m map[string]*Command, name []byte) *Command {
	if len(name) > maxName {
		return m[strings.ToLower(string(name))]
	}
	var buf [maxName]byte
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return m[string(buf[:len(name)])] // no allocation for this conversion
}

// Lookup returns the command args[0] names (any case) — the subcommand
// when it is a container such as OBJECT or XINFO and args[1] names one of
// its subcommands — or nil when the cluster does not know it.
func (t *Table) Lookup(args [][]byte) *Command {
	if len(args) == 0 {
		return nil
	}
	c := find(t.cmds, args[0])
	if c != nil && c.subs != nil && len(args) > 1 {
		if sub := find(c.subs, args[1]); sub != nil {
			return sub
		}
	}
	return c
}

// Command returns the command of the given name ("get", "object|encoding"),
// or nil.
func (t *Table) Command(name string) *Command {
	parent, sub, isSub := strings.Cut(strings.ToLower(name), "|")
	c := t.cmds[parent]
	if c == nil || !isSub {
		return c
	}
	return c.subs[sub]
}

// Commands returns every command and subcommand, ordered by name.
func (t *Table) Commands() []*Command {
	var out []*Command
	for _, c := range t.cmds {
		out = append(out, c)
		for _, s := range c.subs {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Keys appends to dst[:0] the indexes in args of the arguments the
// cluster hashes to route the command (args[0] is its name, in any case),
// and returns it. An unknown command has none. See Command.Keys.
func (t *Table) Keys(args [][]byte, dst []int) []int {
	if c := t.Lookup(args); c != nil {
		return c.Keys(args, dst)
	}
	return dst[:0]
}

// SpecFlags returns the flags of all the command's key specifications
// together: SpecNotKey for the shard-channel commands, SpecIncomplete for
// specs that may miss keys (MIGRATE), SpecRO without SpecRW|SpecOW|SpecRM
// for commands that only read keys.
func (c *Command) SpecFlags() KeySpecFlags {
	var f KeySpecFlags
	for _, s := range c.specs {
		f |= s.flags
	}
	return f
}

// HasKeys reports whether the command can have keys at all.
func (c *Command) HasKeys() bool { return len(c.specs) > 0 || c.getkeys != nil }

// Subcommands returns the subcommands of a container command, by name.
func (c *Command) Subcommands() []*Command {
	out := make([]*Command, 0, len(c.subs))
	for _, s := range c.subs {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Keys appends to dst[:0] the indexes in args of the arguments Redis
// Cluster hashes to route this command, and returns it; with a dst of
// enough capacity it does not allocate. args[0] is the command name
// (args[1] the subcommand's).
//
// The positions are those a cluster node itself uses to redirect the
// command (getKeysFromCommand): for the built-in commands whose key
// specifications are incomplete or need parsing (SORT, MIGRATE, XREAD,
// GEORADIUS, EVAL, ZUNION, SET, ...) Redis's own key extraction, written
// again here; for every other command, modules' included, the key
// specifications evaluated as COMMAND GETKEYS does, with SpecNotKey
// arguments (shard channels) included because they route like keys. A
// command with the wrong number of arguments, or with arguments the specs
// cannot make sense of (a bad numkeys), has no keys: the node it goes to
// will reply with the error.
func (c *Command) Keys(args [][]byte, dst []int) []int {
	dst = dst[:0]
	argc := len(args)
	if argc == 0 || c.Arity > 0 && argc != c.Arity || c.Arity < 0 && argc < -c.Arity {
		return dst
	}
	if c.getkeys != nil {
		return c.getkeys(args, dst)
	}
	dst, _ = c.specKeys(args, dst)
	return dst
}

// specKeys evaluates every key spec in order (getKeysUsingKeySpecs); when
// one fails, the command has no keys and ok is false.
func (c *Command) specKeys(args [][]byte, dst []int) (keys []int, ok bool) {
	for i := range c.specs {
		if dst, ok = c.specs[i].keys(args, dst); !ok {
			return dst[:0], false
		}
	}
	return dst, true
}

// keys appends the keys one spec finds (getKeysUsingKeySpecs); false means
// the spec failed and the command has no keys.
func (s *keySpec) keys(args [][]byte, dst []int) ([]int, bool) {
	argc := len(args)
	first := 0
	switch s.begin {
	case beginIndex:
		first = s.index
	case beginKeyword:
		start, end := s.startFrom, argc-1
		if s.startFrom <= 0 {
			start, end = argc+s.startFrom, 1
		}
		step := 1
		if start > end {
			step = -1
		}
		for i := start; i != end; i += step {
			if i >= argc || i < 1 {
				break
			}
			if equalFoldC(args[i], s.keyword) {
				first = i + 1
				break
			}
		}
		if first == 0 {
			return dst, true // no keyword, no keys from this spec
		}
	default:
		return dst, false
	}
	var last int
	switch s.find {
	case findRange:
		switch {
		case s.lastKey >= 0:
			last = first + s.lastKey
		case s.limit == 0:
			last = argc + s.lastKey
		default:
			last = first + ((argc-first)/s.limit + s.lastKey)
		}
	case findKeynum:
		at := first + s.keyNumIdx
		if at < 0 || at >= argc {
			return dst, false
		}
		n, ok := parseInt64(args[at])
		if !ok || n < 0 {
			return dst, false
		}
		first += s.firstKey
		last = first + int(int32(n)) - 1 // Redis casts numkeys to int
	default:
		return dst, false
	}
	if first < 0 || first >= argc || last >= argc || last < first || s.keyStep <= 0 {
		return dst, false
	}
	for i := first; i <= last; i += s.keyStep {
		dst = append(dst, i)
	}
	return dst, s.flags&SpecIncomplete == 0
}

// equalFoldC reports whether b equals the lower-case ASCII word s in any
// case, comparing as C's strcasecmp does on Redis's NUL-terminated
// arguments: bytes from a NUL on do not count.
func equalFoldC(b []byte, s string) bool {
	for i, c := range b {
		if c == 0 {
			b = b[:i]
			break
		}
	}
	if len(b) != len(s) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// parseInt64 reads a decimal integer as Redis's string2ll does: an
// optional '-', no '+', no spaces, no leading zeros, no overflow.
func parseInt64(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || b[0] < '1' || b[0] > '9' {
		return 0, false
	}
	var u uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if u > 1<<63/10 {
			return 0, false // more than 19 digits' worth: beyond int64
		}
		u = u*10 + uint64(c-'0')
	}
	switch {
	case neg && u <= 1<<63:
		return -int64(u), true
	case !neg && u <= 1<<63-1:
		return int64(u), true
	}
	return 0, false
}
