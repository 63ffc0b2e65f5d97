package contention

import (
	"bytes"
	"slices"
	"time"

	"github.com/exproxy/exproxy/proxy"
)

func (s *session) watch(ev *proxy.Event) {
	if len(s.watched) == 0 && !s.moreWatch {
		s.watchStart = ev.Sent
		if s.watchStart.IsZero() {
			s.watchStart = ev.Done
		}
	}
	ks := s.t.keys
	for _, a := range ev.Args {
		if containsKey(s.watched, a) {
			continue
		}
		if len(s.watched) >= maxWatchKeys {
			s.moreWatch = true
			continue
		}
		var e *keyEntry
		if ks != nil {
			e = ks.acquire(a, s.doneAt(ev), true)
		}
		if e != nil {
			s.watched = append(s.watched, e.key) // the entry's copy
		} else {
			s.watched = append(s.watched, string(a)) // Args are valid only during Observe
		}
		s.ents = append(s.ents, e)
	}
}

// unwatch releases the attribution entries of the watched keys.
func (s *session) unwatch(at time.Time) {
	if len(s.ents) == 0 {
		return
	}
	now := unixNano(at)
	if now == 0 {
		now = s.t.now().UnixNano()
	}
	for i, e := range s.ents {
		if e != nil {
			s.t.keys.release(e, now)
		}
		s.ents[i] = nil
	}
	s.ents = s.ents[:0]
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
		s.queuedWrites = s.queuedWrites[:0]
		s.release(ev.Done)
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
	if len(s.queuedWrites) > 0 {
		if d.Commits == 1 {
			s.execWrites(ev)
		} else {
			s.queuedWrites = s.queuedWrites[:0]
		}
	}

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
	pats := s.watchPatterns()
	s.t.apply(s.sh, &d, keys, pats, dur, timed, client)
	if d.Aborts == 1 {
		var aev *abortEvent
		if s.t.allowEvent() {
			aev = &abortEvent{
				msg: MsgAbort, at: ev.Done, keys: slices.Clone(keys), queued: slices.Clone(ev.Queued),
				client: client, addr: s.info.Addr, db: s.info.DB, user: s.info.User,
				watchDur: dur, timed: timed, attempt: attempt, node: ev.Node,
			}
		}
		if s.t.keys == nil {
			if aev != nil {
				s.t.emit(*aev)
			}
		} else if len(keys) > 0 {
			done := s.doneAt(ev)
			s.t.attribute(&conflict{
				sh: s.sh, kind: conflictAbort, victim: client, keys: keys, pats: pats, ents: s.ents, db: s.db(),
				after: unixNano(s.watchStart), before: done, at: unixNano(ev.Sent),
				due: done + int64(attributionGrace), ev: aev,
			})
		}
	}
	s.unwatch(ev.Done)
	// The key slice now belongs to the chain (or is dropped); start anew.
	s.watched, s.moreWatch, s.watchStart = nil, false, time.Time{}
}

// watchPatterns returns the patterns of the watched keys, from their
// attribution entries when tracked, in a buffer of the session's that is
// valid until the next call.
func (s *session) watchPatterns() []string {
	s.pats = s.pats[:0]
	for i, k := range s.watched {
		if i < len(s.ents) && s.ents[i] != nil {
			s.pats = append(s.pats, s.ents[i].pattern)
		} else {
			s.pats = append(s.pats, s.t.pat.Pattern(k))
		}
	}
	return s.pats
}

// release ends a WATCH without EXEC (UNWATCH, DISCARD, RESET, disconnect)
// at the time of the reply that ended it (zero: now).
func (s *session) release(at time.Time) {
	if len(s.watched) == 0 {
		return
	}
	defer s.unwatch(at)
	d := counts{GivenUp: 1}
	keys := s.watched
	if s.chainSig != "" && signature(keys) == s.chainSig {
		d.ChainsGivenUp = 1
		s.chainSig, s.chainKeys, s.chainAborts = "", nil, 0
	}
	s.t.apply(s.sh, &d, keys, s.watchPatterns(), 0, false, s.client())
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
	s.t.apply(s.sh, &counts{ChainsGivenUp: 1}, keys, s.patterns(keys, nil), 0, false, s.client())
}
