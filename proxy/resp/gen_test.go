package resp

import (
	"math/rand/v2"
	"strconv"
)

// gen writes random, valid RESP values. Tests frame what it writes and
// compare against the boundaries it knows, against radix's reader, and
// against the same bytes fed in other splits.
type gen struct {
	r     *rand.Rand
	resp3 bool
	big   bool // now and then a bulk of up to 1 MB
	// topAttrs keeps attributes to the top level: radix's reader (an
	// oracle) does not accept them inside aggregates, which RESP3 allows.
	topAttrs bool
}

// value appends one top-level value and returns its kind (the type byte
// after any attributes).
func (g *gen) value(dst []byte, depth int) ([]byte, byte) {
	if g.resp3 && g.r.IntN(12) == 0 && (depth == 0 || !g.topAttrs) {
		dst = g.attribute(dst, depth)
	}
	types := "+-:$*"
	if g.resp3 {
		types = "+-:$*%~>_,#(=!SA" // S: streamed string, A: streamed aggregate
	}
	t := types[g.r.IntN(len(types))]
	if depth >= 4 && (t == '*' || t == '%' || t == '~' || t == '>' || t == 'A') {
		t = ':'
	}
	switch t {
	case '+':
		return append(append(dst, '+'), g.text()...), '+'
	case '-':
		return append(append(dst, "-ERR "...), g.text()...), '-'
	case ':':
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, g.r.Int64()-g.r.Int64(), 10)
		return append(dst, '\r', '\n'), ':'
	case '$':
		if g.r.IntN(8) == 0 {
			return append(dst, "$-1\r\n"...), '$'
		}
		return g.bulk(dst, '$'), '$'
	case '=':
		return g.bulk(dst, '='), '='
	case '!':
		return g.bulk(dst, '!'), '!'
	case '_':
		return append(dst, "_\r\n"...), '_'
	case ',':
		d := []string{"3.14", "-0.5", "inf", "-inf", "nan", "1e+300", "0"}[g.r.IntN(7)]
		return append(append(append(dst, ','), d...), '\r', '\n'), ','
	case '#':
		return append(dst, []string{"#t\r\n", "#f\r\n"}[g.r.IntN(2)]...), '#'
	case '(':
		return append(dst, "(-3492890328409238509324850943850943825024385\r\n"...), '('
	case 'S':
		dst = append(dst, "$?\r\n"...)
		for i := g.r.IntN(4); i > 0; i-- {
			b := g.payload()
			if len(b) == 0 {
				continue
			}
			dst = append(dst, ';')
			dst = strconv.AppendInt(dst, int64(len(b)), 10)
			dst = append(append(append(dst, '\r', '\n'), b...), '\r', '\n')
		}
		return append(dst, ";0\r\n"...), '$'
	case 'A':
		k := "*%~"[g.r.IntN(3)]
		dst = append(dst, k, '?', '\r', '\n')
		n := g.r.IntN(4)
		if k == '%' {
			n *= 2
		}
		for ; n > 0; n-- {
			dst, _ = g.value(dst, depth+1)
		}
		return append(dst, ".\r\n"...), k
	default: // '*', '%', '~', '>'
		if t == '*' && g.r.IntN(10) == 0 {
			return append(dst, "*-1\r\n"...), '*'
		}
		n := g.r.IntN(5)
		dst = append(dst, t)
		dst = strconv.AppendInt(dst, int64(n), 10)
		dst = append(dst, '\r', '\n')
		if t == '%' {
			n *= 2
		}
		for ; n > 0; n-- {
			dst, _ = g.value(dst, depth+1)
		}
		return dst, t
	}
}

// attribute appends an attribute ("|") of one or two pairs.
func (g *gen) attribute(dst []byte, depth int) []byte {
	n := 1 + g.r.IntN(2)
	dst = append(dst, '|')
	dst = strconv.AppendInt(dst, int64(n), 10)
	dst = append(dst, '\r', '\n')
	for i := 0; i < 2*n; i++ {
		if g.topAttrs {
			// radix also stops discarding an attribute at an error
			// inside it: keep to simple strings.
			dst = append(append(dst, '+'), g.text()...)
			continue
		}
		dst, _ = g.value(dst, depth+3) // keep attributes shallow
	}
	return dst
}

func (g *gen) bulk(dst []byte, t byte) []byte {
	b := g.payload()
	if t == '=' {
		b = append([]byte("txt:"), b...)
	}
	dst = append(dst, t)
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(append(append(dst, '\r', '\n'), b...), '\r', '\n')
	return dst
}

// payload is binary data that often contains CR, LF and RESP-looking bytes,
// so that a framer peeking into bodies would go wrong.
func (g *gen) payload() []byte {
	n := g.r.IntN(40)
	if g.big && g.r.IntN(50) == 0 {
		n = g.r.IntN(1 << 20)
	}
	b := make([]byte, n)
	const alphabet = "\r\n*$+-:%|.;?abc012"
	for i := range b {
		if g.r.IntN(2) == 0 {
			b[i] = alphabet[g.r.IntN(len(alphabet))]
		} else {
			b[i] = byte(g.r.Uint32())
		}
	}
	return b
}

// text is a line without CR or LF, terminated by CRLF.
func (g *gen) text() []byte {
	n := g.r.IntN(20)
	b := make([]byte, 0, n+2)
	for i := 0; i < n; i++ {
		c := byte(' ' + g.r.IntN(95))
		b = append(b, c)
	}
	return append(b, '\r', '\n')
}

// stream appends count values and returns where each ends and its kind.
func (g *gen) stream(count int) (data []byte, ends []int, kinds []byte) {
	for i := 0; i < count; i++ {
		var k byte
		data, k = g.value(data, 0)
		ends = append(ends, len(data))
		kinds = append(kinds, k)
	}
	return data, ends, kinds
}
