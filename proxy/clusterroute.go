package proxy

import (
	"sync/atomic"

	"github.com/exproxy/exproxy/proxy/cluster"
	"github.com/exproxy/exproxy/proxy/resp"
)

// Routing in front of a Redis Cluster. Each command goes to the primary
// that serves its keys' slot (hash tags included), found with the
// cluster's own key specifications (Table.Keys); a command without keys
// goes to the session's home node, or to every primary when it concerns
// the whole dataset; a multi-key command whose keys span slots is split
// per slot (MGET, MSET, DEL, UNLINK, EXISTS, TOUCH) or refused with the
// cluster's CROSSSLOT. docs/cluster.md lists what each kind of command
// does. The session keeps, per node, a pool of its key there and a
// shared connection of it; its own connection, when it has one, is on
// one node. A batch's commands are appended per connection
// (clusterOut) and sent together (sendCluster); replies come back in
// client order through clusterreply.go.

// sessionCluster is a session's routing state in front of a Redis
// Cluster; the read side's.
type sessionCluster struct {
	s    *session
	at   []int32 // sendCluster's: where each waiter's bytes start in a connection's data
	view *clusterView
	st   *clusterState // the slot map the session routed its last command by
	// nodes are the session's pool and shared connection per node
	// number.
	nodes []nodeConns
	keys  []int
	outs  []clusterOut // the connections of the batch being built; nouts used
	nouts int
	// arena keeps the bytes of commands sent, for a resend after a
	// redirection; append-only, so the slices waiters hold stay valid,
	// and a new one is started when it is full.
	arena []byte
	// ident is the session's key and credentials, for resends from a
	// reader's goroutine.
	ident atomic.Pointer[identity]
	tx    clusterTx
}

// identity is what Redis must see of a session (poolKey without a node).
type identity struct {
	key  poolKey
	cred *credentials
}

type nodeConns struct {
	pool   *pool
	shared *upConn
	up     streamPos // where the session's latest command runs on shared (follow.go)
}

func newSessionCluster(s *session) *sessionCluster {
	cl := &sessionCluster{s: s, view: s.srv.cluster}
	cl.ident.Store(&identity{key: anonymous})
	return cl
}

// setIdent records the session's key and credentials.
func (cl *sessionCluster) setIdent() {
	cl.ident.Store(&identity{key: cl.s.conns.key, cred: cl.s.conns.cred})
}

// state returns the slot map to route by; it waits (off the event loop)
// for the first one.
func (cl *sessionCluster) state() *clusterState {
	if st := cl.view.state.Load(); st != nil && cl.s.srv.commands.Load() != nil {
		return st
	}
	cl.s.mayBlock()
	return cl.view.current()
}

func (cl *sessionCluster) nodeConns(n int32) *nodeConns {
	for int(n) >= len(cl.nodes) {
		cl.nodes = append(cl.nodes, nodeConns{})
	}
	return &cl.nodes[n]
}

// leaveAll leaves the session's pools at every node (its key changed, or
// it ended).
func (cl *sessionCluster) leaveAll() {
	for i := range cl.nodes {
		if p := cl.nodes[i].pool; p != nil {
			cl.s.srv.pools.leave(p)
		}
		cl.nodes[i] = nodeConns{}
	}
}

// dispatchCluster is dispatch in front of a Redis Cluster.
func (s *session) dispatchCluster(cmd *command, raw []byte, args [][]byte) bool {
	cl := s.cl
	st := cl.state()
	if st == nil {
		s.answerLocal(cmd, s.srv.cluster.noMapReply())
		return true
	}
	if st != cl.st {
		// The slot map changed: what was routed by the old one is
		// answered first, so that no command overtakes an earlier one
		// sent to its slot's old node (and redirected from there).
		if cl.st != nil && (len(s.batch) > 0 || s.q.pending() > 0) {
			if !s.send() || !s.waitIdle() {
				return false
			}
		}
		cl.st = st
	}
	if cmd != nil && cmd.kind != kindPlain || cmd != nil && cmd.own == placeOwnForever {
		if handled, alive := s.clusterSpecial(cmd, raw, args); handled {
			return alive
		}
	}
	cc, keys := s.srv.keysOf(cmd, args, cl.keys[:0])
	cl.keys = keys
	slot, same := cluster.SameSlot(args, keys)
	if !same {
		if !s.tx.inMulti && splittable(cmd, cc) {
			return s.split(cmd, cc, args)
		}
		s.crossSlot(cmd)
		return true
	}
	if slot < 0 && !s.tx.inMulti && (cmd == nil || cmd.rewriter == nil) && cc != nil {
		if how, ok := fanOutOf(cc); ok {
			return s.fanOut(cmd, raw, args, how)
		}
		if cc.Name == "scan" {
			return s.scan(cmd, raw, args)
		}
	}
	return s.routeCluster(cmd, raw, args, slot)
}

// keysOf appends to dst the positions of a command's keys, from the
// cluster's command table, and returns its row there.
func (s *Server) keysOf(cmd *command, args [][]byte, dst []int) (*cluster.Command, []int) {
	var cc *cluster.Command
	if t := s.commands.Load(); t != nil {
		if cc = t.Lookup(args); cc != nil {
			dst = cc.Keys(args, dst)
		}
	}
	if cc == nil && cmd != nil && cmd.rewriter != nil && len(args) > 1 {
		// An extension's command (EXSET ...): Redis does not know it;
		// every one of them names one key, first.
		dst = append(dst, 1)
	}
	return cc, dst
}

// clusterSpecial handles the commands whose meaning in front of a
// cluster differs from one Redis's.
func (s *session) clusterSpecial(cmd *command, raw []byte, args [][]byte) (handled, alive bool) {
	switch cmd.kind {
	case kindQuit:
		// Redis answers +OK and closes; the proxy's connections are
		// shared or its own per node, so it answers itself.
		s.ignoreRest = true
		s.srv.stats.commands.Add(1)
		s.batch = append(s.batch, entry{cmd: cmd, local: okReply, closeAfterReply: true, replies: 1})
		s.hasLocal = true
		return true, true
	case kindMonitor, kindSync:
		s.answerLocal(cmd, notInCluster(cmd.name))
		return true, true
	case kindClient:
		if len(args) == 3 && equalFold(args[1], "reply") && (equalFold(args[2], "off") || equalFold(args[2], "skip")) {
			s.answerLocal(cmd, notInCluster("client reply off|skip"))
			return true, true
		}
	case kindHello:
		for _, a := range args[min(2, len(args)):] {
			if equalFold(a, "setname") {
				s.answerLocal(cmd, notInCluster("hello ... setname (use client setname)"))
				return true, true
			}
		}
		return true, s.repoolCluster(cmd, raw, args)
	case kindAuth:
		return true, s.repoolCluster(cmd, raw, args)
	case kindReset:
		return true, s.resetCluster(cmd, raw, args)
	case kindMulti, kindExec, kindDiscard:
		return s.txCommand(cmd, raw, args)
	}
	switch cmd.name {
	case "readonly", "readwrite", "asking":
		// A cluster client's connection-level switches: the proxy reads
		// from primaries and follows ASK itself.
		s.answerLocal(cmd, okReply)
		return true, true
	}
	return false, true
}

func notInCluster(name string) []byte {
	return resp.AppendError(nil, "ERR exproxy: "+name+" is not supported in front of a Redis Cluster")
}

// noMapReply answers a command when the cluster's slot map could not be
// read within FailoverWait.
func (v *clusterView) noMapReply() []byte {
	msg := errNoSlotMap.Error()
	if e := v.lastErr.Load(); e != nil {
		msg = *e
	}
	return resp.AppendError(nil, "CLUSTERDOWN exproxy: "+msg)
}

// crossSlot refuses a command whose keys span slots, as a cluster node
// does; inside MULTI it also fails the transaction, whose EXEC then gets
// EXECABORT, as Redis flags a transaction whose command it refused.
func (s *session) crossSlot(cmd *command) {
	if s.tx.inMulti {
		s.cl.tx.failed = true
	}
	s.answerLocal(cmd, []byte(cluster.ErrCrossSlot))
}

// routeCluster sends a single-slot or keyless command to its node.
func (s *session) routeCluster(cmd *command, raw []byte, args [][]byte, slot int) bool {
	cl := s.cl
	st := cl.st
	p := placeOf(cmd, args)
	if cmd != nil && cmd.kind == kindSelect {
		// Database 0 is the only one: Redis answers +OK for it and its
		// own error for any other, changing nothing, on any connection.
		p = placeShared
	}
	node := int32(0)
	if slot >= 0 {
		if node = st.slotNode[slot]; node == 0 {
			s.mayBlock()
			st2, ok := cl.view.await(cl.view.opts.FailoverWait, func(st *clusterState) bool { return st.slotNode[slot] != 0 })
			if !ok {
				s.answerLocal(cmd, []byte(cluster.ErrSlotNotServed))
				return true
			}
			node = st2.slotNode[slot]
		}
	}
	if s.tx.inMulti {
		n, held, ok, alive := s.txRoute(cmd, args, node, slot)
		if !ok || held {
			return alive
		}
		node = n
	}
	if node == 0 {
		node = s.keylessNode()
	}
	c, node, ok, alive := s.clusterConnFor(cmd, args, node, slot, p)
	if !ok {
		return alive
	}
	if cmd != nil && (cmd.kind == kindSubscribe || cmd.kind == kindUnsubscribe) && s.conns.key.proto == 2 && !c.isOrdered() {
		// RESP2 confirmations and messages pair with nothing the proxy
		// can count ahead: the connection pairs replies in order, as on
		// one Redis, and carries every command of the session while the
		// subscription lasts.
		if len(s.batch) > 0 || s.q.pending() > 0 {
			if !s.send() || !s.waitIdle() {
				return false
			}
		}
		c.setOrdered(true)
	}
	s.routeOn(c, node, slot, cmd, raw, args, false)
	return true
}

// keylessNode is where a command without keys goes: the session's own
// connection's node, else its home node.
func (s *session) keylessNode() int32 {
	if own := s.conns.own; own != nil {
		return own.node
	}
	return s.cl.st.home(s.rinfo.ID)
}

// routeOn routes one command onto c (at node) as route does, its bytes
// and entry recorded for the connection.
func (s *session) routeOn(c *upConn, node int32, slot int, cmd *command, raw []byte, args [][]byte, dropReply bool) {
	cl := s.cl
	o := cl.out(node, c)
	off := len(s.upbuf)
	s.route(cmd, raw, args, len(args), false)
	e := &s.batch[len(s.batch)-1]
	if e.local != nil {
		return
	}
	e.dropReply = dropReply
	if slot < 0 {
		// Keyless: a slot of its node, so that a retry finds the node
		// that took over from it.
		slot = cl.st.slotOf(node)
	}
	cl.outs[o].spans = append(cl.outs[o].spans, span{
		bi: int32(len(s.batch) - 1), off: int32(off), n: int32(len(s.upbuf) - off),
		slot: int32(slot), part: -1, wait: !c.isOrdered() && !s.pushAnswered(cmd, args), tx: s.tx.inMulti,
	})
}

// pushAnswered reports whether a command gets no regular reply: a RESP3
// (un)subscribe, confirmed by pushes.
func (s *session) pushAnswered(cmd *command, args [][]byte) bool {
	return cmd != nil && s.conns.key.proto == 3 &&
		(cmd.kind == kindSubscribe && len(args) > 1 || cmd.kind == kindUnsubscribe)
}

// target is the node a slot (or, with none, a session's keyless
// commands) goes to under st.
func target(st *clusterState, slot int, id uint64) int32 {
	if slot >= 0 {
		return st.slotNode[slot]
	}
	return st.home(id)
}
