package proxy

const (
	// minBuf is where read buffers start and what an idle connection
	// keeps: thousands of idle sidecar connections must stay cheap.
	minBuf = 512
	// steadyBuf is the largest buffer kept between bursts.
	steadyBuf = 64 << 10
)

// readBuf is a read buffer that fits its traffic: it starts at minBuf,
// doubles while reads fill it (so a pipeline's batch is read, sent and
// answered in one go), halves while reads use little of it (so idle
// connections give memory back), and compacts an unconsumed tail to the
// front when it fills. b[r:w] is what has been read and not consumed.
type readBuf struct {
	b        []byte
	r, w     int
	lastRead int  // bytes the last read returned
	filled   bool // a read since the buffer was last drained filled it
}

func (rb *readBuf) init(size int) { rb.b = make([]byte, size) }

// data is what has been read and not yet consumed.
func (rb *readBuf) data() []byte { return rb.b[rb.r:rb.w] }

// free is where the next read goes.
func (rb *readBuf) free() []byte { return rb.b[rb.w:] }

// added records a read of n bytes into free().
func (rb *readBuf) added(n int) {
	rb.w += n
	rb.lastRead = n
	if rb.w == len(rb.b) {
		rb.filled = true
	}
}

// settle is called between reads: a drained buffer restarts at its front
// and takes its next size from how the reads since the last drain used
// it. It reports whether the buffer is full, which makeRoom resolves.
func (rb *readBuf) settle() (full bool) {
	if rb.r == rb.w {
		rb.r, rb.w = 0, 0
		if n := resize(len(rb.b), rb.lastRead, rb.filled); n != len(rb.b) {
			rb.b = make([]byte, n)
		}
		rb.filled = false
	}
	return rb.w == len(rb.b)
}

// makeRoom makes space in a full buffer: it moves the unconsumed tail to
// the front, or else doubles the buffer up to limit (0: no limit). It
// reports false when the buffer is at limit and holds one unconsumed run
// from its start: the caller must consume it another way (stream it).
func (rb *readBuf) makeRoom(limit int) bool {
	if rb.r > 0 {
		rb.w = copy(rb.b, rb.b[rb.r:rb.w])
		rb.r = 0
		return true
	}
	if limit > 0 && len(rb.b) >= limit {
		return false
	}
	n := 2 * len(rb.b)
	if limit > 0 {
		n = min(n, limit)
	}
	nb := make([]byte, n)
	rb.w = copy(nb, rb.b[:rb.w])
	rb.b = nb
	return true
}

// resize picks the next size of a drained buffer: one that a read
// filled grows; a last read that used little of it shrinks it. Sizes move
// by halves and doubles, so steady traffic settles and stops reallocating.
func resize(size, lastRead int, filled bool) int {
	switch {
	case filled && size < steadyBuf:
		return size * 2
	case size > steadyBuf:
		return steadyBuf
	case lastRead < size/4 && size > minBuf:
		return size / 2
	}
	return size
}
