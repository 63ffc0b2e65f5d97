package proxy

import (
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

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
}

// clusterOut is what the batch sends on one connection.
type clusterOut struct {
	node  int32
	c     *upConn
	spans []span
	ws    []tagWaiter
}

// span is one command (or part of one) in the batch for a connection:
// its bytes upbuf[off:off+n], the batch entry it answers, and what its
// tagWaiter must say.
type span struct {
	bi, off, n int32
	slot       int32
	fan        *fanout
	part       int32
	wait       bool // a reply pairs with it (not a RESP3 subscribe, nor on an ordered connection)
	tx         bool
}

const arenaChunk = 16 << 10

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

// out returns the index of c's clusterOut in the batch.
func (cl *sessionCluster) out(node int32, c *upConn) int {
	for i := 0; i < cl.nouts; i++ {
		if cl.outs[i].c == c {
			return i
		}
	}
	if cl.nouts == len(cl.outs) {
		cl.outs = append(cl.outs, clusterOut{})
	}
	o := &cl.outs[cl.nouts]
	o.node, o.c = node, c
	cl.nouts++
	return cl.nouts - 1
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

// target is the node a slot (or, with none, a session's keyless
// commands) goes to under st.
func target(st *clusterState, slot int, id uint64) int32 {
	if slot >= 0 {
		return st.slotNode[slot]
	}
	return st.home(id)
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

// splittable reports whether a multi-key command whose keys span slots
// is split per slot, its replies merged as one Redis would answer: the
// cluster's multi_shard commands whose replies add up (DEL, UNLINK,
// EXISTS, TOUCH), all succeed (MSET) or are one element per key (MGET).
// MSETNX is not: its parts could not be all-or-nothing.
func splittable(cmd *command, cc *cluster.Command) bool {
	if cc == nil || cc.Request != cluster.RequestMultiShard || cmd != nil && cmd.rewriter != nil {
		return false
	}
	switch cc.Response {
	case cluster.ResponseAggSum, cluster.ResponseAllSucceeded:
		return true
	case cluster.ResponseDefault:
		return cc.Flags&cluster.FlagReadOnly != 0 // MGET: an element per key
	}
	return false
}

// fanOutOf says how a keyless command that concerns the whole dataset is
// sent to every primary and how the replies merge, from the cluster's
// request and response policy tips; false: it goes to one node.
func fanOutOf(cc *cluster.Command) (mergeHow, bool) {
	switch cc.Name {
	case "ping", "wait", "waitaof":
		// The cluster's tips send these everywhere; a client of one
		// Redis means the one it is talking to.
		return 0, false
	case "keys":
		return mergeConcat, true
	case "randomkey":
		return mergeRandom, true
	}
	if cc.Request != cluster.RequestAllShards && cc.Request != cluster.RequestAllNodes {
		return 0, false
	}
	switch cc.Response {
	case cluster.ResponseAggSum:
		return mergeSum, true
	case cluster.ResponseAggMin:
		return mergeMin, true
	case cluster.ResponseAggMax:
		return mergeMax, true
	case cluster.ResponseAggLogicalAnd:
		return mergeAnd, true
	case cluster.ResponseAggLogicalOr:
		return mergeOr, true
	case cluster.ResponseAllSucceeded:
		return mergeAllOK, true
	case cluster.ResponseOneSucceeded:
		return mergeOneOK, true
	}
	// special (INFO, MEMORY STATS, ...) or none: one node's answer.
	return 0, false
}

// split sends a multi-key command as one command per slot, each with the
// arguments of its keys, and merges their replies.
func (s *session) split(cmd *command, cc *cluster.Command, args [][]byte) bool {
	cl := s.cl
	st := cl.st
	keys := cl.keys
	type part struct {
		slot int
		args []int   // indexes in args
		keys []int32 // positions among the command's keys
	}
	var parts []part
	for ki, k := range keys {
		end := len(args)
		if ki+1 < len(keys) {
			end = keys[ki+1]
		}
		sl := cluster.Slot(args[k])
		pi := 0
		for pi < len(parts) && parts[pi].slot != sl {
			pi++
		}
		if pi == len(parts) {
			parts = append(parts, part{slot: sl})
		}
		for a := k; a < end; a++ {
			parts[pi].args = append(parts[pi].args, a)
		}
		parts[pi].keys = append(parts[pi].keys, int32(ki))
	}
	how := mergeSum
	switch cc.Response {
	case cluster.ResponseAllSucceeded:
		how = mergeAllOK
	case cluster.ResponseDefault:
		how = mergeByKey
	}
	f := &fanout{how: how, replies: make([][]byte, len(parts)), left: len(parts), nkeys: len(keys)}
	if how == mergeByKey {
		f.keys = make([][]int32, len(parts))
		for i := range parts {
			f.keys[i] = parts[i].keys
		}
	}
	// The nodes first: a wait for a failover must come before the entry.
	nodes := make([]int32, len(parts))
	conns := make([]*upConn, len(parts))
	for i := range parts {
		node := st.slotNode[parts[i].slot]
		if node == 0 {
			s.answerLocal(cmd, []byte(cluster.ErrSlotNotServed))
			return true
		}
		c, n, ok, alive := s.clusterConnFor(cmd, args, node, parts[i].slot, placeShared)
		if !ok {
			return alive
		}
		nodes[i], conns[i] = n, c
	}
	s.routeParts(cmd, args, f, func(i int) {
		s.upbuf = resp.AppendArrayHeader(s.upbuf, 1+len(parts[i].args))
		s.upbuf = resp.AppendBulk(s.upbuf, args[0])
		for _, a := range parts[i].args {
			s.upbuf = resp.AppendBulk(s.upbuf, args[a])
		}
	}, nodes, conns, func(i int) int { return parts[i].slot })
	return true
}

// routeParts adds the entry of a command sent as parts, and the parts:
// appendPart(i) appends part i's bytes to upbuf.
func (s *session) routeParts(cmd *command, args [][]byte, f *fanout, appendPart func(i int), nodes []int32, conns []*upConn, slotOf func(i int) int) {
	cl := s.cl
	// The entry as route makes it (observers, write watchers), without
	// the command's bytes: the parts carry them.
	keep := len(s.upbuf)
	s.route(cmd, nil, args, len(args), true)
	s.upbuf = s.upbuf[:keep]
	bi := int32(len(s.batch) - 1)
	for i := range conns {
		o := cl.out(nodes[i], conns[i])
		off := len(s.upbuf)
		appendPart(i)
		cl.outs[o].spans = append(cl.outs[o].spans, span{
			bi: bi, off: int32(off), n: int32(len(s.upbuf) - off), slot: int32(slotOf(i)),
			fan: f, part: int32(i), wait: true,
		})
	}
}

// fanOut sends a keyless command to every primary and merges the
// replies.
func (s *session) fanOut(cmd *command, raw []byte, args [][]byte, how mergeHow) bool {
	st := s.cl.st
	n := len(st.primaries)
	if n == 0 {
		s.answerLocal(cmd, []byte(cluster.ErrClusterDown))
		return true
	}
	nodes := make([]int32, n)
	conns := make([]*upConn, n)
	for i, node := range st.primaries {
		c, nd, ok, alive := s.clusterConnFor(cmd, args, node, -1, placeShared)
		if !ok {
			return alive
		}
		nodes[i], conns[i] = nd, c
	}
	f := &fanout{how: how, replies: make([][]byte, n), left: n}
	// Each part carries a slot of its primary, so that a retry finds
	// the node that took over from it.
	s.routeParts(cmd, args, f, func(int) { s.upbuf = append(s.upbuf, raw...) }, nodes, conns, func(i int) int { return st.firstSlot[i] })
	return true
}

// scan runs SCAN on one primary at a time: the cursor the client sees
// carries which primary (cluster.ScanCursor), so a walk from 0 to 0
// visits every primary's keys in turn.
func (s *session) scan(cmd *command, raw []byte, args [][]byte) bool {
	st := s.cl.st
	if len(args) < 2 {
		return s.routeCluster(cmd, raw, args, -1) // Redis's arity error
	}
	cur, err := strconv.ParseUint(string(args[1]), 10, 64)
	if err != nil {
		return s.routeCluster(cmd, raw, args, -1) // Redis's "invalid cursor"
	}
	idx, nodeCur := cluster.ScanCursor(cur)
	n := len(st.primaries)
	if idx >= n {
		// A cursor of a walk over more primaries than there are now:
		// that walk is over.
		s.answerLocal(cmd, []byte("*2\r\n$1\r\n0\r\n*0\r\n"))
		return true
	}
	c, node, ok, alive := s.clusterConnFor(cmd, args, st.primaries[idx], -1, placeShared)
	if !ok {
		return alive
	}
	f := &fanout{how: mergeScan, replies: make([][]byte, 1), left: 1, scanIdx: idx, scanN: n}
	s.routeParts(cmd, args, f, func(int) {
		s.upbuf = resp.AppendArrayHeader(s.upbuf, len(args))
		s.upbuf = resp.AppendBulk(s.upbuf, args[0])
		s.upbuf = resp.AppendBulkString(s.upbuf, strconv.FormatUint(nodeCur, 10))
		for _, a := range args[2:] {
			s.upbuf = resp.AppendBulk(s.upbuf, a)
		}
	}, []int32{node}, []*upConn{c}, func(int) int { return st.firstSlot[idx] })
	return true
}

// sendCluster is send in front of a Redis Cluster: the batch's entries
// go onto the session's queue in client order, then each connection gets
// its commands' bytes and one tagWaiter per reply.
func (s *session) sendCluster() bool {
	cl := s.cl
	s.batchFailed = false
	if s.loop != nil && s.q.full() {
		s.mayBlock()
	}
	s.q.waitSpace()
	s.sendMu.Lock()
	if (s.paused || s.holds > 0) && s.loop != nil {
		s.sendMu.Unlock()
		s.mayBlock()
		s.sendMu.Lock()
	}
	for (s.paused || s.holds > 0) && !s.q.isClosed() {
		s.resumed.Wait()
	}
	seq0, ok := s.q.pushSeq(s.batch)
	var failed []tagWaiter
	revoked := false
	if ok {
		total := 0
		for i := 0; i < cl.nouts; i++ {
			for _, sp := range cl.outs[i].spans {
				total += int(sp.n)
			}
		}
		if cap(cl.arena)-len(cl.arena) < total {
			cl.arena = make([]byte, 0, max(arenaChunk, total))
		}
		for i := 0; i < cl.nouts; i++ {
			o := &cl.outs[i]
			start := len(cl.arena)
			for _, sp := range o.spans {
				a := len(cl.arena)
				cl.arena = append(cl.arena, s.upbuf[sp.off:sp.off+sp.n]...)
				if !sp.wait {
					continue
				}
				o.ws = append(o.ws, tagWaiter{
					s: s, seq: seq0 + uint64(sp.bi), data: cl.arena[a:len(cl.arena):len(cl.arena)],
					fan: sp.fan, part: sp.part, slot: sp.slot, node: o.node, tx: sp.tx,
				})
			}
			data := cl.arena[start:len(cl.arena):len(cl.arena)]
			err := o.c.queueTagged(o.ws, data)
			if err == errConnDead && o.c != s.conns.own {
				// Lost since it was chosen: once more on a new one.
				cl.nodeConns(o.node).shared = nil
				var c *upConn
				if c, err = s.clusterShared(o.node); err == nil {
					o.c = c
					err = c.queueTagged(o.ws, data)
				}
			}
			if nd := s.srv.clusterNode(o.node); nd != nil {
				nd.commands.Add(int64(len(o.spans)))
			}
			switch {
			case err == nil && s.loop != nil:
				s.loop.markDirty(o.c)
			case err == nil:
				o.c.flush()
			case errors.Is(err, errRevoked) || errors.Is(err, ErrServerClosed):
				revoked = true
			case o.c == s.conns.own:
				// A connection of its own that is gone: its reader
				// closes the session.
			default:
				// The node went away since it was chosen: each command
				// waits for the cluster to fail over, as at routing.
				failed = append(failed, o.ws...)
			}
		}
	}
	s.sendMu.Unlock()
	for i := 0; i < cl.nouts; i++ {
		o := &cl.outs[i]
		clear(o.ws)
		o.ws, o.spans, o.c = o.ws[:0], o.spans[:0], nil
	}
	cl.nouts = 0
	s.batch = s.batch[:0]
	if cap(s.upbuf) > steadyBuf {
		s.upbuf = nil
	} else {
		s.upbuf = s.upbuf[:0]
	}
	for _, w := range failed {
		s.hold()
		go func() {
			defer s.unhold()
			s.resendSlow(w, false)
		}()
	}
	if s.hasLocal || s.kick {
		s.hasLocal, s.kick = false, false
		s.emitIfIdle()
	}
	if revoked {
		s.close()
	}
	return ok && !revoked
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
