package resp

import "bytes"

// CommandParser frames client commands: RESP multibulk and inline, exactly
// as Redis 7.0 does (networking.c processMultibulkBuffer and
// processInlineBuffer, sds.c sdssplitargs), so that the proxy accepts,
// rejects and splits commands where Redis would. The zero value uses
// DefaultLimits. A CommandParser is not safe for concurrent use.
type CommandParser struct {
	Limits  Limits
	scratch []byte
}

// Parse frames the first command in buf. On success n > 0 bytes were
// consumed and args (appended to argv[:0]) holds the arguments; for
// multibulk commands they alias buf, for inline commands they may alias
// the parser's scratch space, valid until the next call. inline reports an
// inline command. A command with no arguments (empty inline line, "*0",
// "*-1") has n > 0 and len(args) == 0: Redis sends no reply to it.
// When buf holds only part of a command, n == 0 and err == nil.
//
// Parse never allocates by a size the peer claims: argv grows only as
// arguments actually parse, and a bulk length above Limits.MaxBulkLen is
// refused before anything is read. With enough capacity in argv, parsing a
// multibulk command allocates nothing. Errors are *ProtocolError with
// Redis's texts; Redis closes the connection after replying with one.
func (p *CommandParser) Parse(buf []byte, argv [][]byte) (n int, args [][]byte, inline bool, err error) {
	args = argv[:0]
	if len(buf) == 0 {
		return 0, args, false, nil
	}
	lim := p.Limits.orDefault()
	// Redis decides by the first byte alone: anything but '*' is inline.
	if buf[0] != '*' {
		n, args, err = p.parseInline(buf, args, lim)
		return n, args, true, err
	}
	n, args, _, _, err = parseMultibulk(buf, args, lim)
	return n, args, false, err
}

// Peek is for a multibulk command too large to buffer whole: it returns the
// declared argument count, the arguments that are complete in buf (at least
// the name, when argc > 0 and it is complete), and body, the offset in buf
// just after the name argument (where args[1]'s "$" header starts), or 0
// when the name is not yet complete.
//
// argc is 0 while the "*N" header is incomplete, for "*0" and "*-N" (which
// Parse consumes whole), and for inline input (buf not starting with '*'),
// which Parse bounds by MaxInlineLen and so never needs Peek. Errors are
// those Parse would report for the same bytes.
func (p *CommandParser) Peek(buf []byte, argv [][]byte) (argc int, args [][]byte, body int, err error) {
	args = argv[:0]
	if len(buf) == 0 || buf[0] != '*' {
		return 0, args, 0, nil
	}
	_, args, argc, body, err = parseMultibulk(buf, args, p.Limits.orDefault())
	return argc, args, body, err
}

// NameEnd returns the offset in cmd just past the first argument (the
// command's name) of the multibulk command cmd starts with, or 0 when cmd
// does not hold that much of a well-formed one. It reads line ends as
// Redis does: by their '\r', with the byte after it and the two bytes
// after the name's body skipped unseen, so "*2\r\n$5\r\xeaEXGET\r\n..."
// has its name end where Redis's does. It is Peek's body without the
// arguments, for a caller that replaces the name of a command already
// framed.
func NameEnd(cmd []byte) int {
	if len(cmd) == 0 || cmd[0] != '*' {
		return 0
	}
	max := DefaultLimits().MaxInlineLen
	cr := findCR(cmd, 0, max)
	if cr < 0 || cr+2 > len(cmd) {
		return 0
	}
	if n, ok := ParseInt(cmd[1:cr]); !ok || n < 1 {
		return 0
	}
	pos := cr + 2
	cr = findCR(cmd, pos, max)
	if cr < 0 || cr+2 > len(cmd) || cmd[pos] != '$' {
		return 0
	}
	bl, ok := ParseInt(cmd[pos+1 : cr])
	if !ok || bl < 0 || int64(len(cmd)-cr-2) < bl+2 {
		return 0
	}
	return cr + 2 + int(bl) + 2
}

// findCR returns the index of the first '\r' in buf at or after from, or
// -1. It looks at most max+1 bytes ahead (a longer line is an error
// anyway), and reports -1 when a NUL byte comes first: Redis searches its
// NUL-terminated query buffer with strchr, which stops there, so it keeps
// waiting for more input until the line is too long.
func findCR(buf []byte, from, max int) int {
	w := buf[from:]
	if len(w) > max+1 {
		w = w[:max+1]
	}
	// Header lines are a few bytes long: a plain loop beats two
	// IndexByte calls (one for '\r', one for NUL) there.
	for i, c := range w {
		if c == '\r' {
			return from + i
		}
		if c == 0 {
			return -1
		}
	}
	return -1
}

// parseMultibulk frames "*N\r\n" followed by N "$len\r\n<bytes>\r\n"
// arguments. n is 0 until the whole command is in buf; argc and body are
// for Peek (body: offset after the first argument, 0 until it is complete).
//
// Like Redis it checks only what Redis checks: the line terminator is found
// by its '\r' and the byte after it is skipped unseen, as are the two bytes
// after each bulk body.
func parseMultibulk(buf []byte, args [][]byte, lim Limits) (n int, _ [][]byte, argc, body int, err error) {
	max := lim.MaxInlineLen
	cr := findCR(buf, 0, max)
	if cr < 0 || cr > max {
		// A line longer than max can never become valid; judging by the
		// line's length (not by how much happens to be buffered) keeps
		// the outcome independent of how the input was split.
		if cr > max || len(buf) > max {
			return 0, args, 0, 0, ErrTooBigMbulkCount
		}
		return 0, args, 0, 0, nil
	}
	if cr+2 > len(buf) {
		return 0, args, 0, 0, nil
	}
	ll, ok := ParseInt(buf[1:cr])
	if err := lim.checkArgc(ll, ok); err != nil {
		return 0, args, 0, 0, err
	}
	pos := cr + 2
	if ll <= 0 {
		return pos, args, 0, 0, nil
	}
	argc = int(ll)
	for i := 0; i < argc; i++ {
		cr = findCR(buf, pos, max)
		if cr < 0 || cr-pos > max {
			if cr-pos > max || len(buf)-pos > max {
				return 0, args, argc, body, ErrTooBigBulkCount
			}
			return 0, args, argc, body, nil
		}
		if cr+2 > len(buf) {
			return 0, args, argc, body, nil
		}
		if buf[pos] != '$' {
			return 0, args, argc, body, expectedDollar(buf[pos])
		}
		bl, ok := ParseInt(buf[pos+1 : cr])
		if err := lim.checkBulkLen(bl, ok); err != nil {
			return 0, args, argc, body, err
		}
		pos = cr + 2
		if int64(len(buf)-pos) < bl+2 {
			return 0, args, argc, body, nil
		}
		end := pos + int(bl)
		// The full slice expression stops a caller's append to one
		// argument from overwriting the next one in buf.
		args = append(args, buf[pos:end:end])
		pos = end + 2
		if i == 0 {
			body = pos
		}
	}
	return pos, args, argc, body, nil
}

// expectedDollar builds Redis's "expected '$', got 'X'". Redis replaces
// '\r' and '\n' in error replies with spaces so the reply stays one line;
// the text here is what it actually sends.
func expectedDollar(c byte) *ProtocolError {
	if c == '\r' || c == '\n' {
		c = ' '
	}
	return &ProtocolError{Msg: "expected '$', got '" + string([]byte{c}) + "'"}
}

// parseInline frames one inline command: a line ending at '\n' (a '\r'
// before it is dropped), split into arguments by sdssplitargs' rules.
func (p *CommandParser) parseInline(buf []byte, args [][]byte, lim Limits) (int, [][]byte, error) {
	max := lim.MaxInlineLen
	w := buf
	if len(w) > max+1 {
		w = w[:max+1]
	}
	nl := bytes.IndexByte(w, '\n')
	// strchr in Redis stops at a NUL byte: the newline is never seen.
	if nl >= 0 && bytes.IndexByte(w[:nl], 0) >= 0 {
		nl = -1
	}
	if nl < 0 || nl > max {
		if nl > max || len(buf) > max {
			return 0, args, ErrTooBigInline
		}
		return 0, args, nil
	}
	end := nl
	if end > 0 && buf[end-1] == '\r' {
		end--
	}
	args, err := p.splitArgs(buf[:end], args)
	if err != nil {
		return 0, args, err
	}
	return nl + 1, args, nil
}

// splitArgs is sds.c sdssplitargs for one line that holds no NUL and no
// '\n'. Decoded arguments never outgrow the line, so the scratch space is
// sized once up front and the slices handed out stay valid while it fills.
func (p *CommandParser) splitArgs(line []byte, args [][]byte) ([][]byte, error) {
	if cap(p.scratch) < len(line) {
		p.scratch = make([]byte, 0, len(line))
	}
	sc := p.scratch[:0]
	// at mimics reading the C string: past the end is the terminating NUL.
	at := func(i int) byte {
		if i < len(line) {
			return line[i]
		}
		return 0
	}
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i >= len(line) {
			return args, nil
		}
		start := len(sc)
		// Fast path: the plain run of an unquoted token, copied at once.
		j := i
		for j < len(line) && !endsPlain(line[j]) {
			j++
		}
		sc = append(sc, line[i:j]...)
		i = j
		inq, insq, done := false, false, false
		for !done {
			c := at(i)
			switch {
			case inq:
				switch {
				case c == '\\' && at(i+1) == 'x' && isHex(at(i+2)) && isHex(at(i+3)):
					sc = append(sc, unhex(at(i+2))<<4|unhex(at(i+3)))
					i += 3
				case c == '\\' && at(i+1) != 0:
					i++
					switch e := line[i]; e {
					case 'n':
						sc = append(sc, '\n')
					case 'r':
						sc = append(sc, '\r')
					case 't':
						sc = append(sc, '\t')
					case 'b':
						sc = append(sc, '\b')
					case 'a':
						sc = append(sc, '\a')
					default:
						sc = append(sc, e)
					}
				case c == '"':
					// The closing quote must be followed by a space or
					// the end of the line.
					if nx := at(i + 1); nx != 0 && !isSpace(nx) {
						return args, ErrUnbalancedQuotes
					}
					done = true
				case c == 0:
					return args, ErrUnbalancedQuotes
				default:
					sc = append(sc, c)
				}
			case insq:
				switch {
				case c == '\\' && at(i+1) == '\'':
					i++
					sc = append(sc, '\'')
				case c == '\'':
					if nx := at(i + 1); nx != 0 && !isSpace(nx) {
						return args, ErrUnbalancedQuotes
					}
					done = true
				case c == 0:
					return args, ErrUnbalancedQuotes
				default:
					sc = append(sc, c)
				}
			default:
				// Only these end an unquoted token; '\v' and '\f' are
				// skipped between tokens but kept inside one, as in sds.c.
				switch c {
				case ' ', '\n', '\r', '\t', 0:
					done = true
				case '"':
					inq = true
				case '\'':
					insq = true
				default:
					sc = append(sc, c)
				}
			}
			if at(i) != 0 {
				i++
			}
		}
		args = append(args, sc[start:len(sc):len(sc)])
	}
}

// endsPlain reports the bytes that end a plain run of an unquoted token:
// the token's terminators and the quotes.
func endsPlain(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '"' || c == '\''
}

// isSpace is C's isspace in the "C" locale.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
