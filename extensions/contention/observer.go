package contention

import (
	"bytes"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/exproxy/exproxy/proxy"
)

// maxWatchKeys bounds the keys remembered per transaction: a WATCH of more
// keys is still counted, but only its first maxWatchKeys keys get per-key
// rows, so one client cannot make a session hold unbounded state.
const maxWatchKeys = 256

// session follows one client's transaction state. The proxy calls it on
// the session's reply goroutine only, so it keeps its state without locks
// and touches the tracker's (sharded) lock only when something is counted.
type session struct {
	t    *Tracker
	sh   *shard
	info *proxy.SessionInfo

	watched    []string    // distinct watched keys, in WATCH order
	ents       []*keyEntry // their attribution entries (nil: not tracked); each holds a watcher count
	moreWatch  bool        // keys beyond maxWatchKeys were watched
	watchStart time.Time
	inMulti    bool
	pats       []string     // scratch: the patterns of the keys being counted
	one        [1]string    // scratch: a single key
	oneEnt     [1]*keyEntry // scratch: its attribution entry

	// Writes to tracked keys queued in MULTI: they happen when EXEC
	// commits, and not at all when it aborts, so they are recorded then.
	queuedWrites []queuedWrite
	wr           *writer // the session as a writer (writer())
	// last is the entry this session last looked up for a write or a
	// versioned command: a session writing one hot key again and again
	// finds it without the set's lock (cached()).
	last *keyEntry

	// The retry chain: the sorted key set of the last aborted transaction
	// and how many aborts it has had in a row.
	chainSig    string
	chainKeys   []string
	chainAborts int64

	labelAddr string // Addr the cached label was made from
	label     string
}

// Observe implements proxy.SessionObserver.
func (s *session) Observe(ev *proxy.Event) {
	if ev.Write {
		s.wrote(ev)
		return
	}
	switch ev.Name {
	case "watch":
		if isOK(ev) {
			s.watch(ev)
		}
	case "multi":
		if isOK(ev) {
			s.inMulti = true
		}
	case "exec":
		s.exec(ev)
	case "discard":
		if isOK(ev) {
			s.inMulti = false
			s.queuedWrites = s.queuedWrites[:0]
			s.release(ev.Done)
		}
	case "unwatch":
		// Inside MULTI, UNWATCH is queued (+QUEUED) and does nothing yet.
		if isOK(ev) {
			s.release(ev.Done)
		}
	case "reset":
		if ev.Kind == '+' && bytes.HasPrefix(ev.Reply, []byte("+RESET")) {
			s.inMulti = false
			s.queuedWrites = s.queuedWrites[:0]
			s.release(ev.Done)
		}
	default:
		s.versioned(ev)
	}
}

// versioned counts a versioned or compare-and-set command by its outcome,
// which the extension that implements it reports (proxy.Outcomer), and
// keeps its key in the attribution set.
func (s *session) versioned(ev *proxy.Event) {
	if len(ev.Args) == 0 {
		return
	}
	ks := s.t.keys
	switch ev.Outcome {
	case proxy.Stale:
		s.refused(ev, &counts{Stale: 1}, conflictStale)
	case proxy.CompareFailed:
		s.refused(ev, &counts{CASFailed: 1}, conflictCAS)
	case proxy.Committed:
		cond := conditional(ev)
		var e *keyEntry
		if ks != nil {
			if cond {
				e = s.acquire(ev.Args[0], s.doneAt(ev))
			} else {
				// An unconditional write is recorded when the key is
				// tracked, but does not keep it so.
				e = s.cached(ev.Args[0])
			}
			if e != nil {
				w := s.writeRec(ev)
				s.t.wrote(e, &w)
			}
		}
		if !cond {
			return
		}
		d := counts{VersionedCommits: 1}
		if ev.Name == "cas" || ev.Name == "cad" {
			d = counts{CASCommits: 1}
		}
		keys := s.oneKey(ev.Args[0], e)
		s.t.apply(s.sh, &d, keys, s.patterns(keys, e), 0, false, s.client())
	default:
		// A read of a version (EXGET, EXGAE) keeps the key tracked, so
		// that a later refused write finds the write that moved it on.
		if ks != nil && (ev.Name == "exget" || ev.Name == "exgae") && ev.Kind != '-' && ev.Kind != 0 {
			s.acquire(ev.Args[0], s.doneAt(ev))
		}
	}
}

// conditional reports a write that a version or a value check may refuse:
// EXCAS, EXCAD, CAS and CAD always; EXSET, EXINCRBY, EXINCRBYFLOAT,
// EXAPPEND and EXPREPEND with VER and a version other than 0 (which
// Tair's grammar makes no check). An unconditional write never conflicts,
// so it would only dilute the conflict ratio.
func conditional(ev *proxy.Event) bool {
	switch ev.Name {
	case "excas", "excad", "cas", "cad":
		return true
	case "exset", "exincrby", "exincrbyfloat", "exappend", "exprepend":
		// key, value (or increment), then options: none of them takes an
		// argument that could read "VER".
		for i := 2; i+1 < len(ev.Args); i++ {
			if a := ev.Args[i]; len(a) == 3 && a[0]|0x20 == 'v' && a[1]|0x20 == 'e' && a[2]|0x20 == 'r' {
				return string(ev.Args[i+1]) != "0"
			}
		}
	}
	return false
}

// queuedWrite is a write to a tracked key queued in MULTI. Holding the
// entry costs no copy of the key; should the sweep drop it before the
// EXEC (the key unused for attribution-ttl meanwhile), the write is
// recorded where nobody looks, which is what a dropped key deserves.
type queuedWrite struct {
	e       *keyEntry
	command string
}

// wrote records a write the proxy core reports (proxy.WriteWatcher) on
// the entries of the keys it wrote.
func (s *session) wrote(ev *proxy.Event) {
	ks := s.t.keys
	if ks == nil {
		return
	}
	if ev.Kind == '+' && bytes.HasPrefix(ev.Reply, []byte("+QUEUED")) {
		// Queued in MULTI: it writes only if EXEC commits (execWrites).
		for _, k := range ev.Keys {
			if e := ks.lookup(k); e != nil && len(s.queuedWrites) < maxWatchKeys {
				s.queuedWrites = append(s.queuedWrites, queuedWrite{e: e, command: ev.Name})
			}
		}
		return
	}
	var w writeRec
	for _, k := range ev.Keys {
		e := s.cached(k)
		if e == nil {
			continue
		}
		if w.by == nil {
			w = s.writeRec(ev)
		}
		s.t.wrote(e, &w)
	}
}

// execWrites records the writes queued in the transaction that ev, its
// EXEC, committed: they happened when the EXEC ran.
func (s *session) execWrites(ev *proxy.Event) {
	for _, q := range s.queuedWrites {
		w := s.writeRec(ev)
		w.command = q.command
		s.t.wrote(q.e, &w)
	}
	clear(s.queuedWrites)
	s.queuedWrites = s.queuedWrites[:0]
}

// writeRec describes ev as a write by this session.
func (s *session) writeRec(ev *proxy.Event) writeRec {
	w := writeRec{by: s.writer(), command: ev.Name, sent: unixNano(ev.Sent), done: unixNano(ev.Done)}
	if w.sent == 0 {
		w.sent = w.done
	}
	return w
}

// cached returns key's entry in the attribution set, or nil: the
// session's last one when it is that key's and still in the set, else
// from the set. (An entry swept just after the check gets a write nobody
// reads, as it would from the set.)
func (s *session) cached(key []byte) *keyEntry {
	if e := s.last; e != nil && sameKey(e.key, key) && !e.dropped.Load() {
		return e
	}
	e := s.t.keys.lookup(key)
	if e != nil {
		s.last = e
	}
	return e
}

// acquire is keySet.acquire for a versioned command (no watcher), through
// the session's cache. It does not ask the set's filter first, as cached
// does: a versioned command's key is usually in the set, and the filter
// would only add a cache miss.
func (s *session) acquire(key []byte, now int64) *keyEntry {
	if e := s.last; e != nil && sameKey(e.key, key) && !e.dropped.Load() {
		e.lastUse.Store(now)
		return e
	}
	e := s.t.keys.acquire(key, now, false)
	if e != nil {
		s.last = e
	}
	return e
}

// writer is the session as a writer, made anew when it changed.
func (s *session) writer() *writer {
	var w writer // on the stack: only a changed writer is copied to the heap
	w.client = s.client()
	if s.info != nil {
		w.session, w.addr, w.user, w.db = s.info.ID, s.info.Addr, s.info.User, s.info.DB
	}
	if s.wr == nil || *s.wr != w {
		s.wr = new(writer)
		*s.wr = w
	}
	return s.wr
}

// unixNano is t in Unix nanoseconds, 0 for the zero time.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// oneKey is key as a one-element list, from e when tracked (no copy).
func (s *session) oneKey(key []byte, e *keyEntry) []string {
	if e != nil {
		s.one[0] = e.key
	} else {
		s.one[0] = string(key)
	}
	return s.one[:]
}

// Close implements proxy.SessionObserver: keys still watched and an open
// retry chain count as given up.
func (s *session) Close() {
	s.release(time.Time{})
	s.endChain()
}

func isOK(ev *proxy.Event) bool {
	return ev.Kind == '+' && bytes.HasPrefix(ev.Reply, []byte("+OK\r\n"))
}

func (s *session) db() int {
	if s.info == nil {
		return 0
	}
	return s.info.DB
}

// refused counts a stale versioned write or a failed CAS/CAD on its key,
// and attributes it to the last write to that key. It allocates nothing
// but the per-conflict event, when one is written.
func (s *session) refused(ev *proxy.Event, d *counts, kind int) {
	done := s.doneAt(ev)
	var e *keyEntry
	if s.t.keys != nil {
		e = s.acquire(ev.Args[0], done)
	}
	keys := s.oneKey(ev.Args[0], e)
	client := s.client()
	pats := s.patterns(keys, e)
	s.t.apply(s.sh, d, keys, pats, 0, false, client)
	var aev *abortEvent
	if s.t.allowEvent() {
		aev = &abortEvent{
			msg: MsgStale, at: ev.Done, command: ev.Name, keys: []string{keys[0]},
			client: client, addr: s.info.Addr, db: s.info.DB, user: s.info.User, node: ev.Node,
		}
	}
	if s.t.keys == nil {
		if aev != nil {
			s.t.emit(*aev)
		}
		return
	}
	s.oneEnt[0] = e
	// attribute keeps none of the conflict's memory (a conflict that
	// waits is copied), so it stays on the stack and in the session.
	s.t.attribute(&conflict{
		sh: s.sh, kind: kind, victim: client, keys: keys, pats: pats, ents: s.oneEnt[:], db: s.db(),
		before: done, at: unixNano(ev.Sent), due: done + int64(attributionGrace), ev: aev,
	})
	s.oneEnt[0] = nil
}

// doneAt is when ev's reply came, in Unix ns (now when the core did not
// say).
func (s *session) doneAt(ev *proxy.Event) int64 {
	if ev.Done.IsZero() {
		return s.t.now().UnixNano()
	}
	return ev.Done.UnixNano()
}

// patterns returns the patterns of keys in a buffer of the session's,
// valid until the next call; e, when given, is the entry of the only key.
func (s *session) patterns(keys []string, e *keyEntry) []string {
	s.pats = s.pats[:0]
	for _, k := range keys {
		if e != nil {
			s.pats = append(s.pats, e.pattern)
		} else {
			s.pats = append(s.pats, s.t.pat.Pattern(k))
		}
	}
	return s.pats
}

// client labels the session: its CLIENT SETNAME name when set, otherwise
// the host part of its address (ports differ per pooled connection, so
// they would split one application into many "clients").
func (s *session) client() string {
	if s.info == nil {
		return ""
	}
	if s.info.Name != "" {
		return s.info.Name
	}
	if s.info.Addr != s.labelAddr || s.label == "" {
		s.labelAddr = s.info.Addr
		host, _, err := net.SplitHostPort(s.info.Addr)
		if err != nil {
			host = s.info.Addr
		}
		s.label = host
	}
	return s.label
}

// signature identifies a key set regardless of WATCH order.
func signature(keys []string) string {
	if len(keys) == 1 {
		return keys[0]
	}
	s := slices.Clone(keys)
	slices.Sort(s)
	return strings.Join(s, "\x00")
}

var _ proxy.SessionObserver = (*session)(nil)
