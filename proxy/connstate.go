package proxy

import (
	"bytes"

	"github.com/exproxy/exproxy/proxy/resp"
)

// What a connection's state does to how replies pair with commands —
// CLIENT REPLY, RESP2 pub/sub, MONITOR — and what the session's identity
// is, all as Redis applies them: on the reply side, in reply order,
// since they depend on the state the connection is in when a command
// runs, which the read loop cannot know when it sends it.

// resolve fixes how many regular replies an entry gets: CLIENT REPLY
// OFF/SKIP silence them, RESP3 (un)subscribe confirmations are pushes,
// a RESP2 (un)subscribe gets one per channel.
func (r *replySide) resolve(e *entry) {
	if a := r.s.aborted; a != 0 && e.seq+1 == a {
		// Cut short by malformed input: Redis never had it whole.
		e.replies, e.resolved = 0, true
		return
	}
	if e.resolved {
		return
	}
	e.resolved = true
	silenced := r.replyOff || r.replySkip
	if e.local != nil {
		switch {
		case e.closeAfterReply && silenced:
			// Never written: Redis closes only if a reply to the same
			// read is still being written, else keeps the connection
			// open, reading nothing more from it.
			e.local = []byte{}
			e.closeAfter = r.replied > e.readStart
			r.replySkip = false
		case e.closeAfterReply:
			e.closeAfter = true
			r.replySkip = false
		case e.emptyCmd:
			r.replySkip = false
		}
		return
	}
	if e.internal {
		return
	}
	subMode := r.info.Proto == 2 && r.subscribed()
	if e.replyMode != replyUnchanged {
		if subMode {
			// Redis refuses CLIENT in RESP2 subscribed mode; the error
			// is silenced like any other reply.
			if silenced {
				e.replies = 0
			}
			r.replySkip = false
			return
		}
		switch e.replyMode {
		case replyOff:
			r.replyOff, e.replies = true, 0
		case replySkip:
			r.replySkip = !r.replyOff
			e.replies = 0
		case replyOn:
			r.replyOff, r.replySkip, e.replies = false, false, 1
		}
		return
	}
	r.replySkip = false
	if e.cmd != nil && e.cmd.kind == kindReset {
		r.replyOff = false // RESET clears CLIENT REPLY OFF before it answers
		return
	}
	if e.cmd != nil && (e.cmd.kind == kindSubscribe || e.cmd.kind == kindUnsubscribe) && !r.inMulti {
		// Confirmations are sent even under CLIENT REPLY OFF.
		n := e.subArgs
		switch {
		case r.info.Proto == 3 && (n > 0 || e.cmd.kind == kindUnsubscribe):
			// Confirmations come as pushes, one per channel named, or
			// per channel left for an unsubscribe of everything.
			e.replies = 0
			e.pushes = n
			if n == 0 {
				e.pushes = int32(max(1, r.subCount(e.cmd.name)))
			}
			r.countPushes = true
		case n > 0:
			e.replies = n
		case e.cmd.kind == kindUnsubscribe:
			e.replies = int32(max(1, r.subCount(e.cmd.name)))
		case silenced:
			e.replies = 0 // its arity error is silenced
		default:
			e.replies = 1 // arity error
		}
		return
	}
	if e.cmd != nil && e.cmd.kind == kindQuit {
		r.quit = true // Redis may close after it, even when its +OK is silenced
	}
	if silenced {
		e.replies = 0
	}
}

func (r *replySide) subscribed() bool { return r.chans+r.pats+r.shards > 0 }

func (r *replySide) subCount(name string) int {
	switch name {
	case "unsubscribe":
		return r.chans
	case "punsubscribe":
		return r.pats
	default:
		return r.shards
	}
}

// holdsState reports whether the connection holds state that pairs
// replies differently or that a shared connection must not carry.
func (r *replySide) holdsState() bool {
	return r.subscribed() || r.monitor || r.replyOff || r.replySkip || r.raw || r.inMulti ||
		r.retrying || len(r.reorder) > 0
}

// apply updates the session's identity and connection state from a
// reply to a command that changes them.
func (r *replySide) apply(e *entry, head []byte) {
	ok := bytes.HasPrefix(head, okReply)
	switch e.cmd.kind {
	case kindSelect:
		if ok && e.selectDB >= 0 {
			r.info.DB = e.selectDB
			r.confirmed = true
		}
	case kindAuth:
		if ok && e.authUser != "" {
			r.info.User = e.authUser
			r.authed, r.confirmed = true, true
		}
	case kindHello:
		if len(head) > 0 && (head[0] == '%' || head[0] == '*') {
			if e.helloProto != 0 {
				r.info.Proto = e.helloProto
			}
			if e.authUser != "" {
				r.info.User = e.authUser
				r.authed = true
			}
			if e.setsName {
				r.info.Name = e.clientName
			}
			r.confirmed = true
		}
	case kindClient:
		if ok && e.setsName {
			r.info.Name = e.clientName
		}
	case kindReset:
		if bytes.HasPrefix(head, []byte("+RESET")) {
			r.info.DB, r.info.Name, r.info.User, r.info.Proto = 0, "", "default", 2
			r.chans, r.pats, r.shards, r.monitor = 0, 0, 0, false
			r.replyOff, r.replySkip, r.authed, r.countPushes = false, false, false, false
			r.confirmed = true
		}
	case kindMonitor:
		if ok {
			r.monitor = true
		}
	case kindQuit:
		r.quit = true
	case kindSubscribe, kindUnsubscribe:
		r.countSubscription(head)
	}
}

// countSubscription reads a confirmation, e.g.
// *3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n (a RESP2 reply, or a RESP3
// push starting with >3), whose last element is the number of
// subscriptions left.
func (r *replySide) countSubscription(head []byte) {
	want := byte('*')
	if r.info.Proto == 3 {
		want = '>'
	}
	if len(head) < 4 || head[0] != want || r.tail == nil {
		return
	}
	t := r.tail
	i := bytes.LastIndexByte(t[:len(t)-2], ':')
	if i < 0 {
		return
	}
	v, ok := resp.ParseInt(t[i+1 : len(t)-2])
	if !ok || v < 0 {
		return
	}
	n := int(v)
	// Redis counts channels and patterns together; shard channels apart.
	switch kind := confirmationKind(head); {
	case equalFold(kind, "subscribe"), equalFold(kind, "unsubscribe"):
		r.chans = max(0, n-r.pats)
	case equalFold(kind, "psubscribe"), equalFold(kind, "punsubscribe"):
		r.pats = max(0, n-r.chans)
	case equalFold(kind, "ssubscribe"), equalFold(kind, "sunsubscribe"):
		r.shards = n
	}
}

// isSubscription reports whether kind names a (un)subscribe confirmation.
func isSubscription(kind []byte) bool {
	for _, k := range [...]string{"subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe"} {
		if equalFold(kind, k) {
			return true
		}
	}
	return false
}

// confirmationKind is the first element of a RESP2 confirmation
// (*3\r\n$N\r\n<kind>\r\n...), or nil.
func confirmationKind(head []byte) []byte {
	i := bytes.IndexByte(head, '\n')
	if i < 0 {
		return nil
	}
	rest := head[i+1:]
	j := bytes.IndexByte(rest, '\n')
	if j < 0 {
		return nil
	}
	rest = rest[j+1:]
	k := bytes.IndexByte(rest, '\r')
	if k < 0 {
		return nil
	}
	return rest[:k]
}

// isPubSubMessage tells a RESP2 message from a reply in subscribed mode.
func isPubSubMessage(head []byte) bool {
	return bytes.HasPrefix(head, []byte("*3\r\n$7\r\nmessage\r\n")) ||
		bytes.HasPrefix(head, []byte("*4\r\n$8\r\npmessage\r\n")) ||
		bytes.HasPrefix(head, []byte("*3\r\n$8\r\nsmessage\r\n"))
}

// isMonitorLine recognises "+1700000000.123456 [0 127.0.0.1:5000] ...".
func isMonitorLine(head []byte) bool {
	if len(head) < 3 || head[0] != '+' || head[1] < '0' || head[1] > '9' {
		return false
	}
	sp := bytes.IndexByte(head, ' ')
	return sp > 0 && bytes.IndexByte(head[:sp], '.') > 0 && sp+1 < len(head) && head[sp+1] == '['
}

func appendTail(t, b []byte) []byte {
	const keep = 32
	if len(b) >= keep {
		return append(t[:0], b[len(b)-keep:]...)
	}
	t = append(t, b...)
	if len(t) > keep {
		t = append(t[:0], t[len(t)-keep:]...)
	}
	return t
}
