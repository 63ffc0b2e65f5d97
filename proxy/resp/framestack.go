package resp

// MaxFrameRuns bounds the memory a Framer spends on nesting. Open
// aggregates are kept as runs of identical frames (same count still to
// come, same kind), so depth itself costs nothing: Redis's reply to a Lua
// table that contains itself nests about 8,000 "*1" arrays deep (the Lua
// stack limit), which is one run, and "*1\r\n" repeated a million times
// is one run too. Only nesting whose levels keep differing from the one
// above grows the stack, by 16 bytes a run. Lua cannot nest deeper than
// about 8,000 levels at all, so 65,536 runs (1 MB at most) is far above
// anything Redis sends; beyond it the value is "nesting too deep".
const MaxFrameRuns = 1 << 16

// keepRuns is how much of the frame stack's overflow a Framer keeps
// after a value ends: a one-off deep reply must not pin its stack for the
// life of the connection.
const keepRuns = 256

// frame is a run of n open aggregates, each nested in the one before, with
// the same number of elements still to come. Only the innermost one is
// ever decremented: it then leaves the run (see complete).
type frame struct {
	left int64  // elements still to come; -1 for a streamed aggregate
	n    uint32 // aggregates in the run, at least 1
	attr bool   // attributes: when one ends, its parent still awaits the value
}

func (f *Framer) top() *frame {
	d := f.runs - 1
	if d < len(f.stack) {
		return &f.stack[d]
	}
	return &f.more[d-len(f.stack)]
}

// tryPush is push's common case, small enough to inline: a new run in
// the struct's stack, its count differing from the run around it. false
// means push must run.
func (f *Framer) tryPush(left int64, attr bool) bool {
	r := f.runs
	if r >= len(f.stack) || r > 0 && f.stack[r-1].left == left {
		return false
	}
	f.stack[r] = frame{left: left, n: 1, attr: attr}
	f.runs++
	f.depth++
	return true
}

// push opens an aggregate, inside the current one. Runs are capped at
// MaxFrameRuns: a push that would exceed the cap fails even when it only
// lengthens the innermost run, so that the one run complete may add when
// it splits a run never goes beyond MaxFrameRuns+1.
func (f *Framer) push(fr frame) error {
	if f.runs >= MaxFrameRuns {
		return errTooDeep
	}
	if f.runs > 0 {
		if t := f.top(); t.left == fr.left && t.attr == fr.attr && t.n < 1<<32-1 {
			t.n++
			f.depth++
			return nil
		}
	}
	fr.n = 1
	f.pushRun(fr)
	f.depth++
	return nil
}

// pushRun appends a run to the frame stack; the caller counts its depth.
func (f *Framer) pushRun(fr frame) {
	if f.runs < len(f.stack) {
		f.stack[f.runs] = fr
	} else if d := f.runs - len(f.stack); d < len(f.more) {
		f.more[d] = fr
	} else {
		f.more = append(f.more, fr)
	}
	f.runs++
}

// pop closes the innermost open aggregate.
func (f *Framer) pop() {
	t := f.top()
	if t.n--; t.n == 0 {
		f.runs--
	}
	f.depth--
}
