package proxy

import (
	"context"

	"github.com/exproxy/exproxy/proxy/cluster"
	"github.com/exproxy/exproxy/proxy/resp"
	"go.uber.org/zap"
)

// resendCluster is maybeResend in front of a Redis Cluster: the library
// is loaded again on each node that failed a command (NodeReloader), then
// the commands go, on a goroutine of their own, to their slots' nodes.
// mu is held.
func (r *replySide) resendCluster(failed []entry, nodes []int32) bool {
	s := r.s
	v := s.srv.cluster
	ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
	var err error
	reloaded := map[int32]bool{}
	for i := range failed {
		n := nodes[i]
		if reloaded[n] {
			continue
		}
		reloaded[n] = true
		if nr, ok := failed[i].rw.(NodeReloader); ok && n != 0 {
			err = nr.ReloadNode(ctx, v.addr(n))
		} else {
			err = failed[i].rw.Reload(ctx)
		}
		if err != nil {
			break
		}
	}
	cancel()
	if err != nil {
		s.log.Warn("reload for resend failed", zap.Error(err))
		msg := resp.AppendError(nil, "ERR exproxy: "+err.Error())
		for _, f := range failed {
			f.slot.data, f.slot.ready = msg, true
		}
		r.releaseSlots()
		s.resume()
		return true
	}
	r.resending++
	go s.resendEntries(failed)
	return true
}

// resendEntries sends failed commands again, rewritten anew, each to its
// slot's node; the session's sends stay paused until they are queued.
func (s *session) resendEntries(failed []entry) {
	v := s.srv.cluster
	st := v.state.Load()
	id := s.cl.ident.Load()
	ps := s.srv.pools
	type item struct {
		w   tagWaiter
		c   *upConn
		err error
	}
	items := make([]item, len(failed))
	var p resp.CommandParser
	p.Limits = s.parser.Limits
	for i := range failed {
		f := &failed[i]
		it := &items[i]
		it.w = tagWaiter{s: s, data: s.rewriteAgain(nil, f.resend, f.cmd), slot: -1, part: -1}
		_, args, _, perr := p.Parse(f.resend, nil)
		node := st.home(s.rinfo.ID)
		if perr == nil && len(args) > 0 {
			_, keys := s.srv.keysOf(f.cmd, args, nil)
			if slot, ok := cluster.SameSlot(args, keys); ok && slot >= 0 && st.slotNode[slot] != 0 {
				it.w.slot, node = int32(slot), st.slotNode[slot]
			}
		}
		it.w.node = node
		var pl *pool
		if pl, it.err = ps.join(id.key.at(node), id.cred); it.err == nil {
			it.c, it.err = ps.shared(pl, s.rinfo.ID)
			ps.leave(pl)
		}
	}
	seq0, ok := s.q.pushSeq(failed)
	var lost []int
	for i := range items {
		it := &items[i]
		it.w.seq = seq0 + uint64(i)
		if ok && it.err == nil {
			if it.err = it.c.queueResend(it.w, false); it.err == nil {
				it.c.flushNoWait()
				continue
			}
		}
		lost = append(lost, i)
	}
	s.mu.Lock()
	for _, i := range lost {
		if ok {
			s.tagDoneLocked(false, &items[i].w, unreachableNode(s.srv, items[i].w.node, items[i].err), '-')
		}
	}
	s.rs.resending--
	if s.waiting {
		s.idle.Broadcast()
	}
	s.replayLocked()
	s.flushLocked()
	s.mu.Unlock()
	s.resume()
}
