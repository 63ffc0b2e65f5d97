package resp

import "strconv"

// The Append helpers write RESP into dst and return the extended slice,
// like strconv.AppendInt: with enough capacity in dst they allocate nothing.

// AppendArrayHeader appends "*n\r\n".
func AppendArrayHeader(dst []byte, n int) []byte {
	return appendHeader(dst, '*', int64(n))
}

// AppendMapHeader appends the RESP3 map header "%n\r\n" for n pairs.
func AppendMapHeader(dst []byte, n int) []byte {
	return appendHeader(dst, '%', int64(n))
}

// AppendBulkHeader appends "$n\r\n", the header of an n-byte bulk string
// whose body (and its trailing CRLF) the caller writes itself.
func AppendBulkHeader(dst []byte, n int) []byte {
	return appendHeader(dst, '$', int64(n))
}

// AppendBulk appends b as a bulk string.
func AppendBulk(dst, b []byte) []byte {
	dst = appendHeader(dst, '$', int64(len(b)))
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

// AppendBulkString appends s as a bulk string.
func AppendBulkString(dst []byte, s string) []byte {
	dst = appendHeader(dst, '$', int64(len(s)))
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

// AppendNull appends the null reply of protocol proto: "$-1\r\n" for RESP2
// (what Redis sends for a missing key), "_\r\n" for RESP3.
func AppendNull(dst []byte, proto int) []byte {
	if proto >= 3 {
		return append(dst, '_', '\r', '\n')
	}
	return append(dst, "$-1\r\n"...)
}

// AppendError appends the error reply "-msg\r\n"; msg comes without the
// leading '-' (e.g. "ERR syntax error"). Like Redis's addReplyError, it
// turns '\r' and '\n' in msg into spaces, since either would end the reply
// early and desynchronise the client.
func AppendError(dst []byte, msg string) []byte {
	return appendLine(dst, '-', msg)
}

// AppendSimple appends the simple string "+s\r\n", with '\r' and '\n' in s
// turned into spaces for the same reason as AppendError.
func AppendSimple(dst []byte, s string) []byte {
	return appendLine(dst, '+', s)
}

// AppendInt appends the integer reply ":n\r\n".
func AppendInt(dst []byte, n int64) []byte {
	return appendHeader(dst, ':', n)
}

func appendHeader(dst []byte, t byte, n int64) []byte {
	dst = append(dst, t)
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, '\r', '\n')
}

func appendLine(dst []byte, t byte, s string) []byte {
	dst = append(dst, t)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return append(dst, '\r', '\n')
}

// CommandName appends name, lower-cased (ASCII only, as Redis's command
// lookup is case-insensitive only in ASCII), to lowerDst[:0]. With enough
// capacity in lowerDst it allocates nothing; command-table lookups can
// then use string(result) in a map index, which Go does without copying.
func CommandName(lowerDst, name []byte) []byte {
	dst := lowerDst[:0]
	for _, c := range name {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// ParseInt parses a RESP length or integer exactly as Redis's string2ll
// does: an optional '-', then digits with no leading zero (except "0"
// itself), at most 20 bytes, no '+', no spaces, within int64. ok is false
// for anything else. It allocates nothing, unlike strconv.ParseInt's error.
func ParseInt(b []byte) (v int64, ok bool) {
	n := len(b)
	if n == 0 || n >= 21 {
		return 0, false
	}
	if n == 1 && b[0] == '0' {
		return 0, true
	}
	i, neg := 0, false
	if b[0] == '-' {
		neg = true
		i++
		if i == n {
			return 0, false
		}
	}
	if b[i] < '1' || b[i] > '9' {
		return 0, false
	}
	u := uint64(b[i] - '0')
	for i++; i < n; i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if u > (1<<64-1)/10 {
			return 0, false
		}
		u *= 10
		d := uint64(c - '0')
		if u > 1<<64-1-d {
			return 0, false
		}
		u += d
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > 1<<63-1 {
		return 0, false
	}
	return int64(u), true
}
