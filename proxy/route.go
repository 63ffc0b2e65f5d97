package proxy

import (
	"strings"
	"time"

	"github.com/exproxy/exproxy/proxy/resp"
)

// process frames and routes every complete command in the buffer, then
// sends the batch. false ends the read loop.
func (s *session) process() bool {
	s.readStart = s.q.total() + uint64(len(s.batch))
	for s.in.r < s.in.w && !s.draining.Load() {
		if s.ignoreRest {
			// After QUIT or malformed input Redis reads nothing more.
			s.in.r = s.in.w
			break
		}
		// Redis reads a client that has not authenticated (to a Redis
		// that requires it) with smaller limits; dispatch waits for an
		// AUTH's outcome, so the next command is read with the right ones.
		s.parser.Limits.Unauthenticated = !s.conns.authed && s.srv.authRequired.Load()
		n, args, inline, err := s.parser.Parse(s.in.data(), s.argv[:0])
		if err != nil {
			s.protocolError(err)
			break
		}
		if n == 0 {
			break
		}
		raw := s.in.b[s.in.r : s.in.r+n]
		s.in.r += n
		if len(args) == 0 {
			// Redis sends nothing for an empty command, but it ends a
			// pending CLIENT REPLY SKIP, which the reply side follows.
			s.batch = append(s.batch, entry{local: []byte{}, emptyCmd: true})
			s.hasLocal = true
			continue
		}
		if inline {
			raw, args = s.inlineToMultibulk(args)
		}
		ok := s.dispatch(s.srv.table.lookup(args[0]), raw, args)
		s.argv = args[:0]
		if !ok {
			return false
		}
	}
	return s.send()
}

// inlineToMultibulk re-encodes an inline command so that upstream and the
// extensions see exactly the arguments the proxy parsed.
func (s *session) inlineToMultibulk(args [][]byte) ([]byte, [][]byte) {
	s.inline = resp.AppendArrayHeader(s.inline[:0], len(args))
	for _, a := range args {
		s.inline = resp.AppendBulk(s.inline, a)
	}
	var p resp.CommandParser
	p.Limits = s.parser.Limits
	_, out, _, _ := p.Parse(s.inline, args[:0])
	return s.inline, out
}

// dispatch puts one command on the connection it may run on, moving the
// session first if it must, and routes it. false ends the read loop.
func (s *session) dispatch(cmd *command, raw []byte, args [][]byte) bool {
	if s.cl != nil {
		return s.dispatchCluster(cmd, raw, args)
	}
	cs := &s.conns
	switch p := placeOf(cmd, args); {
	case p == placeQuit:
		// Redis answers +OK (unless replies are off), closes, and reads
		// nothing more. On a connection of the session's own, Redis does
		// that itself, after the pushes it may still owe; forwarded to a
		// shared connection it would close that, so the proxy answers.
		s.ignoreRest = true
		if cs.own == nil {
			s.srv.stats.commands.Add(1)
			s.batch = append(s.batch, entry{cmd: cmd, local: okReply, closeAfterReply: true, readStart: s.readStart, replies: 1})
			s.hasLocal = true
			return true
		}
	case cs.own != nil:
		switch {
		case p == placeOwnForever:
			cs.sticky = true
		case p == placeRepool && cmd.kind == kindReset:
			// RESET leaves the connection as a new one: the session may
			// share again once Redis has answered it.
			cs.key, cs.cred, cs.authed = anonymous, nil, false
			cs.sticky = s.srv.opts.Mode == PinnedUpstream
		case p == placeRepool:
			// Redis applies it to this connection, which the session
			// then keeps: its state is no longer that of a pool.
			cs.sticky = true
		case p == placeShared && !cs.sticky && s.canGiveBack():
			s.giveBack()
		}
	case p == placeOwn || p == placeOwnForever:
		moved, alive := s.moveToOwn(cmd, args[0])
		if !moved {
			return alive
		}
		cs.sticky = p == placeOwnForever
	case p == placeRepool:
		return s.repool(cmd, raw, args)
	}
	s.route(cmd, raw, args, len(args), false)
	if cmd != nil && (cmd.kind == kindAuth || cmd.kind == kindHello) && !cs.authed && s.srv.authRequired.Load() {
		// Redis reads the next command with the limits of the outcome.
		if !s.send() || !s.waitIdle() {
			return false
		}
		s.mu.Lock()
		cs.authed = s.rs.authed
		s.mu.Unlock()
	}
	return true
}

var okReply = []byte("+OK\r\n")

// route decides what to send for one command and appends it, with its
// entry, to the batch. partial is set for a command streamed through,
// whose raw holds only its beginning; skip is then how much of raw the
// rewrite replaced.
func (s *session) route(cmd *command, raw []byte, args [][]byte, argc int, partial bool) (skip int) {
	s.srv.stats.commands.Add(1)
	e := entry{cmd: cmd, replies: 1}
	rewritten := false
	if cmd != nil {
		s.sendSideState(&e, cmd, args)
		if cmd.rewriter != nil {
			if rw, ok := cmd.rewriter.Rewrite(args, argc, &s.rinfo); ok {
				if rw.Local != nil {
					e.local = rw.Local
					s.batch = append(s.batch, e)
					s.hasLocal = true
					return len(raw)
				}
				e.rw = rw.Reply
				if rw.Prefix != nil {
					skip = resp.NameEnd(raw)
					start := len(s.upbuf)
					s.upbuf = appendRewrite(s.upbuf, rw, argc)
					if !partial {
						s.upbuf = append(s.upbuf, raw[skip:]...)
						// The command as the client sent it is kept, not
						// its rewrite: a resend rewrites it again, since the
						// reason for the resend may change the rewrite
						// (FCALL unknown: EVALSHA instead).
						if e.rw != nil && len(raw) <= maxResend {
							e.resend = s.arena.copyBytes(raw)
						}
						if rw.Group != 0 {
							s.offerGroup(rw, args, start, e.resend)
						}
					}
					rewritten = true
				}
			}
		}
		if cmd.observed {
			e.obs = s.arena.newObserved()
			e.obs.args, e.obs.sent = s.arena.copyArgs(args[1:]), time.Now()
			if cmd.kind == kindExec {
				e.obs.queued, s.tx.queued = s.tx.queued, nil
			}
		}
	}
	for _, w := range s.srv.writeWatchers {
		if w.Watching() {
			s.watchWrites(&e, args)
			break
		}
	}
	if s.tx.inMulti && len(s.srv.opts.Observers) > 0 && (cmd == nil || (cmd.kind != kindMulti && cmd.kind != kindExec)) {
		s.tx.queued = append(s.tx.queued, nameOf(cmd, args[0]))
	}
	if !rewritten {
		if !partial {
			s.upbuf = append(s.upbuf, raw...)
		}
		skip = 0
	}
	s.batch = append(s.batch, e)
	return skip
}

// sendSideState updates what the read loop tracks (MULTI, WATCH) and
// records in e what the reply side needs to apply the command's effect.
func (s *session) sendSideState(e *entry, cmd *command, args [][]byte) {
	switch cmd.kind {
	case kindMulti:
		s.tx.inMulti = true
		s.tx.queued = s.tx.queued[:0]
	case kindExec, kindDiscard:
		s.tx.inMulti, s.tx.watching = false, false
	case kindReset:
		s.tx.inMulti, s.tx.watching = false, false
		s.tx.queued = nil
	case kindSync:
		s.syncing.Store(true)
	case kindWatch:
		if !s.tx.inMulti {
			s.tx.watching = true
			s.armWatch(args)
		}
	case kindUnwatch:
		if !s.tx.inMulti {
			s.tx.watching = false
		}
	case kindSelect:
		e.selectDB = -1
		if len(args) == 2 {
			if db, ok := resp.ParseInt(args[1]); ok && db >= 0 && db <= 1<<31-1 {
				e.selectDB = int(db)
			}
		}
	case kindAuth:
		switch len(args) {
		case 2:
			e.authUser = "default"
		case 3:
			e.authUser = string(args[1]) // the user name; the password is never kept
		}
	case kindHello:
		if len(args) >= 2 && len(args[1]) == 1 && (args[1][0] == '2' || args[1][0] == '3') {
			e.helloProto = int(args[1][0] - '0')
		}
		for i := 2; i < len(args); i++ {
			switch {
			case equalFold(args[i], "auth") && i+2 < len(args):
				e.authUser = string(args[i+1])
				i += 2
			case equalFold(args[i], "setname") && i+1 < len(args):
				e.clientName, e.setsName = string(args[i+1]), true
				i++
			}
		}
	case kindClient:
		if len(args) < 2 {
			return
		}
		s.kick = true
		switch {
		case equalFold(args[1], "setname") && len(args) == 3:
			e.clientName, e.setsName = string(args[2]), true
		case equalFold(args[1], "reply") && len(args) == 3 && !s.tx.inMulti:
			// Whether it takes effect depends on the mode the session is
			// in when it runs, which only the reply side knows: see resolve.
			switch {
			case equalFold(args[2], "off"):
				e.replyMode = replyOff
			case equalFold(args[2], "skip"):
				e.replyMode = replySkip
			case equalFold(args[2], "on"):
				e.replyMode = replyOn
			}
		}
	case kindSubscribe, kindUnsubscribe:
		// How many replies depends on the protocol in force when the
		// command runs, which only the reply side knows; see resolve.
		e.subArgs = int32(len(args) - 1)
		s.kick = true
		if cmd.kind == kindSubscribe && s.tx.inMulti {
			// A subscription made by EXEC is confirmed inside EXEC's
			// reply, where the reply side does not count it: the session
			// keeps its connection, as for state the proxy does not follow.
			s.conns.sticky = true
		}
	}
}

// appendRewrite appends the header of a rewritten command: the new
// argument count and the prefix that replaces the name.
func appendRewrite(dst []byte, rw Rewrite, argc int) []byte {
	dst = resp.AppendArrayHeader(dst, argc-1+rw.PrefixArgs)
	return append(dst, rw.Prefix...)
}

func nameOf(cmd *command, name []byte) string {
	if cmd != nil {
		return cmd.name
	}
	return strings.ToLower(string(name))
}
