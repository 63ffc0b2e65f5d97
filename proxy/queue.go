package proxy

import (
	"sync"
	"time"
)

// entry is what the reply side must know about one command sent upstream
// (or answered locally). One entry per command, in the order sent.
type entry struct {
	cmd *command // routing row; nil for a command the table does not know
	// replies is how many regular (non-push) replies the command gets:
	// 1 normally; 0 under CLIENT REPLY OFF/SKIP and for RESP3 (un)subscribe,
	// whose confirmations are pushes; n for a RESP2 SUBSCRIBE of n channels;
	// -1 for an UNSUBSCRIBE of everything, resolved when it reaches the head.
	replies int32
	// local, when non-nil, is emitted without reading upstream.
	local      []byte
	closeAfter bool // close the client once this entry is done (protocol errors)

	rw       ReplyHandler
	resend   []byte // the bytes sent upstream, kept for a Retry
	slot     *slot  // for a resent command: where its reply goes in client order
	attempts uint8  // times the command was resent
	seq      uint64 // position in the session's command stream

	obs *observed // non-nil when an Observer wants this command

	// arg carries what a session-changing command needs at reply time:
	// the db of SELECT, the name of CLIENT SETNAME, the user of AUTH, the
	// protocol of HELLO (as "2"/"3", with name/user in arg2/arg3).
	arg, arg2, arg3 string
	sub             cmdKind // for kindClient: which subcommand mattered
	subArgs         int32   // (un)subscribe: channels named
	replyMode       replyMode
	resolved        bool // resolve has fixed replies
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
}

// queue is the FIFO between a session's read loop (producer) and reply
// loop (consumer). The producer appends to in; the consumer drains out and
// swaps the two under the lock only when out is exhausted, so the lock is
// taken once per batch, not per command.
type queue struct {
	mu      sync.Mutex
	in      []entry
	n       int    // entries in in and out not yet popped
	seq     uint64 // sequence number of the next entry pushed
	max     int
	space   *sync.Cond    // producer waits here when n reaches max
	notify  chan struct{} // consumer wake-up when it has no upstream to read
	closed  bool
	out     []entry // consumer-owned
	outHead int
	popped  int // consumer-owned: pops not yet settled
}

func newQueue(max int) *queue {
	q := &queue{max: max, notify: make(chan struct{}, 1)}
	q.space = sync.NewCond(&q.mu)
	return q
}

// waitSpace blocks while the queue is full, which stops the read loop and
// so pushes back on the client. It is separate from push so that the read
// loop never waits while holding the session's upstream lock, which the
// reply loop needs to make progress.
func (q *queue) waitSpace() {
	q.mu.Lock()
	for q.n >= q.max && !q.closed {
		q.space.Wait()
	}
	q.mu.Unlock()
}

// push appends entries in order; it may exceed max by one batch.
func (q *queue) push(es []entry) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	for i := range es {
		es[i].seq = q.seq
		q.seq++
	}
	q.in = append(q.in, es...)
	q.n += len(es)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return true
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

// close releases a producer blocked in push.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.space.Broadcast()
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// slot holds one reply while an earlier command is being resent, so the
// client still sees replies in the order it sent the commands.
type slot struct {
	data  []byte
	ready bool
}
