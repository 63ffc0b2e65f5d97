package resp

// ResumableParser is a CommandParser for a connection's read loop, where
// a command may arrive over many reads. CommandParser.Parse is stateless,
// so a multibulk command of many small arguments trickled in by a slow (or
// hostile) client is re-parsed from its start on every read: quadratic in
// its argument count. ResumableParser walks the pending command once with
// a Command-mode Framer and parses it only when complete, as Redis does by
// keeping its argv across reads. It gives exactly CommandParser's results.
//
// Its contract is the Framer's: the bytes a call did not consume must
// start the next call's buf. Call Reset when that is broken (a command
// streamed through after Peek, a connection reused). The zero value is
// ready to use with DefaultLimits.
type ResumableParser struct {
	CommandParser
	f       Framer
	waiting bool // a partial multibulk command starts buf; f has walked off bytes of it
	off     int
}

// Parse is CommandParser.Parse for input re-presented across calls.
func (p *ResumableParser) Parse(buf []byte, argv [][]byte) (n int, args [][]byte, inline bool, err error) {
	if !p.waiting {
		n, args, inline, err = p.CommandParser.Parse(buf, argv)
		if n > 0 || err != nil || inline || len(buf) == 0 {
			return n, args, inline, err
		}
		// A partial multibulk command: from now on only new bytes are
		// walked. The framer starts over from the command's first byte,
		// which costs one more pass over what Parse just saw, once.
		p.waiting, p.off = true, 0
		p.f = Framer{Limits: p.Limits, Command: true, more: p.f.more[:0]}
	}
	m, done, ferr := p.f.Next(buf[p.off:])
	if ferr != nil {
		// The framer's errors are CommandParser's (the fuzz target
		// FuzzParseCommand holds them to it); Parse on the bytes up to the
		// error gives the caller the same value Parse would.
		p.waiting = false
		return 0, argv[:0], false, ferr
	}
	p.off += m
	if !done {
		return 0, argv[:0], false, nil
	}
	p.waiting = false
	return p.CommandParser.Parse(buf[:p.off], argv)
}

// Peek is CommandParser.Peek; it also forgets the command in progress,
// since after a Peek the caller streams the command through itself.
func (p *ResumableParser) Peek(buf []byte, argv [][]byte) (argc int, args [][]byte, body int, err error) {
	p.Reset()
	return p.CommandParser.Peek(buf, argv)
}

// Reset forgets the command in progress.
func (p *ResumableParser) Reset() {
	p.waiting, p.off = false, 0
	p.f.Reset()
}
