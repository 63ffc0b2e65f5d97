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
// that is not an error, else the first error (SCRIPT KILL: the node that
// ran the script answers OK, the others NOTBUSY).
func OneSucceeded(parts [][]byte) []byte {
	for _, p := range parts {
		if len(p) > 0 && p[0] != '-' && p[0] != '!' {
			return p
		}
	}
	if len(parts) == 0 {
		return []byte("+OK\r\n")
	}
	return parts[0]
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
	elems = make([][]byte, 0, n)
	var f resp.Framer
	f.Limits = resp.Limits{MaxBulkLen: 1 << 62, MaxInlineLen: 1 << 30, MaxArgs: 1<<31 - 1}
	for len(body) > 0 {
		f.Reset()
		m, done, err := f.Next(body)
		if err != nil || !done {
			return 0, nil, false
		}
		elems = append(elems, body[:m])
		body = body[m:]
	}
	if len(elems) != n {
		return 0, nil, false
	}
	return typ, elems, true
}
