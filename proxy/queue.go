package proxy

import (
	"sync"
	"time"
)

// entry is what the reply side must know about one command sent upstream
// (or answered locally). One entry per command, in the order the client
// sent them.
type entry struct {
	cmd *command // routing row; nil for a command the table does not know
	// replies is how many regular (non-push) replies the command gets:
	// 1 normally; 0 under CLIENT REPLY OFF/SKIP and for RESP3 (un)subscribe,
	// whose confirmations are pushes; n for a RESP2 SUBSCRIBE of n
	// channels. resolve fixes it when the entry reaches the head.
	replies int32
	// local, when non-nil, is emitted without reading upstream.
	local      []byte
	closeAfter bool // close the client once this entry is done
	// closeAfterReply is Redis's CLIENT_CLOSE_AFTER_REPLY (QUIT, malformed
	// input): the client is closed once this reply is written; a reply
	// that CLIENT REPLY OFF/SKIP silences is never written, and then the
	// connection stays open (and nothing more it sends is read).
	closeAfterReply bool
	// readStart is, for a closeAfterReply entry, the sequence number of
	// the first command of the client read it came in: Redis, when it
	// writes no reply for it, still closes if a reply to that read is
	// being written.
	readStart uint64
	// emptyCmd marks an empty command ("*0", a blank line): Redis sends
	// nothing, but it ends a pending CLIENT REPLY SKIP.
	emptyCmd bool
	// pushes is, for a RESP3 (un)subscribe, how many push confirmations
	// are still to come: the entry is done when they are in, so that what
	// follows it (a QUIT, a protocol error) waits for them as on Redis.
	pushes int32
	// internal marks a command of the proxy's own that sets up a session's
	// connection (AUTH, SELECT, HELLO on a ready connection): its reply is
	// dropped, and an error ends the session.
	internal bool

	rw       ReplyHandler
	resend   []byte // the command as the client sent it, kept for a Retry
	slot     *slot  // for a resent command: where its reply goes in client order
	attempts uint8  // times the command was resent
	seq      uint64 // position in the session's command stream

	obs *observed // non-nil when an Observer wants this command

	// dropReply: in front of a Redis Cluster, a command the proxy has
	// answered already (a held MULTI's +OK, +QUEUED; clustertx.go) whose
	// reply from Redis is dropped, though it counts in the transaction
	// as Redis ran it.
	dropReply bool

	// What a command that changes the session needs when its reply says
	// it took effect.
	selectDB   int    // SELECT: the database; -1 when not a number
	authUser   string // AUTH, HELLO ... AUTH: the user (never the password)
	helloProto int    // HELLO: the protocol asked for (2 or 3), else 0
	clientName string // CLIENT SETNAME, HELLO ... SETNAME: the name
	setsName   bool   // the command sets clientName
	subArgs    int32  // (un)subscribe: channels named
	replyMode  replyMode
	resolved   bool // resolve has fixed replies
}

// replyMode marks a CLIENT REPLY command.
type replyMode uint8

const (
	replyUnchanged replyMode = iota
	replyOff
	replySkip
	replyOn
)

// observed is the part of an entry only observers need.
type observed struct {
	args   [][]byte
	queued []string
	sent   time.Time
	// writes are the keys the command writes that a WriteWatcher watches;
	// only they make an entry observed when its command is not.
	writes    [][]byte
	writeName string // the command's lower-case name, as Redis's table has it
}

// slot holds one reply while an earlier command is being resent, so the
// client still sees replies in the order it sent the commands.
type slot struct {
	data  []byte
	ready bool
}

// queue is a session's FIFO of entries between its read loop (the
// producer) and whichever upstream connection's reader delivers its
// replies (the consumer, under the session's lock). The producer appends
// to in; the consumer drains out and swaps the two under the lock only
// when out is exhausted, so the lock is taken once per batch, not per
// command.
type queue struct {
	mu      sync.Mutex
	in      []entry
	n       int    // entries in in and out not yet popped
	seq     uint64 // sequence number of the next entry pushed
	max     int
	space   *sync.Cond // producer waits here when n reaches max
	closed  bool
	out     []entry // consumer-owned
	outHead int
	popped  int // consumer-owned: pops not yet settled
}

func newQueue(max int) *queue {
	q := &queue{max: max}
	q.space = sync.NewCond(&q.mu)
	return q
}

// waitSpace blocks while the queue is full, which stops the read loop and
// so pushes back on the client. It is separate from push so that the read
// loop never waits while holding a lock the consumer needs.
func (q *queue) waitSpace() {
	q.mu.Lock()
	for q.n >= q.max && !q.closed {
		q.space.Wait()
	}
	q.mu.Unlock()
}

// full reports whether the producer would wait in waitSpace.
func (q *queue) full() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n >= q.max && !q.closed
}

// push appends entries in order; it may exceed max by one batch.
func (q *queue) push(es []entry) bool {
	_, ok := q.pushSeq(es)
	return ok
}

// pushSeq is push that also returns the sequence number of the first
// entry pushed.
func (q *queue) pushSeq(es []entry) (uint64, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0, false
	}
	first := q.seq
	for i := range es {
		es[i].seq = q.seq
		q.seq++
	}
	q.in = append(q.in, es...)
	q.n += len(es)
	return first, true
}

// head returns the oldest entry not yet popped, or nil.
func (q *queue) head() *entry {
	if q.outHead < len(q.out) {
		return &q.out[q.outHead]
	}
	q.mu.Lock()
	if len(q.in) == 0 {
		q.mu.Unlock()
		return nil
	}
	clear(q.out) // drop references held by popped entries
	q.out, q.in = q.in, q.out[:0]
	q.outHead = 0
	// Shrink after a burst so an idle session does not keep a big array.
	if cap(q.in) > 1024 && len(q.out) < 64 {
		q.in = nil
	}
	q.mu.Unlock()
	return &q.out[0]
}

// pop removes the head entry. The producer learns of the space at the
// next settle, once per batch of replies.
func (q *queue) pop() {
	q.out[q.outHead] = entry{}
	q.outHead++
	q.popped++
}

// settle makes the space freed by pop visible to the producer.
func (q *queue) settle() {
	if q.popped == 0 {
		return
	}
	q.mu.Lock()
	q.n -= q.popped
	q.popped = 0
	q.space.Signal()
	q.mu.Unlock()
}

// pending reports how many entries are not yet popped.
func (q *queue) pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// unpopped is how many entries are not yet popped, settled or not; for
// the consumer's side (under the session's reply lock).
func (q *queue) unpopped() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n - q.popped
}

// total is the sequence number the next pushed entry will get.
func (q *queue) total() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.seq
}

func (q *queue) isClosed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// close refuses further pushes and releases a producer waiting for space.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.space.Broadcast()
	q.mu.Unlock()
}
