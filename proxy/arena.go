package proxy

// arena holds what a session's entries keep beyond the read buffer they
// were framed in — a rewritten command's copy for a resend, an observed
// command's arguments, the observed record itself — in chunks that it
// fills and never writes again, so that each copy costs no allocation of
// its own. A chunk is left to the collector once full and no longer
// referenced; chunks are small, so an idle session keeps little.
type arena struct {
	bytes []byte
	args  [][]byte
	obs   []observed
}

const (
	arenaBytes = 1 << 10
	arenaArgs  = 32
	arenaObs   = 8
)

// copyBytes returns a copy of b that stays valid for as long as it is
// referenced.
func (a *arena) copyBytes(b []byte) []byte {
	if cap(a.bytes)-len(a.bytes) < len(b) {
		a.bytes = make([]byte, 0, max(arenaBytes, len(b)))
	}
	n := len(a.bytes)
	a.bytes = append(a.bytes, b...)
	return a.bytes[n:len(a.bytes):len(a.bytes)]
}

// copyArgs copies args, slices and bytes; nil for none.
func (a *arena) copyArgs(args [][]byte) [][]byte {
	if len(args) == 0 {
		return nil
	}
	if cap(a.args)-len(a.args) < len(args) {
		a.args = make([][]byte, 0, max(arenaArgs, len(args)))
	}
	n := len(a.args)
	for _, b := range args {
		a.args = append(a.args, a.copyBytes(b))
	}
	return a.args[n:len(a.args):len(a.args)]
}

// newObserved returns a zeroed observed record.
func (a *arena) newObserved() *observed {
	if len(a.obs) == cap(a.obs) {
		a.obs = make([]observed, 0, arenaObs)
	}
	a.obs = a.obs[:len(a.obs)+1]
	return &a.obs[len(a.obs)-1]
}
