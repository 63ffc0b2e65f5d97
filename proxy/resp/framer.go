package resp

import "bytes"

// Framer walks RESP values without decoding them and reports where each
// top-level value ends. It is resumable: feed it bytes as they arrive; bulk
// bodies are counted off without needing them whole in memory. An attribute
// ("|") belongs to the value after it.
//
// It understands every RESP2 and RESP3 type, including streamed strings
// ("$?" then ";N" chunks up to ";0") and streamed aggregates ("*?", "%?",
// "~?" up to "."). Map and attribute counts are pairs. It insists on CRLF
// after every line and bulk body; set Command to walk client commands
// with Redis's own leniency instead.
//
// The zero value is ready to use with DefaultLimits; Limits.MaxInlineLen
// bounds the lines it needs whole, Limits.MaxBulkLen bulk strings, chunks
// and overlong status and error lines (see Next). A Framer must not be
// copied once used and is not safe for concurrent use.
type Framer struct {
	Limits Limits
	// Command makes the framer walk client commands (multibulk only; see
	// CommandParser for inline ones) exactly as Redis and CommandParser
	// do: every element must be a "$" bulk, line ends are found by their
	// '\r' and the bytes after it and after each body are skipped unseen,
	// and the errors are CommandParser's. The proxy uses it to stream a
	// command too large to buffer, so that it ends the command where
	// Redis will.
	Command bool

	state  uint8
	kind   byte
	ended  bool  // the last Next finished a value; Kind is kept until the next starts
	left   int64 // bulk bytes still to come in stBody
	crlf   uint8 // bytes of the CRLF after a bulk body still to come
	cr     bool  // in stLine: the last byte consumed was '\r'
	chunks bool  // the bulk being read is a chunk of a streamed string
	err    error // sticky: a framer that saw malformed input stays failed
	// seen is how many bytes of a partial line at the start of the next
	// buf are known to hold no line end, so a peer trickling a long line
	// in byte by byte costs linear, not quadratic, scanning. nul records
	// a NUL byte among them in Command mode, which hides the line end as
	// it does from Redis.
	seen  int
	nul   bool
	depth int // open aggregates
	runs  int // entries of the frame stack in use
	// The stack holds runs of identical open aggregates (see
	// MaxFrameRuns). Normal values have far fewer than 16 runs, so the
	// stack lives in the struct and only deeper nesting allocates.
	stack [16]frame
	more  []frame
}

const (
	stHeader uint8 = iota // at the start of a value: a type line is next
	stBody                // inside a bulk body
	stCRLF                // at the CRLF after a bulk body
	stChunk               // inside a streamed string: a ";N" line is next
	stLine                // inside a simple string or error too long to wait for
)

var (
	errLineTooLong  = &ProtocolError{"too big reply line"}
	errLineEnd      = &ProtocolError{"expected CRLF at end of line"}
	errBodyEnd      = &ProtocolError{"expected CRLF after bulk data"}
	errBulkLen      = &ProtocolError{"invalid bulk length"}
	errAggLen       = &ProtocolError{"invalid multibulk length"}
	errInteger      = &ProtocolError{"invalid integer"}
	errBoolean      = &ProtocolError{"invalid boolean"}
	errNull         = &ProtocolError{"invalid null"}
	errEnd          = &ProtocolError{"unexpected end of streamed aggregate"}
	errChunk        = &ProtocolError{"expected ';' in streamed string"}
	errTooDeep      = &ProtocolError{"nesting too deep"}
	errInvalidFirst = "invalid type byte "
)

// Next consumes bytes of the current top-level value from buf: n bytes all
// belong to it, and done reports that the value ended at buf[n-1]. Header
// lines are consumed only when complete, so n may be 0 when buf holds a
// partial line. After done the framer is ready for the next value.
//
// The bytes not consumed must start the next call's buf (more may follow
// them): the framer remembers how much of a partial line it has searched.
//
// Simple strings and errors are the exception to whole lines: one longer
// than Limits.MaxInlineLen is not an error but is consumed as it arrives,
// like a bulk body (bounded by MaxBulkLen), since Redis sends such lines
// from Lua scripts. Every other line longer than MaxInlineLen is an error.
//
// After an error (*ProtocolError; n is what was consumed before the
// malformed byte) the framer keeps returning it until Reset.
func (f *Framer) Next(buf []byte) (n int, done bool, err error) {
	if f.err != nil {
		return 0, false, f.err
	}
	if f.ended {
		f.ended, f.kind = false, 0
	}
	max := f.Limits.MaxInlineLen
	if max <= 0 {
		max = DefaultLimits().MaxInlineLen
	}
	if f.Command {
		return f.nextCommand(buf, max)
	}
	pos := 0
	for pos < len(buf) {
		switch f.state {
		case stBody:
			avail := int64(len(buf) - pos)
			if avail >= f.left+2 {
				// The common case: the rest of the body and its CRLF
				// are here; check them in one step.
				end := pos + int(f.left)
				if buf[end] != '\r' || buf[end+1] != '\n' {
					return end, false, f.fail(errBodyEnd)
				}
				pos, f.left = end+2, 0
				if f.chunks {
					f.state = stChunk
					continue
				}
				f.state = stHeader
				if f.runs == 0 || !f.tick() && f.complete() {
					return pos, f.finish(), nil
				}
				continue
			}
			if avail < f.left {
				f.left -= avail
				return len(buf), false, nil
			}
			pos += int(f.left)
			f.left = 0
			f.state, f.crlf = stCRLF, 2
		case stCRLF:
			want := byte('\n')
			if f.crlf == 2 {
				want = '\r'
			}
			if buf[pos] != want {
				return pos, false, f.fail(errBodyEnd)
			}
			pos++
			if f.crlf--; f.crlf > 0 {
				continue
			}
			if f.chunks {
				f.state = stChunk
				continue
			}
			f.state = stHeader
			if f.complete() {
				return pos, f.finish(), nil
			}
		case stLine:
			i := bytes.IndexByte(buf[pos:], '\n')
			if i < 0 {
				// left counts the bytes after the type byte; the last
				// may yet turn out to be the line's '\r'.
				f.left += int64(len(buf) - pos)
				if f.left-1 > f.maxBulk() {
					return pos, false, f.fail(errLineTooLong)
				}
				f.cr = buf[len(buf)-1] == '\r'
				return len(buf), false, nil
			}
			// Length first, as the partial-line check above judges
			// it, so that the error does not depend on the split.
			if f.left+int64(i)-1 > f.maxBulk() {
				return pos, false, f.fail(errLineTooLong)
			}
			if !(i > 0 && buf[pos+i-1] == '\r' || i == 0 && f.cr) {
				return pos, false, f.fail(errLineEnd)
			}
			pos += i + 1
			f.state, f.left, f.cr = stHeader, 0, false
			if f.complete() {
				return pos, f.finish(), nil
			}
		default: // stHeader, stChunk
			end, next, err := f.line(buf, pos, max)
			if err == errLineTooLong && f.state == stHeader && (buf[pos] == '+' || buf[pos] == '-') {
				// Redis sends status and error lines of any length
				// from Lua ({ok=...}, {err=...}, redis.error_reply):
				// rather than refuse them or buffer them whole, pass
				// them through as they come, like a bulk body, with
				// MaxBulkLen as the bound.
				if f.depth == 0 {
					f.kind = buf[pos]
				}
				f.state, f.left, f.cr, f.seen = stLine, 0, false, 0
				pos++
				continue
			}
			if err != nil {
				return pos, false, f.fail(err)
			}
			if end < 0 {
				return pos, false, nil
			}
			var fin bool
			if f.state == stChunk {
				fin, err = f.chunk(buf[pos:end])
			} else {
				fin, err = f.header(buf[pos], buf[pos+1:end])
			}
			if err != nil {
				return pos, false, f.fail(err)
			}
			pos = next
			if fin {
				return pos, f.finish(), nil
			}
		}
	}
	return pos, false, nil
}

// line finds the header line at buf[pos:]: end is the index of its '\r',
// next the index after its '\n'; end is -1 while the line is incomplete.
// A line is judged by its own length, never by how much is buffered, so
// the result does not depend on how the input was split.
func (f *Framer) line(buf []byte, pos, max int) (end, next int, err error) {
	w := buf[pos:]
	if len(w) > max+2 {
		w = w[:max+2]
	}
	from := 0
	if pos == 0 && f.seen <= len(w) {
		from = f.seen
	}
	i := bytes.IndexByte(w[from:], '\n')
	if i < 0 {
		if len(w) > max+1 {
			return -1, 0, errLineTooLong
		}
		f.seen = len(w)
		return -1, 0, nil
	}
	i += from
	f.seen = 0
	if i == 0 || w[i-1] != '\r' {
		return -1, 0, errLineEnd
	}
	if i-1 == 0 {
		// An empty line has no type byte.
		return -1, 0, &ProtocolError{errInvalidFirst + "'\\r'"}
	}
	return pos + i - 1, pos + i + 1, nil
}

// header handles one complete line: t is its type byte, s the rest. fin
// reports that the top-level value ended with it.
func (f *Framer) header(t byte, s []byte) (fin bool, err error) {
	if f.depth == 0 && t != '|' {
		f.kind = t
	}
	switch t {
	case '+', '-', ',', '(':
		// Simple strings, errors, doubles and big numbers are the line.
	case ':':
		if _, ok := ParseInt(s); !ok {
			return false, errInteger
		}
	case '#':
		if len(s) != 1 || (s[0] != 't' && s[0] != 'f') {
			return false, errBoolean
		}
	case '_':
		if len(s) != 0 {
			return false, errNull
		}
	case '$', '=', '!':
		if t == '$' && len(s) == 1 && s[0] == '?' {
			f.state, f.chunks = stChunk, true
			return false, nil
		}
		n, ok := ParseInt(s)
		if t == '$' && ok && n == -1 {
			break // RESP2 null bulk
		}
		if !ok || n < 0 || n > f.maxBulk() {
			return false, errBulkLen
		}
		f.state, f.left, f.chunks = stBody, n, false
		return false, nil
	case '*', '%', '~', '>', '|':
		if len(s) == 1 && s[0] == '?' && (t == '*' || t == '%' || t == '~') {
			return false, f.push(frame{left: -1})
		}
		n, ok := ParseInt(s)
		if t == '*' && ok && n == -1 {
			break // RESP2 null array
		}
		if !ok || n < 0 {
			return false, errAggLen
		}
		if t == '%' || t == '|' {
			// Counted in pairs: guard the doubling, as a hostile count
			// must not wrap around.
			if n > (1<<63-1)/2 {
				return false, errAggLen
			}
			n *= 2
		}
		if n == 0 {
			if t == '|' {
				return false, nil // an empty attribute: the value still follows
			}
			break
		}
		if f.tryPush(n, t == '|') {
			return false, nil
		}
		return false, f.push(frame{left: n, attr: t == '|'})
	case '.':
		if len(s) != 0 || f.depth == 0 || f.top().left != -1 {
			return false, errEnd
		}
		f.pop()
	default:
		return false, &ProtocolError{errInvalidFirst + quoteByte(t)}
	}
	return f.runs == 0 || !f.tick() && f.complete(), nil
}

// chunk handles a ";N" line of a streamed string; ";0" ends the string.
func (f *Framer) chunk(line []byte) (fin bool, err error) {
	if line[0] != ';' {
		return false, errChunk
	}
	n, ok := ParseInt(line[1:])
	if !ok || n < 0 || n > f.maxBulk() {
		return false, errBulkLen
	}
	if n == 0 {
		f.state, f.chunks = stHeader, false
		return f.complete(), nil
	}
	f.state, f.left = stBody, n
	return false, nil
}

// tick is complete's common case, small enough to inline where every
// element of every reply passes: an element that leaves the innermost
// aggregate (alone in its run, in the struct) still open. false means
// complete must run.
func (f *Framer) tick() bool {
	r := f.runs
	if r == 0 || r > len(f.stack) {
		return false
	}
	fr := &f.stack[r-1]
	if fr.left > 1 && fr.n == 1 {
		fr.left--
		return true
	}
	return false
}

// complete records that an element ended at the current depth, closing
// every aggregate it filled. It reports whether the top-level value ended.
// Callers on the hot path try tick first.
func (f *Framer) complete() bool {
	for f.depth > 0 {
		fr := f.top()
		switch {
		case fr.left < 0:
			return false // streamed: only "." ends it
		case fr.left > 1:
			if fr.n == 1 {
				fr.left--
				return false
			}
			// The innermost aggregate of the run moves on; the rest of
			// the run still waits for as many elements as before. push
			// leaves room for this one extra run (see push).
			fr.n--
			f.pushRun(frame{left: fr.left - 1, n: 1, attr: fr.attr})
			return false
		case fr.attr:
			// The attribute is done; the value it describes, which is
			// the element its parent counts, comes next.
			f.pop()
			return false
		default:
			// This element was the last of every aggregate in the run:
			// they all end here, and the run's parent counts one more.
			f.depth -= int(fr.n)
			f.runs--
		}
	}
	return true
}

func (f *Framer) finish() bool {
	f.ended = true
	if cap(f.more) > keepRuns {
		f.more = nil
	}
	return true
}

func (f *Framer) fail(err error) error {
	f.err = err
	return err
}

func (f *Framer) maxBulk() int64 {
	if f.Limits.MaxBulkLen <= 0 {
		return DefaultLimits().MaxBulkLen
	}
	return f.Limits.MaxBulkLen
}

// Kind is the type byte of the current top-level value ('+', '-', ':', '$',
// '*', '%', '~', '>', '_', ',', '#', '(', '=', '!'), skipping attributes;
// 0 until known. After done it still describes the value just ended.
func (f *Framer) Kind() byte { return f.kind }

// Reset forgets any value in progress, and any error.
func (f *Framer) Reset() {
	more := f.more[:0]
	if cap(more) > keepRuns {
		more = nil
	}
	*f = Framer{Limits: f.Limits, Command: f.Command, more: more}
}

func quoteByte(c byte) string {
	const hexdigits = "0123456789abcdef"
	if c >= 0x20 && c < 0x7f {
		return "'" + string([]byte{c}) + "'"
	}
	return "'\\x" + string([]byte{hexdigits[c>>4], hexdigits[c&15]}) + "'"
}
