package proxy

import (
	"context"
	"slices"
	"time"

	"github.com/exproxy/exproxy/proxy/cluster"
	"go.uber.org/zap"
)

// kick asks for the slot map to be read again soon; it never blocks.
func (v *clusterView) kick() {
	select {
	case v.kickCh <- struct{}{}:
	default:
	}
}

// start reads the slot map and the command table until it has both, then
// keeps the map current, until close.
func (v *clusterView) start() {
	go v.run()
}

func (v *clusterView) close() {
	v.closeOnce.Do(func() {
		close(v.done)
		_ = v.fetcher.Close()
	})
}

func (v *clusterView) run() {
	backoff := 50 * time.Millisecond
	for v.srv.commands.Load() == nil || v.state.Load() == nil {
		err := v.refresh()
		if err == nil && v.srv.commands.Load() == nil {
			err = v.loadTable()
		}
		if err == nil {
			if v.srv.commands.Load() != nil && v.state.Load() != nil {
				close(v.first)
			}
			break
		}
		select {
		case <-v.done:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
	t := time.NewTicker(v.opts.RefreshInterval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-v.done:
			return
		case <-t.C:
		case <-v.kickCh:
			if wait := v.opts.MinRefreshInterval - time.Since(last); wait > 0 {
				select {
				case <-v.done:
					return
				case <-time.After(wait):
				}
			}
		}
		last = time.Now()
		_ = v.refresh()
	}
}

func (v *clusterView) loadTable() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*v.srv.opts.DialTimeout)
	defer cancel()
	var topo *cluster.Topology
	if st := v.state.Load(); st != nil {
		topo = st.topo
	}
	t, err := v.fetcher.Table(ctx, topo)
	if err != nil {
		v.srv.log.Warn("cluster: reading the command table", zap.Error(err))
		return err
	}
	v.srv.commands.Store(t)
	return nil
}

// refresh reads the slot map and publishes it if it changed.
func (v *clusterView) refresh() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*v.srv.opts.DialTimeout)
	defer cancel()
	cur := v.state.Load()
	var last *cluster.Topology
	if cur != nil {
		last = cur.topo
	}
	t, err := v.fetcher.Topology(ctx, last)
	v.refreshes.Add(1)
	if err != nil {
		msg := err.Error()
		v.lastErr.Store(&msg)
		v.srv.log.Warn("cluster: reading the slot map", zap.Error(err))
		return err
	}
	v.lastErr.Store(nil)
	if cur != nil && cur.topo.Equal(t) {
		return nil
	}
	st := v.build(t)
	v.state.Store(st)
	if cur != nil {
		close(cur.changed)
	}
	v.srv.log.Info("cluster: slot map", zap.String("from", t.From), zap.Stringer("topology", t),
		zap.Bool("covered", t.Covered()))
	v.primariesChanged(st)
	return nil
}

func (v *clusterView) build(t *cluster.Topology) *clusterState {
	st := &clusterState{topo: t, changed: make(chan struct{})}
	for _, sh := range t.Shards() {
		if len(sh.Slots) == 0 {
			continue
		}
		n := v.num(sh.Primary.Addr)
		st.primaries = append(st.primaries, n)
		st.firstSlot = append(st.firstSlot, sh.Slots[0].Start)
		for _, r := range sh.Slots {
			for s := r.Start; s <= r.End; s++ {
				st.slotNode[s] = n
			}
		}
	}
	return st
}

// primariesChanged keeps an anonymous pool (with its ready connections)
// at every primary and none at other nodes, and tells the NodesWatchers
// (exstring loads its library on every primary).
func (v *clusterView) primariesChanged(st *clusterState) {
	ps := v.srv.pools
	addrs := make([]string, 0, len(st.primaries))
	for _, n := range st.primaries {
		ps.ensureAnon(n)
		addrs = append(addrs, v.addr(n))
	}
	for _, nd := range v.allNodes() {
		if !slices.Contains(st.primaries, nd.num) {
			ps.dropAnon(nd.num)
		}
	}
	ps.refill()
	slices.Sort(addrs)
	if slices.Equal(addrs, v.primaries) {
		return
	}
	v.primaries = addrs
	for _, w := range v.watchers {
		w.SetNodes(slices.Clone(addrs))
	}
}

// ensureAnon makes the anonymous pool of a node, which keeps ready
// connections whether or not a session uses it.
func (ps *pools) ensureAnon(node int32) {
	key := anonymous.at(node)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed || ps.byKey[key] != nil {
		return
	}
	ps.byKey[key] = &pool{key: key, slots: make([]poolSlot, ps.srv.opts.SharedConns)}
	ps.srv.stats.pools.Add(1)
}

// dropAnon forgets the anonymous pool of a node that is no longer a
// primary, unless sessions still use it; the reaper drops the others
// once idle.
func (ps *pools) dropAnon(node int32) {
	key := anonymous.at(node)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p := ps.byKey[key]; p != nil && p.created == nil && p.sessions == 0 {
		ps.dropLocked(p)
	}
}
