// Package resp frames the Redis protocol (RESP2 and RESP3) for a proxy: it
// finds where commands and replies begin and end, and decodes only what a
// caller asks for, so bytes can be forwarded exactly as they arrived.
//
// STUB: signatures fixed, bodies to be written (see the helper task).
package resp

// Limits bound what a peer may claim, so that no claim can make the proxy
// allocate or buffer more than it chose to.
type Limits struct {
	MaxBulkLen   int64 // largest bulk string; Redis's proto-max-bulk-len (512 MB)
	MaxInlineLen int   // longest inline command line or header line; Redis's 64 KB
	MaxArgs      int   // most arguments in one command
}

// DefaultLimits are Redis's own defaults.
func DefaultLimits() Limits {
	return Limits{MaxBulkLen: 512 << 20, MaxInlineLen: 64 << 10, MaxArgs: 1<<31 - 1}
}

// ProtocolError is malformed input. Error() is the text Redis puts after
// "-ERR " (e.g. "Protocol error: invalid bulk length").
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "Protocol error: " + e.Msg }

// CommandParser frames client commands: RESP multibulk and inline.
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
func (p *CommandParser) Parse(buf []byte, argv [][]byte) (n int, args [][]byte, inline bool, err error) {
	panic("todo")
}

// Peek is for a multibulk command too large to buffer whole: it returns the
// declared argument count, the arguments that are complete in buf (at least
// the name, when argc > 0 and it is complete), and body, the offset in buf
// just after the name argument (where args[1]'s "$" header starts), or 0
// when the name is not yet complete.
func (p *CommandParser) Peek(buf []byte, argv [][]byte) (argc int, args [][]byte, body int, err error) {
	panic("todo")
}

// Framer walks RESP values without decoding them and reports where each
// top-level value ends. It is resumable: feed it bytes as they arrive; bulk
// bodies are counted off without needing them whole in memory. An attribute
// ("|") belongs to the value after it.
type Framer struct {
	Limits Limits
}

// Next consumes bytes of the current top-level value from buf: n bytes all
// belong to it, and done reports that the value ended at buf[n-1]. Header
// lines are consumed only when complete, so n may be 0 when buf holds a
// partial line. After done the framer is ready for the next value.
func (f *Framer) Next(buf []byte) (n int, done bool, err error) {
	panic("todo")
}

// Kind is the type byte of the current top-level value ('+', '-', ':', '$',
// '*', '%', '~', '>', '_', ',', '#', '(', '=', '!'), skipping attributes;
// 0 until known. After done it still describes the value just ended.
func (f *Framer) Kind() byte { panic("todo") }

// Reset forgets any value in progress.
func (f *Framer) Reset() { panic("todo") }
