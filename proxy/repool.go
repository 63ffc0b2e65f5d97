package proxy

import (
	"errors"

	"github.com/exproxy/exproxy/proxy/resp"
)

// repool runs a command that changes what Redis sees of a session on
// shared connections (AUTH, SELECT, HELLO, RESET): it runs on a
// connection of the pool it asks for — where Redis checks it, and where
// it changes nothing, the connection being in that state already — and
// if Redis confirms it, the session moves to that pool. A pool that
// cannot be set up (a wrong password, a database out of range) answers
// the command with Redis's own refusal.
func (s *session) repool(cmd *command, raw []byte, args [][]byte) bool {
	target, cred, ok := s.targetOf(cmd, args)
	if !ok {
		// Malformed: Redis refuses it wherever it runs, changing nothing.
		s.route(cmd, raw, args, len(args), false)
		return true
	}
	if !s.send() || !s.waitIdle() {
		return false
	}
	var p *pool
	var c *upConn
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if p, err = s.srv.pools.join(target, cred); err != nil {
			break
		}
		if c, err = s.srv.pools.shared(p, s.rinfo.ID); err == nil {
			break
		}
		s.srv.pools.leave(p)
		// A pool found revoked on the way: the next join makes a new
		// one, whose setup asks Redis about these credentials afresh.
		if !errors.Is(err, errRevoked) {
			break
		}
	}
	if err != nil {
		s.answerLocal(cmd, unreachableReply(s.srv, err))
		return true
	}
	s.sendMu.Lock()
	s.conn = c
	s.sendMu.Unlock()
	s.mu.Lock()
	s.rs.confirmed = false
	s.mu.Unlock()
	s.route(cmd, raw, args, len(args), false)
	if !s.send() || !s.waitIdle() {
		s.srv.pools.leave(p)
		return false
	}
	s.mu.Lock()
	confirmed := s.rs.confirmed
	s.mu.Unlock()
	cs := &s.conns
	if !confirmed {
		s.srv.pools.leave(p)
		s.sendMu.Lock()
		s.conn = nil
		s.sendMu.Unlock()
		return true
	}
	if cs.pool != nil {
		s.srv.pools.leave(cs.pool)
	}
	cs.pool, cs.key, cs.cred = p, target, cred
	cs.authed = target.user != ""
	return true
}

// targetOf is the key a repool command asks for; !ok when it is
// malformed, or asks for nothing (HELLO alone only reports).
func (s *session) targetOf(cmd *command, args [][]byte) (key poolKey, cred *credentials, ok bool) {
	key, cred = s.conns.key, s.conns.cred
	switch cmd.kind {
	case kindSelect:
		if len(args) != 2 {
			return key, cred, false
		}
		db, ok := resp.ParseInt(args[1])
		if !ok || db < 0 || db > 1<<31-1 {
			return key, cred, false
		}
		key.db = int32(db)
	case kindAuth:
		switch len(args) {
		case 2:
			cred = &credentials{user: "default", pass: string(args[1])}
		case 3:
			cred = &credentials{user: string(args[1]), pass: string(args[2]), named: true}
		default:
			return key, cred, false
		}
		key.user, key.cred = cred.user, credHash(cred.pass)
	case kindHello:
		if len(args) < 2 || len(args[1]) != 1 || (args[1][0] != '2' && args[1][0] != '3') {
			return key, cred, false
		}
		key.proto = args[1][0] - '0'
		for i := 2; i < len(args); i++ {
			if !equalFold(args[i], "auth") || i+2 >= len(args) {
				return key, cred, false
			}
			cred = &credentials{user: string(args[i+1]), pass: string(args[i+2]), named: true}
			key.user, key.cred = cred.user, credHash(cred.pass)
			i += 2
		}
	case kindReset:
		key, cred = anonymous, nil
	}
	return key, cred, true
}
