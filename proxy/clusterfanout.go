package proxy

import (
	"strconv"

	"github.com/exproxy/exproxy/proxy/cluster"
	"github.com/exproxy/exproxy/proxy/resp"
)

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
	case "function|list":
		// No tips (Redis sends it to one node): the libraries of every
		// primary, once each, as one Redis holding them all would list.
		return mergeFunctionList, true
	case "function|stats":
		// response_policy:special: one node's engines, and the script
		// running on any node.
		return mergeFunctionStats, true
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
	fresh := freshFanOut(cmd, args)
	for i, node := range st.primaries {
		if fresh {
			if c := s.freshAt(node); c != nil {
				nodes[i], conns[i] = node, c
				continue
			}
		}
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

// freshFanOut reports whether a fanned-out command must reach every node
// at once, even one busy with a script: SCRIPT KILL and FUNCTION KILL
// (which one Redis runs on a connection of their own, placement.go), and
// FUNCTION STATS, whose point is to show the running script. A shared
// connection would queue them behind that script until it is retired.
func freshFanOut(cmd *command, args [][]byte) bool {
	if cmd == nil || len(args) < 2 {
		return false
	}
	return placeOf(cmd, args) == placeOwn ||
		cmd.name == "function" && equalFold(args[1], "stats")
}

// freshAt returns a connection to node for one command that must not
// wait behind anything: a ready one (set up for the session's key in the
// same write when it was ready for the anonymous key), dialled if there
// is none, owned by nobody — its replies go by their waiters like a
// shared connection's — and closed once it has answered (retired). nil:
// the node cannot be reached now; the caller takes the shared
// connection, which waits for a failover.
func (s *session) freshAt(node int32) *upConn {
	if own := s.conns.own; own != nil && own.isOrdered() {
		return nil // RESP2 subscribed: everything goes on that connection
	}
	key := s.conns.key.at(node)
	ps := s.srv.pools
	c, setup := ps.privateNow(key)
	if c == nil {
		s.mayBlock()
		var err error
		if c, setup, err = ps.private(key, s.conns.cred); err != nil {
			return nil
		}
	}
	// Before anything is queued: the reader, blocked until Redis
	// answers, then sees the flag with nothing owed and closes it.
	c.retired.Store(true)
	if setup {
		data, n := setupCommands(nil, key, s.conns.cred, !s.srv.authRequired.Load())
		o := s.cl.out(node, c)
		off := len(s.upbuf)
		s.upbuf = append(s.upbuf, data...)
		// Their replies are dropped: the setup is the session's own,
		// which its shared connections have passed already.
		for i := 0; i < n; i++ {
			sp := span{bi: int32(len(s.batch)), slot: -1, part: -1, wait: true, drop: true}
			if i == 0 {
				sp.off, sp.n = int32(off), int32(len(data))
			} else {
				sp.off = int32(off + len(data))
			}
			s.cl.outs[o].spans = append(s.cl.outs[o].spans, sp)
		}
	}
	return c
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
