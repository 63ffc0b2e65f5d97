package proxy

import (
	"bytes"
	"errors"

	"github.com/exproxy/exproxy/proxy/resp"
)

// Transactions and the commands that change who a session is (AUTH,
// HELLO, RESET), in front of a Redis Cluster.
//
// A transaction runs on one node, on a connection of the session's own:
// the node of its WATCH, or else of its first command with keys. Until
// that command names the node, MULTI is held: the proxy answers +OK (and
// +QUEUED to keyless commands, which it keeps), then sends MULTI and the
// kept commands ahead of the keyed one, their replies dropped (as Envoy
// does). A command whose keys are on another node gets CROSSSLOT and
// fails the transaction: its EXEC is sent as DISCARD and answered
// EXECABORT, as Redis answers the EXEC of a transaction with a refused
// command.

// clusterTx is the read side's state of a transaction in front of a
// cluster.
type clusterTx struct {
	held   bool     // MULTI answered by the proxy, not sent yet
	cmds   [][]byte // MULTI and the keyless commands held with it, as sent
	failed bool     // a command was refused: EXEC aborts
}

var (
	errNestedMulti = []byte("-ERR MULTI calls can not be nested\r\n")
	errExecAbort   = []byte("-EXECABORT Transaction discarded because of previous errors.\r\n")
	queuedReply    = []byte("+QUEUED\r\n")
	discardCommand = []byte("*1\r\n$7\r\nDISCARD\r\n")
)

// txCommand handles MULTI, EXEC and DISCARD; !handled: route it as any
// command (on the transaction's connection).
func (s *session) txCommand(cmd *command, raw []byte, args [][]byte) (handled, alive bool) {
	cl := s.cl
	tx := &cl.tx
	switch cmd.kind {
	case kindMulti:
		switch {
		case s.tx.inMulti && tx.held:
			s.answerLocal(cmd, errNestedMulti)
			return true, true
		case s.tx.inMulti || s.conns.own != nil:
			// Redis refuses a nested MULTI; WATCH named the node.
			return false, true
		}
		s.answerLocal(cmd, okReply)
		s.tx.inMulti = true
		s.tx.queued = s.tx.queued[:0]
		*tx = clusterTx{held: true, cmds: [][]byte{bytes.Clone(raw)}}
		return true, true
	case kindExec:
		if !s.tx.inMulti {
			return false, true // Redis's "EXEC without MULTI"
		}
		if tx.failed {
			if !tx.held && s.conns.own != nil {
				c := s.conns.own
				dargs := [][]byte{[]byte("DISCARD")}
				s.routeOn(c, c.node, -1, s.srv.table.lookup(dargs[0]), discardCommand, dargs, true)
			}
			s.answerLocal(cmd, errExecAbort)
			s.tx.inMulti, s.tx.watching = false, false
			s.tx.queued = nil
			*tx = clusterTx{}
			return true, true
		}
		if tx.held {
			// MULTI ... EXEC without keys: on the home node.
			node, ok, alive := s.releaseTx(cmd, args, s.cl.st.home(s.rinfo.ID), -1)
			if !ok {
				return true, alive
			}
			*tx = clusterTx{}
			return true, s.routeTxOn(cmd, raw, args, node)
		}
		*tx = clusterTx{}
		return false, true
	case kindDiscard:
		if s.tx.inMulti && tx.held {
			s.answerLocal(cmd, okReply)
			s.tx.inMulti, s.tx.watching = false, false
			s.tx.queued = nil
			*tx = clusterTx{}
			return true, true
		}
		*tx = clusterTx{}
		return false, true
	}
	return false, true
}

// txRoute places a command sent inside MULTI. With MULTI held, a keyless
// command is held too (answered +QUEUED) when Redis would queue it, and
// a keyed one releases the transaction on its node; once it is on a
// node, keys of another node are refused. It returns the node the
// command goes to (0: as routing decides); held or !ok: it was answered.
func (s *session) txRoute(cmd *command, args [][]byte, node int32, slot int) (n int32, held, ok, alive bool) {
	tx := &s.cl.tx
	if tx.held {
		if slot < 0 && s.queues(args) {
			tx.cmds = append(tx.cmds, bytes.Clone(s.cl.rawOf(args)))
			s.answerLocal(cmd, queuedReply)
			return 0, true, true, true
		}
		if slot < 0 {
			node = s.cl.st.home(s.rinfo.ID)
		}
		n, ok, alive := s.releaseTx(cmd, args, node, slot)
		return n, false, ok, alive
	}
	if own := s.conns.own; own != nil && slot >= 0 && node != own.node {
		s.crossSlot(cmd)
		return 0, false, false, true
	}
	return node, false, true, true
}

// queues reports whether Redis would queue a keyless command inside
// MULTI rather than refuse it at once: it knows the command, and its
// number of arguments fits.
func (s *session) queues(args [][]byte) bool {
	t := s.srv.commands.Load()
	if t == nil {
		return false
	}
	cc := t.Lookup(args)
	if cc == nil {
		return false
	}
	n := len(args)
	if cc.Arity > 0 && n != cc.Arity || cc.Arity < 0 && n < -cc.Arity {
		return false
	}
	switch cc.Name {
	case "watch", "multi", "exec", "discard", "reset", "quit":
		return false
	}
	return true
}

// releaseTx moves the session to a connection of its own at node and
// sends the held MULTI and commands there, their replies dropped.
func (s *session) releaseTx(cmd *command, args [][]byte, node int32, slot int) (int32, bool, bool) {
	tx := &s.cl.tx
	c, node, ok, alive := s.ownAt(cmd, args[0], node, slot)
	if !ok {
		tx.failed = true
		return 0, false, alive
	}
	tx.held = false
	var p resp.CommandParser
	p.Limits = s.parser.Limits
	for _, raw := range tx.cmds {
		_, hargs, _, err := p.Parse(raw, nil)
		if err != nil || len(hargs) == 0 {
			continue
		}
		s.routeOn(c, node, -1, s.srv.table.lookup(hargs[0]), raw, hargs, true)
	}
	tx.cmds = nil
	return node, true, true
}

// routeTxOn routes a command onto the session's own connection at node.
func (s *session) routeTxOn(cmd *command, raw []byte, args [][]byte, node int32) bool {
	s.routeOn(s.conns.own, node, -1, cmd, raw, args, false)
	return true
}

// rawOf re-encodes args (the command being routed) for keeping.
func (cl *sessionCluster) rawOf(args [][]byte) []byte {
	b := resp.AppendArrayHeader(nil, len(args))
	for _, a := range args {
		b = resp.AppendBulk(b, a)
	}
	return b
}

// repoolCluster runs AUTH or HELLO on a shared connection of the pool it
// asks for at the home node; if Redis confirms it, the session's
// connections at every node become those of that key.
func (s *session) repoolCluster(cmd *command, raw []byte, args [][]byte) bool {
	cl := s.cl
	if s.conns.own != nil {
		if !s.send() || !s.waitIdle() {
			return false
		}
		if !s.canGiveBack() {
			// Connection state the proxy cannot move: it applies to the
			// session's own connection only.
			s.conns.sticky = true
			s.routeOn(s.conns.own, s.conns.own.node, -1, cmd, raw, args, false)
			return true
		}
		s.giveBack()
	}
	target, cred, ok := s.targetOf(cmd, args)
	if !ok {
		return s.routeCluster(cmd, raw, args, -1) // Redis refuses it, changing nothing
	}
	if !s.send() || !s.waitIdle() {
		return false
	}
	home := cl.st.home(s.rinfo.ID)
	ps := s.srv.pools
	var p *pool
	var c *upConn
	var err error
	s.mayBlock()
	for attempt := 0; attempt < 2; attempt++ {
		if p, err = ps.join(target.at(home), cred); err != nil {
			break
		}
		if c, err = ps.shared(p, s.rinfo.ID); err == nil {
			break
		}
		ps.leave(p)
		if !errors.Is(err, errRevoked) {
			break
		}
	}
	if err != nil {
		s.answerLocal(cmd, unreachableNode(s.srv, home, err))
		return true
	}
	s.mu.Lock()
	s.rs.confirmed = false
	s.mu.Unlock()
	s.routeOn(c, home, -1, cmd, raw, args, false)
	if !s.send() || !s.waitIdle() {
		ps.leave(p)
		return false
	}
	s.mu.Lock()
	confirmed := s.rs.confirmed
	s.mu.Unlock()
	if !confirmed {
		ps.leave(p)
		return true
	}
	cl.leaveAll()
	s.conns.key, s.conns.cred = target, cred
	s.conns.authed = target.user != ""
	nc := cl.nodeConns(home)
	nc.pool, nc.shared = p, c
	cl.setIdent()
	return true
}

// resetCluster runs RESET: on the session's own connection when it has
// one (which it then gives back), else on the home node's shared one;
// either way the session starts again as a new connection would.
func (s *session) resetCluster(cmd *command, raw []byte, args [][]byte) bool {
	cl := s.cl
	cl.tx = clusterTx{}
	if own := s.conns.own; own != nil {
		if !s.send() || !s.waitIdle() {
			return false
		}
		s.routeOn(own, own.node, -1, cmd, raw, args, false)
		if !s.send() || !s.waitIdle() {
			return false
		}
		s.sendMu.Lock()
		s.conns.own, s.conn = nil, nil
		s.sendMu.Unlock()
		own.setOrdered(false)
		s.srv.pools.release(own, anonymous.at(own.node))
		s.conns.sticky = false
		if s.conns.key != anonymous {
			cl.leaveAll()
			s.conns.key, s.conns.cred, s.conns.authed = anonymous, nil, false
			cl.setIdent()
		}
		return true
	}
	return s.repoolCluster(cmd, raw, args)
}
