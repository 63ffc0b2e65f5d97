package proxy

const (
	// minBuf is where read buffers start and what an idle session keeps:
	// thousands of idle sidecar connections must stay cheap.
	minBuf = 512
	// steadyBuf is the largest buffer kept between bursts.
	steadyBuf = 64 << 10
)

// resize picks the next size of a drained read buffer from how the reads
// since it was last drained used it: one that filled it means a batch did
// not fit (grow, so a pipeline's batch is read, sent and answered in one
// go); a last read that used little of it means the traffic is small or
// idle (shrink, so idle sessions give memory back). Sizes move by halves
// and doubles, so steady traffic settles and stops reallocating.
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
