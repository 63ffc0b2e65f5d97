package resp

// nextCommand is Next for Command mode: parseMultibulk's rules, resumable.
// depth is 0 before the "*N" line and 1 after it; left counts a body and
// the two bytes after it together, since Redis does not look at them.
func (f *Framer) nextCommand(buf []byte, max int) (n int, done bool, err error) {
	lim := f.Limits.orDefault()
	pos := 0
	for pos < len(buf) {
		if f.state == stBody {
			avail := int64(len(buf) - pos)
			if avail < f.left {
				f.left -= avail
				return len(buf), false, nil
			}
			pos += int(f.left)
			f.left, f.state = 0, stHeader
			if f.complete() {
				return pos, f.finish(), nil
			}
			continue
		}
		cr := f.findCR(buf, pos, max)
		if cr < 0 || cr-pos > max {
			if cr-pos > max || len(buf)-pos > max {
				if f.depth == 0 {
					return pos, false, f.fail(ErrTooBigMbulkCount)
				}
				return pos, false, f.fail(ErrTooBigBulkCount)
			}
			return pos, false, nil
		}
		if cr+2 > len(buf) {
			return pos, false, nil
		}
		if f.depth == 0 {
			f.kind = '*'
			if buf[pos] != '*' {
				return pos, false, f.fail(&ProtocolError{"expected '*', got " + quoteByte(buf[pos])})
			}
			ll, ok := ParseInt(buf[pos+1 : cr])
			if err := lim.checkArgc(ll, ok); err != nil {
				return pos, false, f.fail(err)
			}
			pos = cr + 2
			if ll <= 0 {
				return pos, f.finish(), nil
			}
			_ = f.push(frame{left: ll})
			continue
		}
		if buf[pos] != '$' {
			return pos, false, f.fail(expectedDollar(buf[pos]))
		}
		bl, ok := ParseInt(buf[pos+1 : cr])
		if err := lim.checkBulkLen(bl, ok); err != nil {
			return pos, false, f.fail(err)
		}
		pos = cr + 2
		f.left, f.state = bl+2, stBody
	}
	return pos, false, nil
}

// findCR is the package's findCR for Command mode, resumable: it skips
// the part of a partial line searched by the previous call.
func (f *Framer) findCR(buf []byte, pos, max int) int {
	from := pos
	if pos == 0 && f.seen <= len(buf) {
		from = f.seen
	}
	end := len(buf)
	if end > pos+max+1 {
		end = pos + max + 1
	}
	if !f.nul {
		for i := from; i < end; i++ {
			switch buf[i] {
			case '\r':
				f.seen, f.nul = 0, false
				return i
			case 0:
				f.nul = true
			}
			if f.nul {
				break
			}
		}
	}
	f.seen = end - pos
	return -1
}
