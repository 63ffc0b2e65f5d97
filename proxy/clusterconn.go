package proxy

import (
	"errors"
	"time"

	"github.com/exproxy/exproxy/proxy/cluster"
	"github.com/exproxy/exproxy/proxy/resp"
	"go.uber.org/zap"
)

func (c *upConn) isOrdered() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ordered
}

func (c *upConn) setOrdered(v bool) {
	c.mu.Lock()
	c.ordered = v
	c.mu.Unlock()
}

// clusterConnFor returns the connection a command for node runs on, as
// its placement says: the session's own there, a new own one (after what
// is in flight is answered), or the session's shared one there. When the
// node cannot be reached it waits up to FailoverWait for the cluster to
// name another; the node may change. !ok: the command was answered
// (!alive: the session ends).
func (s *session) clusterConnFor(cmd *command, args [][]byte, node int32, slot int, p placement) (c *upConn, n int32, ok, alive bool) {
	cs := &s.conns
	if own := cs.own; own != nil && own.node != node {
		if p == placeShared && !s.tx.inMulti && !own.isOrdered() {
			return s.sharedAt(cmd, node, slot)
		}
		if !s.send() || !s.waitIdle() {
			return nil, 0, false, false
		}
		s.mu.Lock()
		subscribed := s.rs.subscribed()
		s.mu.Unlock()
		if own.isOrdered() && !subscribed {
			own.setOrdered(false)
		}
		switch {
		case p == placeShared && !s.tx.inMulti && !own.isOrdered():
			return s.sharedAt(cmd, node, slot)
		case s.canGiveBack():
			s.giveBack()
		case own.isOrdered():
			s.answerLocal(cmd, pubsubContextReply(cmd, args))
			return nil, 0, false, true
		default:
			// WATCH on one node, a blocking command or WATCH on another:
			// one connection of its own at a time.
			s.answerLocal(cmd, []byte(cluster.ErrCrossSlot))
			return nil, 0, false, true
		}
	}
	if own := cs.own; own != nil {
		if p == placeOwnForever {
			cs.sticky = true
		}
		return own, node, true, true
	}
	if p == placeOwn || p == placeOwnForever {
		c, node, ok, alive = s.ownAt(cmd, args[0], node, slot)
		if ok {
			cs.sticky = p == placeOwnForever
		}
		return c, node, ok, alive
	}
	return s.sharedAt(cmd, node, slot)
}

// pubsubContextReply is Redis's refusal of a command in RESP2
// subscribed mode.
func pubsubContextReply(cmd *command, args [][]byte) []byte {
	if cmd != nil && cmd.kind == kindSubscribe {
		// A shard channel of another node than the subscriptions'.
		return []byte(cluster.ErrCrossSlot)
	}
	return resp.AppendError(nil, "ERR Can't execute '"+nameOf(cmd, args[0])+
		"': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
}

// sharedAt returns the session's shared connection at node, waiting for
// a failover while the node cannot be reached.
func (s *session) sharedAt(cmd *command, node int32, slot int) (*upConn, int32, bool, bool) {
	c, err := s.clusterShared(node)
	if err != nil && !errors.Is(err, errRevoked) && !errors.Is(err, ErrServerClosed) {
		node, err = s.failover(node, slot, func(n int32) error {
			var e error
			c, e = s.clusterShared(n)
			return e
		})
	}
	if err != nil {
		if errors.Is(err, errRevoked) || errors.Is(err, ErrServerClosed) {
			s.close()
			return nil, 0, false, false
		}
		s.answerLocal(cmd, unreachableNode(s.srv, node, err))
		return nil, 0, false, true
	}
	return c, node, true, true
}

// failover waits, up to FailoverWait, for node (unreachable: try failed)
// to be replaced as the primary of slot (or as the home node), trying
// the node the slot map names meanwhile. It returns the node that try
// succeeded on, or the last error.
func (s *session) failover(node int32, slot int, try func(int32) error) (int32, error) {
	v := s.srv.cluster
	s.mayBlock()
	deadline := time.Now().Add(v.opts.FailoverWait)
	err := error(nil)
	for {
		v.kick()
		left := time.Until(deadline)
		if left <= 0 {
			return node, err
		}
		st, _ := v.await(min(left, 200*time.Millisecond), func(st *clusterState) bool {
			return target(st, slot, s.rinfo.ID) != node
		})
		if st == nil {
			continue
		}
		if n := target(st, slot, s.rinfo.ID); n != 0 {
			node = n
		}
		if err = try(node); err == nil {
			return node, nil
		}
		if errors.Is(err, errRevoked) || errors.Is(err, ErrServerClosed) {
			return node, err
		}
	}
}

// clusterShared returns the session's shared connection at node,
// joining the pool of its key there first.
func (s *session) clusterShared(node int32) (*upConn, error) {
	nc := s.cl.nodeConns(node)
	if c := nc.shared; c != nil && !(c.retired.Load() && s.q.pending() == 0) {
		return c, nil
	}
	nc.shared = nil
	ps := s.srv.pools
	key := s.conns.key.at(node)
	if nc.pool != nil && (nc.pool.key != key || nc.pool.revoked) {
		ps.leave(nc.pool)
		nc.pool = nil
	}
	if nc.pool == nil {
		if nc.pool = ps.existing(key); nc.pool == nil {
			s.mayBlock() // the pool's first connection is dialled
			p, err := ps.join(key, s.conns.cred)
			if err != nil {
				return nil, err
			}
			nc.pool = p
		}
	}
	c := ps.sharedNow(nc.pool, s.rinfo.ID)
	if c == nil {
		s.mayBlock()
		var err error
		if c, err = ps.shared(nc.pool, s.rinfo.ID); err != nil {
			return nil, err
		}
	}
	nc.shared = c
	return c, nil
}

// ownAt moves the session to a connection of its own at node, after
// every reply it awaits is in.
func (s *session) ownAt(cmd *command, name []byte, node int32, slot int) (*upConn, int32, bool, bool) {
	if !s.send() || !s.waitIdle() {
		return nil, 0, false, false
	}
	ps := s.srv.pools
	var c *upConn
	var setup bool
	take := func(n int32) error {
		key := s.conns.key.at(n)
		if c, setup = ps.privateNow(key); c != nil {
			return nil
		}
		s.mayBlock()
		var err error
		c, setup, err = ps.private(key, s.conns.cred)
		return err
	}
	err := take(node)
	if err != nil {
		node, err = s.failover(node, slot, take)
	}
	if err != nil {
		s.answerLocal(cmd, unreachableNode(s.srv, node, err))
		return nil, 0, false, true
	}
	c.setOwner(s)
	if setup {
		data, n := setupCommands(nil, s.conns.key, s.conns.cred, !s.srv.authRequired.Load())
		o := s.cl.out(node, c)
		off := len(s.upbuf)
		s.upbuf = append(s.upbuf, data...)
		for i := 0; i < n; i++ {
			s.batch = append(s.batch, entry{internal: true, replies: 1})
		}
		// One span for the setup commands; each needs its waiter.
		for i := 0; i < n; i++ {
			sp := span{bi: int32(len(s.batch) - n + i), slot: -1, part: -1, wait: true}
			if i == 0 {
				sp.off, sp.n = int32(off), int32(len(data))
			} else {
				sp.off = int32(off + len(data))
			}
			s.cl.outs[o].spans = append(s.cl.outs[o].spans, sp)
		}
	}
	s.sendMu.Lock()
	s.conns.own, s.conn = c, c
	s.sendMu.Unlock()
	s.srv.stats.pinned.Add(1)
	s.log.Debug("session takes an upstream connection of its own", zap.ByteString("command", name),
		zap.String("node", s.srv.cluster.addr(node)))
	return c, node, true, true
}

// unreachableNode answers a command whose node cannot be reached. As for
// one Redis (unreachableReply), a node that refused to set a connection
// up answers with its own words.
func unreachableNode(srv *Server, node int32, err error) []byte {
	var ref *refusal
	if errors.As(err, &ref) {
		return ref.reply
	}
	addr := srv.cluster.addr(node)
	if addr == "" {
		addr = srv.opts.Upstream.String()
	}
	return resp.AppendError(nil, "ERR exproxy: upstream "+addr+" unreachable: "+err.Error())
}

// streamOwnCluster puts the session on a connection of its own at the
// node of a command too large to buffer (by its first argument, the
// first key of every command that has keys), with nothing else in
// flight, pairing replies in order there while it streams through.
func (s *session) streamOwnCluster(cmd *command, args [][]byte) (ok, alive bool) {
	cl := s.cl
	if !s.send() || !s.waitIdle() {
		return false, false
	}
	st := cl.state()
	if st == nil {
		s.answerLocal(cmd, s.srv.cluster.noMapReply())
		return false, s.send()
	}
	cl.st = st
	slot := -1
	if t := s.srv.commands.Load(); t != nil && len(args) > 1 {
		if cc := t.Lookup(args); cc != nil && cc.HasKeys() || cc == nil && cmd != nil && cmd.rewriter != nil {
			slot = cluster.Slot(args[1])
		}
	}
	node := int32(0)
	if slot >= 0 {
		node = st.slotNode[slot]
	}
	if node == 0 {
		node = s.keylessNode()
	}
	name := []byte("(a command too large to buffer)")
	if own := s.conns.own; own != nil && own.node != node {
		if !s.canGiveBack() {
			s.answerLocal(cmd, []byte(cluster.ErrCrossSlot))
			return false, s.send()
		}
		s.giveBack()
	}
	if s.conns.own == nil {
		if _, _, ok, alive := s.ownAt(cmd, name, node, slot); !ok {
			return false, alive && s.send()
		}
	}
	s.conns.own.setOrdered(true)
	for i := 0; i < cl.nouts; i++ {
		cl.outs[i].spans, cl.outs[i].c = cl.outs[i].spans[:0], nil
	}
	cl.nouts = 0
	return true, true
}
