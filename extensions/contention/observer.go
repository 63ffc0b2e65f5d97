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

	watched    []string // distinct watched keys, in WATCH order
	moreWatch  bool     // keys beyond maxWatchKeys were watched
	watchStart time.Time
	inMulti    bool

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
			s.release()
		}
	case "unwatch":
		// Inside MULTI, UNWATCH is queued (+QUEUED) and does nothing yet.
		if isOK(ev) {
			s.release()
		}
	case "reset":
		if ev.Kind == '+' && bytes.HasPrefix(ev.Reply, []byte("+RESET")) {
			s.inMulti = false
			s.release()
		}
	default:
		// Versioned and compare-and-set writes: the extension that
		// implements them says what the reply means (proxy.Outcomer).
		switch ev.Outcome {
		case proxy.Stale:
			s.refused(ev, &counts{Stale: 1})
		case proxy.CompareFailed:
			s.refused(ev, &counts{CASFailed: 1})
		}
	}
}

// Close implements proxy.SessionObserver: keys still watched and an open
// retry chain count as given up.
func (s *session) Close() {
	s.release()
	s.endChain()
}

func isOK(ev *proxy.Event) bool {
	return ev.Kind == '+' && bytes.HasPrefix(ev.Reply, []byte("+OK\r\n"))
}

func (s *session) watch(ev *proxy.Event) {
	if len(s.watched) == 0 && !s.moreWatch {
		s.watchStart = ev.Sent
		if s.watchStart.IsZero() {
			s.watchStart = ev.Done
		}
	}
	for _, a := range ev.Args {
		if containsKey(s.watched, a) {
			continue
		}
		if len(s.watched) >= maxWatchKeys {
			s.moreWatch = true
			continue
		}
		s.watched = append(s.watched, string(a)) // Args are valid only during Observe
	}
}

func containsKey(ks []string, k []byte) bool {
	for _, x := range ks {
		if x == string(k) { // no allocation: the compiler compares in place
			return true
		}
	}
	return false
}

// exec counts one EXEC by its reply.
func (s *session) exec(ev *proxy.Event) {
	d := counts{}
	switch {
	case ev.Kind == 0:
		// No reply (connection lost, CLIENT REPLY OFF): the outcome is
		// unknown, so the watch counts as given up, not as a transaction.
		s.inMulti = false
		s.release()
		return
	case ev.Kind == '_' || ev.Kind == '*' && bytes.HasPrefix(ev.Reply, []byte("*-1\r\n")):
		d.Aborts = 1
	case ev.Kind == '*':
		d.Commits = 1
	case ev.Kind == '-' && bytes.HasPrefix(ev.Reply, []byte("-EXECABORT")):
		d.ExecAborts = 1
	case ev.Kind == '-' && !s.inMulti:
		// "EXEC without MULTI": Redis leaves the watched keys armed, so the
		// transaction goes on; only the error is counted (totals, client).
		d.ExecErrors = 1
		s.t.apply(s.sh, &d, nil, nil, 0, false, s.client())
		return
	default:
		// Any other reply inside MULTI (an ACL or OOM error, say) ends the
		// transaction for the client; count it as a failed transaction.
		d.ExecErrors = 1
	}
	d.Transactions = 1
	s.inMulti = false

	keys := s.watched
	var dur time.Duration
	timed := len(keys) > 0 && !s.watchStart.IsZero() && !ev.Done.IsZero()
	if timed {
		dur = ev.Done.Sub(s.watchStart)
	}
	var attempt int64 = 1
	if len(keys) > 0 {
		sig := signature(keys)
		if s.chainSig != "" && sig == s.chainSig {
			d.Retries = 1
			attempt = s.chainAborts + 1
		} else {
			s.endChain()
		}
		switch {
		case d.Commits == 1:
			if d.Retries == 1 {
				d.CommitRetries, d.RetriesMax = s.chainAborts, s.chainAborts
			}
			s.chainSig, s.chainKeys, s.chainAborts = "", nil, 0
		case d.Aborts == 1:
			if s.chainSig == "" {
				s.chainSig, s.chainKeys = sig, keys
			}
			s.chainAborts++
		default:
			// EXECABORT or an error is not a lost race: the chain of
			// retries, if any, ends here without a commit.
			if s.chainSig != "" {
				d.ChainsGivenUp = 1
				s.chainSig, s.chainKeys, s.chainAborts = "", nil, 0
			}
		}
	}
	// A MULTI/EXEC without WATCH leaves the chain alone: it cannot be a
	// retry of anything, and applications often pipeline such blocks
	// between attempts.
	client := s.client()
	s.t.apply(s.sh, &d, keys, s.patterns(keys), dur, timed, client)
	if d.Aborts == 1 && s.t.allowEvent() {
		s.t.emit(abortEvent{
			msg: MsgAbort, at: ev.Done, keys: slices.Clone(keys), queued: slices.Clone(ev.Queued),
			client: client, addr: s.info.Addr, db: s.info.DB, user: s.info.User,
			watchDur: dur, timed: timed, attempt: attempt, node: ev.Node,
		})
	}
	// The key slice now belongs to the chain (or is dropped); start anew.
	s.watched, s.moreWatch, s.watchStart = nil, false, time.Time{}
}

// release ends a WATCH without EXEC (UNWATCH, DISCARD, RESET, disconnect).
func (s *session) release() {
	if len(s.watched) == 0 {
		return
	}
	d := counts{GivenUp: 1}
	keys := s.watched
	if s.chainSig != "" && signature(keys) == s.chainSig {
		d.ChainsGivenUp = 1
		s.chainSig, s.chainKeys, s.chainAborts = "", nil, 0
	}
	s.t.apply(s.sh, &d, keys, s.patterns(keys), 0, false, s.client())
	s.watched, s.moreWatch, s.watchStart = nil, false, time.Time{}
}

// endChain counts an open retry chain as given up: the session moved on to
// other keys, or went away, without committing.
func (s *session) endChain() {
	if s.chainSig == "" {
		return
	}
	keys := s.chainKeys
	s.chainSig, s.chainKeys, s.chainAborts = "", nil, 0
	s.t.apply(s.sh, &counts{ChainsGivenUp: 1}, keys, s.patterns(keys), 0, false, s.client())
}

// refused counts a stale versioned write or a failed CAS/CAD on its key.
func (s *session) refused(ev *proxy.Event, d *counts) {
	if len(ev.Args) == 0 {
		return
	}
	keys := []string{string(ev.Args[0])}
	client := s.client()
	s.t.apply(s.sh, d, keys, s.patterns(keys), 0, false, client)
	if s.t.allowEvent() {
		s.t.emit(abortEvent{
			msg: MsgStale, at: ev.Done, command: ev.Name, keys: keys,
			client: client, addr: s.info.Addr, db: s.info.DB, user: s.info.User, node: ev.Node,
		})
	}
}

func (s *session) patterns(keys []string) []string {
	if len(keys) == 0 {
		return nil
	}
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = s.t.pat.Pattern(k)
	}
	return out
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
