// Package resp frames the Redis protocol (RESP2 and RESP3) for a proxy: it
// finds where commands and replies begin and end, and decodes only what a
// caller asks for, so bytes can be forwarded exactly as they arrived.
//
// CommandParser frames client commands the way Redis 7.0 itself does
// (networking.c processMultibulkBuffer / processInlineBuffer, sds.c
// sdssplitargs), down to the error texts. Framer walks any RESP2/RESP3
// value resumably, so replies of any size stream through in chunks.
// docs/resp-framing.md records why these are in-house.
package resp

// Limits bound what a peer may claim, so that no claim can make the proxy
// allocate or buffer more than it chose to. A zero field means the Redis
// default from DefaultLimits.
type Limits struct {
	MaxBulkLen   int64 // largest bulk string; Redis's proto-max-bulk-len (512 MB)
	MaxInlineLen int   // longest inline command line or header line; Redis's 64 KB
	MaxArgs      int   // most arguments in one command
	// Unauthenticated applies Redis's limits for a client that has not
	// authenticated to a Redis that requires it: at most 10 arguments and
	// bulks of at most 16384 bytes, refused with Redis's own
	// "unauthenticated" texts. They keep a client that cannot yet run a
	// command from making the proxy buffer (or forward) a large one.
	Unauthenticated bool
}

// Redis's pre-AUTH limits (networking.c, processMultibulkBuffer).
const (
	unauthMaxArgs    = 10
	unauthMaxBulkLen = 16384
)

// checkArgc is the check Redis makes of a multibulk's declared count,
// in Redis's order: an invalid count first, then the pre-AUTH bound.
func (l Limits) checkArgc(n int64, ok bool) error {
	if !ok || n > int64(l.MaxArgs) {
		return ErrInvalidMultibulkLen
	}
	if l.Unauthenticated && n > unauthMaxArgs {
		return ErrUnauthenticatedMultibulkLen
	}
	return nil
}

// checkBulkLen is checkArgc for a bulk's declared length.
func (l Limits) checkBulkLen(n int64, ok bool) error {
	if !ok || n < 0 || n > l.MaxBulkLen {
		return ErrInvalidBulkLen
	}
	if l.Unauthenticated && n > unauthMaxBulkLen {
		return ErrUnauthenticatedBulkLen
	}
	return nil
}

// DefaultLimits are Redis's own defaults.
func DefaultLimits() Limits {
	return Limits{MaxBulkLen: 512 << 20, MaxInlineLen: 64 << 10, MaxArgs: 1<<31 - 1}
}

// orDefault fills zero (or negative) fields with Redis's defaults, so a
// zero Limits in a struct literal means "as Redis" rather than "nothing
// allowed".
func (l Limits) orDefault() Limits {
	d := DefaultLimits()
	if l.MaxBulkLen <= 0 {
		l.MaxBulkLen = d.MaxBulkLen
	}
	if l.MaxInlineLen <= 0 {
		l.MaxInlineLen = d.MaxInlineLen
	}
	if l.MaxArgs <= 0 {
		l.MaxArgs = d.MaxArgs
	}
	return l
}

// ProtocolError is malformed input. Error() is the text Redis puts after
// "-ERR " (e.g. "Protocol error: invalid bulk length").
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "Protocol error: " + e.Msg }

// The errors CommandParser returns, with Redis 7.0's exact texts. They are
// shared values so that returning one allocates nothing; compare with
// errors.Is or ==.
var (
	ErrInvalidMultibulkLen = &ProtocolError{"invalid multibulk length"}
	ErrInvalidBulkLen      = &ProtocolError{"invalid bulk length"}
	// Redis closes an unauthenticated client's connection after these.
	ErrUnauthenticatedMultibulkLen = &ProtocolError{"unauthenticated multibulk length"}
	ErrUnauthenticatedBulkLen      = &ProtocolError{"unauthenticated bulk length"}
	ErrTooBigMbulkCount            = &ProtocolError{"too big mbulk count string"}
	ErrTooBigBulkCount             = &ProtocolError{"too big bulk count string"}
	ErrTooBigInline                = &ProtocolError{"too big inline request"}
	ErrUnbalancedQuotes            = &ProtocolError{"unbalanced quotes in request"}
)
