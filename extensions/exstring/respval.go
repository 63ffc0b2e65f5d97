package exstring

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// This file holds the little RESP it takes to rewrite COMMAND replies: an
// encoder for the entries exstring adds and a skipper that finds where a
// value ends. It is deliberately separate from proxy/resp's streaming
// Framer: COMMAND replies are buffered whole by the core, are rare, and
// allocation here does not matter.

// rv is a RESP value to encode in either protocol. Kinds follow RESP3:
// '+' simple, '$' bulk, ':' integer, '*' array, '~' set, '%' map (a holds
// key, value, key, value ...), '_' null.
type rv struct {
	k byte
	s string
	n int64
	a []rv
}

func simple(s string) rv { return rv{k: '+', s: s} }
func bulk(s string) rv   { return rv{k: '$', s: s} }
func integer(n int64) rv { return rv{k: ':', n: n} }
func array(a ...rv) rv   { return rv{k: '*', a: a} }
func set(a ...rv) rv     { return rv{k: '~', a: a} }
func mapOf(kv ...rv) rv  { return rv{k: '%', a: kv} }
func simples(ss ...string) rv {
	a := make([]rv, len(ss))
	for i, s := range ss {
		a[i] = simple(s)
	}
	return set(a...)
}

// appendRESP encodes v as Redis would for a client speaking proto: in
// RESP2 sets become arrays, maps flat arrays of twice the length, and null
// the null bulk string.
func (v rv) appendRESP(b []byte, proto int) []byte {
	switch v.k {
	case '+':
		return append(append(append(b, '+'), v.s...), "\r\n"...)
	case '$':
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(v.s)), 10)
		return append(append(append(b, "\r\n"...), v.s...), "\r\n"...)
	case ':':
		return append(strconv.AppendInt(append(b, ':'), v.n, 10), "\r\n"...)
	case '_':
		if proto >= 3 {
			return append(b, "_\r\n"...)
		}
		return append(b, "$-1\r\n"...)
	}
	k, n := v.k, len(v.a)
	if proto < 3 {
		k = '*'
	} else if k == '%' {
		n /= 2
	}
	b = append(b, k)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, "\r\n"...)
	for _, e := range v.a {
		b = e.appendRESP(b, proto)
	}
	return b
}

func (v rv) encode(proto int) []byte { return v.appendRESP(nil, proto) }

var errShort = errors.New("exstring: truncated RESP value")

// readLine returns the header line starting at b[i] (without its type byte
// and CRLF) and the offset after it.
func readLine(b []byte, i int) (line []byte, next int, err error) {
	j := bytes.Index(b[i:], []byte("\r\n"))
	if j < 0 {
		return nil, 0, errShort
	}
	if j == 0 {
		return nil, 0, errors.New("exstring: RESP line without a type")
	}
	return b[i+1 : i+j], i + j + 2, nil
}

// header reads an aggregate or bulk header at b[i]: its type byte, its
// count or length, and the offset after the line.
func header(b []byte, i int) (kind byte, n int64, next int, err error) {
	if i >= len(b) {
		return 0, 0, 0, errShort
	}
	line, next, err := readLine(b, i)
	if err != nil {
		return 0, 0, 0, err
	}
	kind = b[i]
	switch kind {
	case '*', '~', '>', '%', '|', '$', '!', '=':
		n, err = strconv.ParseInt(string(line), 10, 64)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("exstring: bad length %q: %w", line, err)
		}
	}
	return kind, n, next, nil
}

// maxDepth bounds nesting; COMMAND replies nest six deep, and a bound
// keeps a hostile reply from recursing without end.
const maxDepth = 64

// skipValue returns the offset just after the complete value starting at
// b[i]. An attribute belongs to the value after it, as in proxy/resp.
func skipValue(b []byte, i int) (int, error) { return skipDepth(b, i, 0) }

func skipDepth(b []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return 0, errors.New("exstring: RESP value nested too deeply")
	}
	kind, n, next, err := header(b, i)
	if err != nil {
		return 0, err
	}
	switch kind {
	case '+', '-', ':', ',', '#', '(', '_':
		return next, nil
	case '$', '!', '=':
		if n < 0 {
			return next, nil
		}
		end := next + int(n) + 2
		if n > int64(len(b)) || end > len(b) {
			return 0, errShort
		}
		return end, nil
	case '*', '~', '>', '%', '|':
		if n < 0 {
			return next, nil
		}
		if kind == '%' || kind == '|' {
			n *= 2
		}
		if n > int64(len(b)) { // every element takes at least 3 bytes
			return 0, errShort
		}
		for ; n > 0; n-- {
			if next, err = skipDepth(b, next, depth+1); err != nil {
				return 0, err
			}
		}
		if kind == '|' {
			return skipDepth(b, next, depth+1)
		}
		return next, nil
	}
	return 0, fmt.Errorf("exstring: unknown RESP type %q", kind)
}

// isNull reports whether the value at b[i:end] is a null (RESP2 null bulk
// or array, RESP3 null).
func isNull(v []byte) bool {
	return bytes.Equal(v, []byte("$-1\r\n")) || bytes.Equal(v, []byte("*-1\r\n")) || bytes.Equal(v, []byte("_\r\n"))
}
