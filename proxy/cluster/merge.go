package cluster

import (
	"bytes"
	"strconv"

	"github.com/exproxy/exproxy/proxy/resp"
)

// Merging the replies of a command that a proxy sent to several nodes —
// a multi-key command split by slot, a whole-dataset command sent to
// every primary — into the one reply a single Redis would have given.
// Every function takes the complete raw replies, in the client's
// protocol (RESP2 or RESP3), in the order of the parts, and returns a
// complete raw reply. An error reply wins over the others: the first
// one, in part order, is the result, as the first failing part is what
// one Redis running the whole command would have stopped at.

// Agg says how integer replies combine (the cluster's response_policy
// tips agg_sum, agg_min, agg_max, agg_logical_and, agg_logical_or).
type Agg uint8

const (
	AggSum Agg = iota
	AggMin
	AggMax
	AggAnd
	AggOr
)

// firstError returns the first error reply among parts, or nil.
func firstError(parts [][]byte) []byte {
	for _, p := range parts {
		if len(p) > 0 && p[0] == '-' || len(p) > 0 && p[0] == '!' {
			return p
		}
	}
	return nil
}

// AggregateIntegers combines integer replies; for AggAnd and AggOr,
// arrays of integers (SCRIPT EXISTS) combine element by element. A reply
// of another type than the first's is returned as it is: the nodes did
// not answer alike, and the client sees what one of them said.
func AggregateIntegers(parts [][]byte, agg Agg) []byte {
	if e := firstError(parts); e != nil {
		return e
	}
	if len(parts) == 0 {
		return resp.AppendInt(nil, 0)
	}
	if parts[0][0] == '*' && (agg == AggAnd || agg == AggOr) {
		return aggregateArrays(parts, agg)
	}
	var acc int64
	for i, p := range parts {
		v, ok := integerReply(p)
		if !ok {
			return p
		}
		switch {
		case i == 0:
			acc = v
		case agg == AggSum:
			acc += v
		case agg == AggMin:
			acc = min(acc, v)
		case agg == AggMax:
			acc = max(acc, v)
		case agg == AggAnd:
			acc = b2i(acc != 0 && v != 0)
		case agg == AggOr:
			acc = b2i(acc != 0 || v != 0)
		}
	}
	if agg == AggAnd || agg == AggOr {
		acc = b2i(acc != 0)
	}
	return resp.AppendInt(nil, acc)
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func aggregateArrays(parts [][]byte, agg Agg) []byte {
	var acc []int64
	for i, p := range parts {
		_, elems, ok := Elements(p)
		if !ok {
			return p
		}
		if i == 0 {
			acc = make([]int64, len(elems))
		} else if len(elems) != len(acc) {
			return p
		}
		for j, el := range elems {
			v, ok := integerReply(el)
			if !ok {
				return p
			}
			switch {
			case i == 0:
				acc[j] = b2i(v != 0)
			case agg == AggAnd:
				acc[j] = b2i(acc[j] != 0 && v != 0)
			default:
				acc[j] = b2i(acc[j] != 0 || v != 0)
			}
		}
	}
	out := resp.AppendArrayHeader(nil, len(acc))
	for _, v := range acc {
		out = resp.AppendInt(out, v)
	}
	return out
}

// integerReply reads ":N\r\n".
func integerReply(b []byte) (int64, bool) {
	if len(b) < 4 || b[0] != ':' || b[len(b)-2] != '\r' {
		return 0, false
	}
	return resp.ParseInt(b[1 : len(b)-2])
}

// AllSucceeded is the response_policy all_succeeded: the first reply
// when none is an error, else the first error.
func AllSucceeded(parts [][]byte) []byte {
	if e := firstError(parts); e != nil {
		return e
	}
	if len(parts) == 0 {
		return []byte("+OK\r\n")
	}
	return parts[0]
}

// OneSucceeded is the response_policy one_succeeded: the first reply
// that is not an error; else the first error other than NOTBUSY; else
// the first error. SCRIPT KILL and FUNCTION KILL: the node that ran the
// script answers OK (or UNKILLABLE, when the script wrote), the others
// NOTBUSY, so the client hears about the script as from one Redis.
func OneSucceeded(parts [][]byte) []byte {
	for _, p := range parts {
		if len(p) > 0 && p[0] != '-' && p[0] != '!' {
			return p
		}
	}
	for _, p := range parts {
		if !bytes.HasPrefix(p, []byte("-NOTBUSY")) {
			return p
		}
	}
	if len(parts) == 0 {
		return []byte("+OK\r\n")
	}
	return parts[0]
}

// FunctionLibraries merges FUNCTION LIST replies (an array of
// libraries, each a map, or in RESP2 an array of field/value pairs) into
// the list one Redis holding every node's libraries would give: each
// library once by library_name, the first node's entry where several
// have it, in part order. The nodes applied LIBRARYNAME and WITHCODE.
func FunctionLibraries(parts [][]byte) []byte {
	if e := firstError(parts); e != nil {
		return e
	}
	if len(parts) == 0 {
		return resp.AppendArrayHeader(nil, 0)
	}
	seen := make(map[string]bool)
	var libs [][]byte
	size := 16
	for _, p := range parts {
		_, elems, ok := Elements(p)
		if !ok {
			return p
		}
		for _, lib := range elems {
			name, ok := field(lib, "library_name")
			if !ok {
				return p
			}
			if seen[string(name)] {
				continue
			}
			seen[string(name)] = true
			libs = append(libs, lib)
			size += len(lib)
		}
	}
	out := resp.AppendArrayHeader(make([]byte, 0, size), len(libs))
	for _, lib := range libs {
		out = append(out, lib...)
	}
	return out
}

// FunctionStats merges FUNCTION STATS replies: the first node's, with
// running_script taken from a node that runs one (null when none does).
// The engines' counts are the first node's: FUNCTION LOAD, DELETE,
// FLUSH and RESTORE go to every primary, so the nodes hold the same
// libraries.
func FunctionStats(parts [][]byte) []byte {
	if e := firstError(parts); e != nil {
		return e
	}
	if len(parts) == 0 {
		return []byte("*0\r\n")
	}
	var running []byte
	for _, p := range parts {
		v, ok := field(p, "running_script")
		if !ok {
			return p
		}
		if !isNull(v) {
			running = v
			break
		}
	}
	if running == nil {
		return parts[0]
	}
	typ, kv, ok := mapPairs(parts[0])
	if !ok {
		return parts[0]
	}
	count := len(kv)
	if typ == '%' {
		count /= 2 // a map's header counts pairs
	}
	out := append([]byte{typ}, strconv.Itoa(count)...)
	out = append(out, '\r', '\n')
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, kv[i]...)
		if v, _ := bulkValue(kv[i]); string(v) == "running_script" {
			out = append(out, running...)
		} else {
			out = append(out, kv[i+1]...)
		}
	}
	return out
}

// mapPairs splits a map reply, or an array of alternate fields and values
// (its RESP2 form), into fields and values alternately.
func mapPairs(b []byte) (typ byte, kv [][]byte, ok bool) {
	if len(b) > 0 && b[0] == '%' {
		i := bytes.IndexByte(b, '\n')
		if i < 3 || b[i-1] != '\r' {
			return 0, nil, false
		}
		n, ok := resp.ParseInt(b[1 : i-1])
		if !ok || n < 0 {
			return 0, nil, false
		}
		if n > int64(len(b)) {
			return 0, nil, false
		}
		kv, ok = elements(b[i+1:], int(2*n))
		return '%', kv, ok
	}
	typ, kv, ok = Elements(b)
	if !ok || len(kv)%2 != 0 {
		return 0, nil, false
	}
	return typ, kv, true
}

// field returns the value of a map reply's (or a RESP2 pairs array's)
// field.
func field(b []byte, name string) ([]byte, bool) {
	_, kv, ok := mapPairs(b)
	if !ok {
		return nil, false
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if v, ok := bulkValue(kv[i]); ok && string(v) == name {
			return kv[i+1], true
		}
	}
	return nil, false
}

// ConcatArrays joins array (or set) replies into one, in part order
// (KEYS).
func ConcatArrays(parts [][]byte) []byte {
	if e := firstError(parts); e != nil {
		return e
	}
	if len(parts) == 0 {
		return resp.AppendArrayHeader(nil, 0)
	}
	typ := parts[0][0]
	total := 0
	bodies := make([][]byte, len(parts))
	for i, p := range parts {
		t, n, body, ok := header(p)
		if !ok || t != typ {
			return p
		}
		total += n
		bodies[i] = body
	}
	out := append([]byte{typ}, strconv.Itoa(total)...)
	out = append(out, '\r', '\n')
	for _, b := range bodies {
		out = append(out, b...)
	}
	return out
}

// MergeByKey builds the array reply of a command whose keys were split
// among parts (MGET): element j of part i goes to position keys[i][j] of
// n. A part that is not an array of len(keys[i]) elements is returned as
// it is.
func MergeByKey(parts [][]byte, keys [][]int32, n int) []byte {
	if e := firstError(parts); e != nil {
		return e
	}
	out := make([][]byte, n)
	size := 16
	for i, p := range parts {
		_, elems, ok := Elements(p)
		if !ok || i >= len(keys) || len(elems) != len(keys[i]) {
			return p
		}
		for j, el := range elems {
			out[keys[i][j]] = el
			size += len(el)
		}
	}
	b := resp.AppendArrayHeader(make([]byte, 0, size), n)
	for _, el := range out {
		b = append(b, el...)
	}
	return b
}

// ScanCursorBits is how many low bits of a proxy SCAN cursor say which
// primary is being scanned; the node's own cursor is in the bits above.
const ScanCursorBits = 10

// ScanCursor splits a proxy SCAN cursor into the index of the primary it
// walks and that node's cursor.
func ScanCursor(c uint64) (idx int, node uint64) {
	return int(c & (1<<ScanCursorBits - 1)), c >> ScanCursorBits
}

// ScanReply turns a node's SCAN reply into the proxy's: the node's next
// cursor with the index of the primary (idx of n) in the low bits, or,
// when that node is done, the start of the next primary, or 0 after the
// last, so that one walk visits every primary's keys in turn.
func ScanReply(reply []byte, idx, n int) []byte {
	if len(reply) == 0 || reply[0] == '-' {
		return reply
	}
	_, elems, ok := Elements(reply)
	if !ok || len(elems) != 2 {
		return reply
	}
	cur, ok := bulkValue(elems[0])
	if !ok {
		return reply
	}
	next, err := strconv.ParseUint(string(cur), 10, 64)
	if err != nil || next > 1<<(64-ScanCursorBits)-1 {
		return reply
	}
	var c uint64
	switch {
	case next != 0:
		c = next<<ScanCursorBits | uint64(idx)
	case idx+1 < n:
		c = uint64(idx + 1)
	}
	out := resp.AppendArrayHeader(make([]byte, 0, len(reply)+8), 2)
	out = resp.AppendBulkString(out, strconv.FormatUint(c, 10))
	return append(out, elems[1]...)
}

// PickNonNull returns one of the replies that are not null, chosen with
// intn (rand.IntN), else the first reply (RANDOMKEY: a key of a random
// primary that has one).
func PickNonNull(parts [][]byte, intn func(int) int) []byte {
	if e := firstError(parts); e != nil {
		return e
	}
	var some [][]byte
	for _, p := range parts {
		if !isNull(p) {
			some = append(some, p)
		}
	}
	if len(some) > 0 {
		return some[intn(len(some))]
	}
	if len(parts) == 0 {
		return []byte("$-1\r\n")
	}
	return parts[0]
}

func isNull(b []byte) bool {
	return bytes.Equal(b, []byte("$-1\r\n")) || bytes.Equal(b, []byte("_\r\n")) || bytes.Equal(b, []byte("*-1\r\n"))
}

// bulkValue reads "$N\r\n...\r\n" (or a simple string) to its value.
func bulkValue(b []byte) ([]byte, bool) {
	if len(b) < 3 || b[len(b)-2] != '\r' {
		return nil, false
	}
	switch b[0] {
	case '+':
		return b[1 : len(b)-2], true
	case '$':
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return nil, false
		}
		return b[i+1 : len(b)-2], true
	}
	return nil, false
}

// header reads an aggregate's type and count and returns the rest.
func header(b []byte) (typ byte, n int, body []byte, ok bool) {
	if len(b) < 4 || (b[0] != '*' && b[0] != '~') {
		return 0, 0, nil, false
	}
	i := bytes.IndexByte(b, '\n')
	if i < 3 || b[i-1] != '\r' {
		return 0, 0, nil, false
	}
	v, ok := resp.ParseInt(b[1 : i-1])
	if !ok || v < 0 {
		return 0, 0, nil, false
	}
	return b[0], int(v), b[i+1:], true
}

// Elements splits a complete array (or set) reply into its elements.
func Elements(b []byte) (typ byte, elems [][]byte, ok bool) {
	typ, n, body, ok := header(b)
	if !ok {
		return 0, nil, false
	}
	elems, ok = elements(body, n)
	if !ok {
		return 0, nil, false
	}
	return typ, elems, true
}

// elements splits body, the elements of an aggregate, into its n
// complete elements.
func elements(body []byte, n int) (elems [][]byte, ok bool) {
	if n < 0 || n > len(body) {
		// Every element takes bytes (a count from a header is not
		// trusted with an allocation); a doubled map count may wrap.
		return nil, false
	}
	elems = make([][]byte, 0, n)
	var f resp.Framer
	f.Limits = resp.Limits{MaxBulkLen: 1 << 62, MaxInlineLen: 1 << 30, MaxArgs: 1<<31 - 1}
	for len(body) > 0 {
		f.Reset()
		m, done, err := f.Next(body)
		if err != nil || !done {
			return nil, false
		}
		elems = append(elems, body[:m])
		body = body[m:]
	}
	return elems, len(elems) == n
}
