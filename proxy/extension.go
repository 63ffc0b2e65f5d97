package proxy

import (
	"context"
	"strconv"
	"time"
)

// This file is the whole contract between the proxy core and the extensions
// (extensions/...). The core never imports an extension; cmd/exproxy builds
// them and hands them to the Server in a fixed order.

// SessionInfo describes the client behind one session. The core keeps it
// current from the replies it forwards (CLIENT SETNAME, HELLO ... SETNAME,
// SELECT, AUTH, HELLO AUTH, RESET). Observers read it on the session's reply
// goroutine, where it never changes under them.
type SessionInfo struct {
	ID    uint64 // unique per proxy process
	Addr  string // client's remote address
	Name  string // CLIENT SETNAME / HELLO SETNAME; "" when unset
	DB    int    // SELECTed database
	User  string // ACL user the client authenticated as; "default" otherwise
	Proto int    // 2 or 3 (HELLO)
}

// Rewriter implements commands by rewriting them into other commands (the
// exstring extension turns EXSET into FCALL). Methods are called on session
// goroutines concurrently and must not block, except Reload.
type Rewriter interface {
	// Commands lists the lower-case command names it handles.
	Commands() []string
	// Rewrite decides what to send upstream for args, the complete command
	// (args[0] is the name as the client spelled it; all of args alias the
	// read buffer and are valid only during the call). ok == false sends the
	// command unchanged. For a command too large to buffer whole, args holds
	// only the arguments that fit (at least the name) and argc the declared
	// count; the rewrite must then not depend on the missing arguments.
	// s carries only ID and Addr: the rest of SessionInfo changes on the
	// reply goroutine and must not be read here.
	Rewrite(args [][]byte, argc int, s *SessionInfo) (rw Rewrite, ok bool)
}

// Rewrite says how one command is sent and how its reply is treated.
type Rewrite struct {
	// Prefix replaces the command's name: PrefixArgs complete RESP bulk
	// strings (e.g. "$5\r\nFCALL\r\n$10\r\nexset_3f2a\r\n$1\r\n1\r\n"). The
	// remaining arguments follow unchanged, as the client sent them. Nil
	// Prefix sends the command unchanged (useful with Reply alone).
	Prefix     []byte
	PrefixArgs int
	// Local, when non-nil, is a complete reply for the client; nothing is
	// sent upstream. It is queued behind the replies still pending, so
	// order is kept.
	Local []byte
	// Reply, when non-nil, sees the reply before the client does.
	Reply ReplyHandler
	// Group, when non-zero, offers the command to be answered from the
	// reply of an earlier command of its group instead of being sent
	// (Follower). It is a set of argument positions (bit i for args[i],
	// i >= 1) whose values together name the group: for EXCAS the key
	// and the expected version. Reply must be a Follower.
	Group uint16
}

// Follower is a ReplyHandler whose command, run right after an earlier
// command of its group (Rewrite.Group), can only be refused: two EXCAS
// with the same key and expected version cannot both commit. When
// commands of one group from any sessions reach a shared upstream
// connection in the same write, the core sends the first (the leader)
// and answers each of the others (its followers) from the leader's reply
// instead of sending them: Redis would refuse them anyway, at the cost
// of a script run each. The answer is the reply Redis gives a follower
// that runs right after the leader - a valid order, since all of them
// were in flight at once, and none had been written to Redis when the
// next joined (docs/exstring.md, "Doomed EXCAS answered in the proxy").
type Follower interface {
	ReplyHandler
	// Follow appends to dst the reply, in the upstream's protocol, that
	// Redis would give a follower run right after its leader, from the
	// leader's complete reply (whatever it is: errors too) and the
	// leader's arguments (after the name, as the client sent them). It is
	// called on an upstream connection's reader and must not block.
	Follow(dst, leaderReply []byte, leaderArgs [][]byte) []byte
}

// ReplyAction is what a ReplyHandler wants done with a reply.
type ReplyAction uint8

const (
	// Forward passes the reply to the client unchanged.
	Forward ReplyAction = iota
	// Retry drops the reply, calls Reload, resends the original command and
	// holds the replies behind it until the resent command's reply is in,
	// so the client sees them in order. Used when the Lua library vanished
	// (FUNCTION FLUSH, restart, failover). The core resends a command at
	// most three times, and only commands it kept a copy of (up to 64 KB).
	Retry
	// Replace sends the handler's replacement instead of the reply.
	Replace
	// Buffer holds the whole reply (up to MaxTransformBytes, beyond which
	// it is forwarded unchanged) and sends what the handler's Transform
	// makes of it; the handler must be a ReplyTransformer.
	Buffer
)

// ReplyHandler inspects the reply to a rewritten command.
type ReplyHandler interface {
	// Check looks at head, the first bytes of the reply (at least its first
	// line, at most HeadSize bytes), in the client's protocol (2 or 3). For
	// Replace it returns the complete replacement reply. Inside MULTI it is
	// called twice: with +QUEUED, and later with the command's whole
	// element of EXEC's reply, where only Replace has an effect.
	Check(head []byte, proto int) (ReplyAction, []byte)
	// Reload is called before a Retry resend; the session's replies wait.
	Reload(ctx context.Context) error
}

// Outcomer is a ReplyHandler whose command is a conditional write (a
// versioned write, a compare-and-set): Outcome reads, from the head of
// the command's reply (as Check sees it), what the write came to. The core
// asks it only for observed commands and puts the answer in Event.Outcome,
// so an observer counts refused and committed writes without knowing any
// extension's reply texts.
type Outcomer interface {
	ReplyHandler
	Outcome(head []byte) Outcome
}

// Outcome is what a conditional write came to.
type Outcome uint8

const (
	// NoOutcome: not a conditional write, no reply, or a reply that
	// decides nothing (an error other than a refusal, +QUEUED, a write
	// that NX/XX or a missing key turned into a no-op).
	NoOutcome Outcome = iota
	// Committed: the write was applied.
	Committed
	// Stale: refused because the version moved on (EXSET ... VER,
	// EXCAS, EXCAD, ...).
	Stale
	// CompareFailed: refused because the current value differs from the
	// expected one (CAS, CAD).
	CompareFailed
)

var outcomeNames = [...]string{NoOutcome: "none", Committed: "committed", Stale: "stale", CompareFailed: "compare-failed"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// ReplyTransformer is a ReplyHandler that may need the whole reply
// (COMMAND, COMMAND INFO/DOCS/COUNT/LIST, which must list the added
// commands). When its Check answers Buffer, the core buffers the complete
// reply and sends Transform's result instead.
type ReplyTransformer interface {
	ReplyHandler
	Transform(reply []byte, proto int) []byte
}

// HeadSize is how much of a reply Check and Observe see at least (less only
// when the whole reply is shorter).
const HeadSize = 256

// MaxTransformBytes bounds the reply a ReplyTransformer may ask to buffer.
const MaxTransformBytes = 16 << 20

// Observer watches commands and their replies (the contention extension).
type Observer interface {
	// Observes reports whether commands of this lower-case name are
	// delivered to Observe. Called once per name at start-up: the core
	// builds a table, so the hot path pays one lookup it makes anyway.
	Observes(name string) bool
	// Open starts watching a session. Its SessionObserver is called only
	// on that session's reply goroutine, so it needs no locking of its own.
	Open(info *SessionInfo) SessionObserver
}

// WriteWatcher is an Observer that wants to know who writes to the keys
// it watches right now — the contention tracker, to name the write that
// invalidated a WATCH or a version. The core asks it only about commands
// Redis flags as writes (from Redis's own COMMAND key specifications),
// and only while Watching is true, so it costs nothing while nobody
// watches. It asks when it sends the write (a write queued in MULTI: when
// it is queued), and only once it has read Redis's command table, just
// after start (Server.CommandsLoaded); writes sent before then are not
// reported. A write to a watched key reaches the writer's SessionObserver
// as an Event with Write set and Keys naming the watched keys it wrote —
// never the values — once its reply came (a queued one's is +QUEUED).
type WriteWatcher interface {
	Observer
	// Watching reports whether any key is watched now. It is called for
	// every write command while the proxy runs, so it must be cheap (an
	// atomic load).
	Watching() bool
	// Watched reports whether key is watched now. key is valid only
	// during the call.
	Watched(key []byte) bool
	// Arm is told the keys of a WATCH a session is about to send (outside
	// MULTI), on that session's read goroutine, before the command goes
	// upstream: Redis may run another session's write after that WATCH
	// before the WATCH's reply reaches the proxy, so a watcher that starts
	// watching keys only at the reply would miss it. Writes sent after Arm
	// returns are asked about with Watched as usual. keys are valid only
	// during the call; the WATCH may still fail (Redis says so in its
	// reply), so what Arm keeps must expire on its own.
	Arm(keys [][]byte)
}

// SessionObserver receives one session's observed commands in reply order.
type SessionObserver interface {
	Observe(ev *Event)
	// Close ends the session: no Observe follows. Watched keys still armed
	// count as given up.
	Close()
}

// Event is one observed command and the head of its reply. Everything in
// it is valid only during Observe.
type Event struct {
	Name  string    // lower-case command name as the client sent it ("excas", not "fcall")
	Args  [][]byte  // arguments after the name (copies; for WATCH the keys)
	Reply []byte    // head of the reply, at most HeadSize bytes; nil when none came (connection lost, CLIENT REPLY OFF)
	Kind  byte      // type byte of the reply ('+', '-', '*', '_', ...); 0 when none
	Sent  time.Time // when the command was written upstream
	Done  time.Time // when its reply arrived
	// Outcome is what a conditional write came to, when the command's
	// ReplyHandler is an Outcomer; NoOutcome otherwise.
	Outcome Outcome
	// Queued lists, for EXEC, the lower-case names of the commands queued
	// since MULTI in this session, in order.
	Queued []string
	Info   *SessionInfo
	// Write marks a write to keys a WriteWatcher watches: Keys are those
	// keys (copies), Args is nil. Only WriteWatchers get such events.
	Write bool
	Keys  [][]byte
	// Node is the address of the Redis node the command ran on (a Redis
	// Cluster upstream); "" for a single Redis.
	Node string
}

// NodesWatcher is a Rewriter that must know the primaries of a Redis
// Cluster upstream (exstring loads its Lua library on each). SetNodes is
// called with every primary's address when the proxy first reads the
// slot map and whenever the set of primaries changes (a failover, a node
// added); it must not block.
type NodesWatcher interface {
	SetNodes(primaries []string)
}

// NodeReloader is a ReplyHandler that can reload what its commands need
// on one node of a Redis Cluster: the core calls ReloadNode, with the
// address of the node that failed the command, instead of Reload.
type NodeReloader interface {
	ReloadNode(ctx context.Context, addr string) error
}
