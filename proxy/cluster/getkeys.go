package cluster

// Redis Cluster routes a command by the keys getKeysFromCommand finds
// (cluster.c, getNodeByQuery). For most commands those are the key
// specifications; for the built-in commands below Redis calls a function
// of its own instead, because their specs are incomplete (SORT, MIGRATE),
// have variable flags (SET, BITFIELD) or cannot express the parsing
// (XREAD's options before STREAMS, GEORADIUS's last STORE winning, the
// lenient numkeys of EVAL and ZUNION). These are those functions (db.c,
// Redis 7.0), written again, quirks included, so the proxy picks the node
// a cluster node itself would. The table applies them by name only to
// commands without the module flag.
var builtinGetKeys = map[string]func(args [][]byte, dst []int) []int{
	"set":      firstKeyOnly, // SET key ... [GET]: variable flags, one key
	"bitfield": firstKeyOnly,
	"sort_ro":  firstKeyOnly, // BY and GET patterns are not routed

	"sort":              sortKeys,
	"migrate":           migrateKeys,
	"georadius":         georadiusKeys,
	"georadiusbymember": georadiusKeys,
	"xread":             xreadKeys,
	"xreadgroup":        xreadKeys,

	"sintercard":  numKeys(0, 1, 2, 1),
	"zunion":      numKeys(0, 1, 2, 1),
	"zinter":      numKeys(0, 1, 2, 1),
	"zdiff":       numKeys(0, 1, 2, 1),
	"zintercard":  numKeys(0, 1, 2, 1),
	"zunionstore": numKeys(1, 2, 3, 1),
	"zinterstore": numKeys(1, 2, 3, 1),
	"zdiffstore":  numKeys(1, 2, 3, 1),
	"eval":        numKeys(0, 2, 3, 1),
	"evalsha":     numKeys(0, 2, 3, 1),
	"eval_ro":     numKeys(0, 2, 3, 1),
	"evalsha_ro":  numKeys(0, 2, 3, 1),
	"fcall":       numKeys(0, 2, 3, 1),
	"fcall_ro":    numKeys(0, 2, 3, 1),
	"lmpop":       numKeys(0, 1, 2, 1),
	"zmpop":       numKeys(0, 1, 2, 1),
	"blmpop":      numKeys(0, 2, 3, 1),
	"bzmpop":      numKeys(0, 2, 3, 1),
}

func firstKeyOnly(args [][]byte, dst []int) []int {
	if len(args) < 2 {
		return dst
	}
	return append(dst, 1)
}

// numKeys is genericGetKeys: numkeys at countAt (read with C's atoi),
// that many keys from first every step, then the destination key at
// store (0: none). A count below 1 or beyond the arguments means no keys.
func numKeys(store, countAt, first, step int) func([][]byte, []int) []int {
	return func(args [][]byte, dst []int) []int {
		argc := len(args)
		if countAt >= argc || store >= argc {
			return dst
		}
		n := cAtoi(args[countAt])
		if n < 1 || n > (argc-first)/step {
			return dst
		}
		for i := range n {
			dst = append(dst, first+i*step)
		}
		if store > 0 {
			dst = append(dst, store)
		}
		return dst
	}
}

// sortKeys: the sorted key, and the last STORE destination. Options are
// skipped with their arguments (LIMIT 2, GET 1, BY 1), so "SORT k GET
// store" has no destination.
func sortKeys(args [][]byte, dst []int) []int {
	if len(args) < 2 {
		return dst
	}
	dst = append(dst, 1)
	store := 0
	for i := 2; i < len(args); i++ {
		a := args[i]
		switch {
		case equalFoldC(a, "limit"):
			i += 2
		case equalFoldC(a, "store") && i+1 < len(args):
			store = i + 1
		case equalFoldC(a, "get"), equalFoldC(a, "by"):
			i++
		}
	}
	if store > 0 {
		dst = append(dst, store)
	}
	return dst
}

// migrateKeys: MIGRATE host port key|"" db timeout [COPY] [REPLACE]
// [AUTH pw | AUTH2 user pw] [KEYS key...]: the key argument, or with an
// empty one the keys after KEYS (none when both are given: a syntax
// error the node reports).
func migrateKeys(args [][]byte, dst []int) []int {
	argc := len(args)
	if argc < 4 {
		return dst
	}
	first, num := 3, 1
	if argc > 6 {
	scan:
		for i := 6; i < argc; i++ {
			a := args[i]
			switch {
			case equalFoldC(a, "keys"):
				if len(args[3]) > 0 {
					num = 0
				} else {
					first, num = i+1, argc-i-1
				}
				break scan
			case equalFoldC(a, "auth"):
				i++
			case equalFoldC(a, "auth2"):
				i += 2
			}
		}
	}
	for i := range num {
		dst = append(dst, first+i)
	}
	return dst
}

// georadiusKeys: the key, and the last STORE or STOREDIST destination
// from the sixth argument on.
func georadiusKeys(args [][]byte, dst []int) []int {
	if len(args) < 2 {
		return dst
	}
	stored := 0
	for i := 5; i < len(args); i++ {
		if (equalFoldC(args[i], "store") || equalFoldC(args[i], "storedist")) && i+1 < len(args) {
			stored = i + 1
			i++
		}
	}
	dst = append(dst, 1)
	if stored > 0 {
		dst = append(dst, stored)
	}
	return dst
}

// xreadKeys: XREAD/XREADGROUP [BLOCK ms] [COUNT n] [GROUP g c] [NOACK]
// STREAMS key... id...: the first half of what follows the STREAMS that
// ends the options (a stream or group may itself be named "streams").
func xreadKeys(args [][]byte, dst []int) []int {
	argc := len(args)
	streams := -1
scan:
	for i := 1; i < argc; i++ {
		a := args[i]
		switch {
		case equalFoldC(a, "block"), equalFoldC(a, "count"):
			i++
		case equalFoldC(a, "group"):
			i += 2
		case equalFoldC(a, "noack"):
		case equalFoldC(a, "streams"):
			streams = i
			break scan
		default:
			break scan
		}
	}
	if streams < 0 {
		return dst
	}
	num := argc - streams - 1
	if num == 0 || num%2 != 0 {
		return dst
	}
	for i := streams + 1; i < argc-num/2; i++ {
		dst = append(dst, i)
	}
	return dst
}

// cAtoi is C's atoi as glibc has it (strtol, then a cast to int): leading
// white space, a sign, digits up to the first other byte, saturation at
// the 64-bit limits, then truncation to 32 bits.
func cAtoi(b []byte) int {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] >= '\t' && b[i] <= '\r') {
		i++
	}
	neg := false
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		neg = b[i] == '-'
		i++
	}
	var u uint64
	over := false
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if u > 1<<63/10 {
			over = true
			continue
		}
		u = u*10 + uint64(b[i]-'0')
	}
	var v int64
	switch {
	case !neg && (over || u > 1<<63-1):
		v = 1<<63 - 1
	case neg && (over || u > 1<<63):
		v = -1 << 63
	case neg:
		v = -int64(u)
	default:
		v = int64(u)
	}
	return int(int32(v))
}
