package proxy

import (
	"math/rand/v2"

	"github.com/exproxy/exproxy/proxy/cluster"
	"github.com/exproxy/exproxy/proxy/resp"
)

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

// partDoneLocked keeps the reply of one part of a split or fanned-out
// command; once every part is in, their merge is the command's reply.
func (s *session) partDoneLocked(w *tagWaiter, data []byte) {
	f := w.fan
	if f.replies[w.part] == nil {
		f.left--
	}
	f.replies[w.part] = data
	if f.left > 0 {
		return
	}
	merged := f.merge(s.rs.info.Proto)
	f.replies = nil
	kind := byte('-')
	if len(merged) > 0 {
		kind = merged[0]
	}
	s.rs.ready = append(s.rs.ready, readyReply{seq: w.seq, data: merged, kind: kind})
}

// fanout is a command sent to several nodes as parts (a multi-key
// command split by slot, a whole-dataset command sent to every primary),
// whose replies merge into the one the client gets.
type fanout struct {
	how     mergeHow
	replies [][]byte // per part, once in
	left    int      // parts not yet in
	// MGET: for each part, the positions of its keys in the client's
	// command.
	keys  [][]int32
	nkeys int
	// SCAN: the index of the primary asked, and how many there are.
	scanIdx, scanN int
}

type mergeHow uint8

const (
	mergeSum           mergeHow = iota // integers added (DEL, EXISTS, DBSIZE, ...)
	mergeAllOK                         // one reply when all succeed, else the first error
	mergeOneOK                         // the first success, else the first error
	mergeMin                           // the least integer
	mergeMax                           // the greatest integer
	mergeAnd                           // integers, or arrays of them element-wise: logical AND
	mergeOr                            // logical OR
	mergeConcat                        // arrays joined (KEYS)
	mergeByKey                         // arrays placed by key position (MGET)
	mergeScan                          // one part: SCAN's cursor made the proxy's
	mergeRandom                        // a random non-null reply (RANDOMKEY)
	mergeFunctionList                  // libraries of every node, once each by name
	mergeFunctionStats                 // one node's engines, any node's running script
)

func (f *fanout) merge(proto int) []byte {
	parts := f.replies
	switch f.how {
	case mergeSum:
		return cluster.AggregateIntegers(parts, cluster.AggSum)
	case mergeMin:
		return cluster.AggregateIntegers(parts, cluster.AggMin)
	case mergeMax:
		return cluster.AggregateIntegers(parts, cluster.AggMax)
	case mergeAnd:
		return cluster.AggregateIntegers(parts, cluster.AggAnd)
	case mergeOr:
		return cluster.AggregateIntegers(parts, cluster.AggOr)
	case mergeAllOK:
		return cluster.AllSucceeded(parts)
	case mergeOneOK:
		return cluster.OneSucceeded(parts)
	case mergeConcat:
		return cluster.ConcatArrays(parts)
	case mergeByKey:
		return cluster.MergeByKey(parts, f.keys, f.nkeys)
	case mergeScan:
		return cluster.ScanReply(parts[0], f.scanIdx, f.scanN)
	case mergeRandom:
		return cluster.PickNonNull(parts, rand.IntN)
	case mergeFunctionList:
		return cluster.FunctionLibraries(parts)
	case mergeFunctionStats:
		return cluster.FunctionStats(parts)
	}
	return resp.AppendError(nil, "ERR exproxy: no merge for this command")
}
