package proxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/exproxy/exproxy/proxy/cluster"
)

// clusterView is what the proxy knows of a Redis Cluster upstream: the
// slot map, read from the cluster at start, every RefreshInterval, and at
// once (no more often than MinRefreshInterval) when a node redirects a
// command, says the cluster is down, or a node connection is lost; and
// the nodes it has met, each with a number that pool keys carry
// (poolKey.node). Readers take a clusterState with one atomic load; a
// new map replaces the state whole.
type clusterView struct {
	srv     *Server
	fetcher *cluster.Fetcher
	opts    ClusterOptions

	state atomic.Pointer[clusterState]
	first chan struct{} // closed once the first state (with the command table) is stored

	// Node numbers from 1, never reused, so a number in a pool key keeps
	// naming one address. nodes is copied on write: lookups by number
	// take no lock.
	nmu    sync.Mutex
	byAddr map[string]int32
	nodes  atomic.Pointer[[]*clusterNode]

	kickCh    chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	refreshes atomic.Int64
	lastErr   atomic.Pointer[string] // why the last read failed, for /readyz; nil after a success
	watchers  []NodesWatcher
	primaries []string // as last told to the watchers; the refresher's
}

// clusterNode is one node the proxy has met, with its counters.
type clusterNode struct {
	num  int32
	addr string

	conns    atomic.Int64 // upstream connections open to it
	commands atomic.Int64 // commands (and parts of split commands) sent to it
	errors   atomic.Int64 // failed dials and lost connections
	moved    atomic.Int64 // MOVED replies it gave that the proxy followed
	asks     atomic.Int64 // ASK replies it gave that the proxy followed
}

// clusterState is one slot map, with what routing needs precomputed.
type clusterState struct {
	topo *cluster.Topology
	// slotNode is the number of each slot's primary; 0 when none serves it.
	slotNode [cluster.SlotCount]int32
	// primaries are the primaries that serve slots, in the order of their
	// first slot: a session's home node and the SCAN cursor index into it.
	primaries []int32
	firstSlot []int         // the first slot of each of primaries
	changed   chan struct{} // closed when a newer state replaces this one
}

func newClusterView(srv *Server) *clusterView {
	u := srv.opts.Upstream
	v := &clusterView{
		srv:  srv,
		opts: srv.opts.Cluster,
		fetcher: cluster.NewFetcher(u.seeds(), cluster.Dial{
			Username: u.Username, Password: u.Password, TLS: u.TLS, Timeout: srv.opts.DialTimeout,
		}),
		first:  make(chan struct{}),
		byAddr: map[string]int32{},
		kickCh: make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	nodes := []*clusterNode{nil}
	v.nodes.Store(&nodes)
	for _, r := range srv.opts.Rewriters {
		if w, ok := r.(NodesWatcher); ok {
			v.watchers = append(v.watchers, w)
		}
	}
	return v
}

// num returns the number of the node at addr, giving it one if it has
// none yet.
func (v *clusterView) num(addr string) int32 {
	v.nmu.Lock()
	defer v.nmu.Unlock()
	if n, ok := v.byAddr[addr]; ok {
		return n
	}
	old := *v.nodes.Load()
	n := int32(len(old))
	nodes := append(old[:len(old):len(old)], &clusterNode{num: n, addr: addr})
	v.byAddr[addr] = n
	v.nodes.Store(&nodes)
	return n
}

// node returns the node of a number, or nil.
func (v *clusterView) node(n int32) *clusterNode {
	nodes := *v.nodes.Load()
	if n <= 0 || int(n) >= len(nodes) {
		return nil
	}
	return nodes[n]
}

// addr is the address of node n ("" for none).
func (v *clusterView) addr(n int32) string {
	if nd := v.node(n); nd != nil {
		return nd.addr
	}
	return ""
}

// allNodes returns every node met so far.
func (v *clusterView) allNodes() []*clusterNode { return (*v.nodes.Load())[1:] }

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

// errNoSlotMap: the cluster has not answered with its slot map yet.
var errNoSlotMap = errors.New("no slot map from the cluster yet")

// current returns the state to route by, waiting up to FailoverWait for
// the first one.
func (v *clusterView) current() *clusterState {
	if st := v.state.Load(); st != nil && v.srv.commands.Load() != nil {
		return st
	}
	select {
	case <-v.first:
	case <-v.done:
	case <-time.After(v.opts.FailoverWait):
	}
	if v.srv.commands.Load() == nil {
		return nil
	}
	return v.state.Load()
}

// await waits, up to d, for a slot map for which ok holds, asking for
// fresh ones meanwhile; it returns the last state seen and whether ok
// held for it.
func (v *clusterView) await(d time.Duration, ok func(*clusterState) bool) (*clusterState, bool) {
	deadline := time.Now().Add(d)
	for {
		st := v.state.Load()
		if st != nil && ok(st) {
			return st, true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return st, false
		}
		v.kick()
		var changed <-chan struct{}
		if st != nil {
			changed = st.changed
		}
		// The cluster changes its mind without the map changing (a node
		// comes back): look again every so often.
		tick := max(v.opts.MinRefreshInterval, 50*time.Millisecond)
		select {
		case <-changed:
		case <-v.done:
			return st, false
		case <-time.After(min(left, tick)):
		}
	}
}

// home is the node where a session's keyless commands go: one primary,
// the same for the session as long as the primaries stay the same.
func (st *clusterState) home(id uint64) int32 {
	if len(st.primaries) == 0 {
		return 0
	}
	return st.primaries[id%uint64(len(st.primaries))]
}

// slotOf returns a slot node serves, or -1.
func (st *clusterState) slotOf(node int32) int {
	for i, n := range st.primaries {
		if n == node {
			return st.firstSlot[i]
		}
	}
	return -1
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

// NodesWatcher is a Rewriter that must know the primaries of a Redis
// Cluster upstream (exstring loads its Lua library on each). SetNodes is
// called with every primary's address when the proxy first reads the
// slot map and whenever the set of primaries changes (a failover, a node
// added); it must not block.
type NodesWatcher interface {
	SetNodes(primaries []string)
}

// NodeReloader is a ReplyHandler that can reload what its commands need
// on one node of a Redis Cluster: the core calls ReloadNode, with the
// address of the node that failed the command, instead of Reload.
type NodeReloader interface {
	ReloadNode(ctx context.Context, addr string) error
}

// ClusterReady reports, for a Redis Cluster upstream, whether the proxy
// has the slot map and every slot has a primary; reason says what is
// missing. For a single Redis it reports true.
func (s *Server) ClusterReady() (ready bool, reason string) {
	v := s.cluster
	if v == nil {
		return true, ""
	}
	st := v.state.Load()
	if st == nil || s.commands.Load() == nil {
		if e := v.lastErr.Load(); e != nil {
			return false, *e
		}
		return false, errNoSlotMap.Error()
	}
	if !st.topo.Covered() {
		u := st.topo.Uncovered()
		return false, fmt.Sprintf("%d slot ranges have no primary (first: %d-%d)", len(u), u[0].Start, u[0].End)
	}
	return true, ""
}

// NodeStats are the counters of one node of a Redis Cluster upstream.
type NodeStats struct {
	Addr     string
	Primary  bool  // serves slots in the current slot map
	Replica  bool  // a replica in the current slot map
	Conns    int64 // upstream connections open to it now
	Commands int64 // commands (and parts of split commands) sent to it
	Errors   int64 // failed dials and lost connections
	Moved    int64 // MOVED replies it gave, followed by the proxy
	Asks     int64 // ASK replies it gave, followed by the proxy
}

// ClusterStats are the counters of a Redis Cluster upstream.
type ClusterStats struct {
	// Nodes are the nodes of the current slot map, and former ones with
	// connections still open: as many as the cluster has, whatever it had
	// over time (a label set for metrics must stay bounded).
	Nodes        []NodeStats
	Refreshes    int64 // times the slot map was read
	SlotsCovered int   // slots with a primary in the current slot map
}

// ClusterStats returns the counters of a Redis Cluster upstream; ok is
// false for a single Redis.
func (s *Server) ClusterStats() (cs ClusterStats, ok bool) {
	v := s.cluster
	if v == nil {
		return ClusterStats{}, false
	}
	cs.Refreshes = v.refreshes.Load()
	st := v.state.Load()
	replicas := map[string]bool{}
	if st != nil {
		for _, sh := range st.topo.Shards() {
			for _, r := range sh.Replicas {
				replicas[r.Addr] = true
			}
		}
		for _, n := range st.slotNode {
			if n != 0 {
				cs.SlotsCovered++
			}
		}
	}
	for _, nd := range v.allNodes() {
		ns := NodeStats{
			Addr: nd.addr, Conns: nd.conns.Load(), Commands: nd.commands.Load(),
			Errors: nd.errors.Load(), Moved: nd.moved.Load(), Asks: nd.asks.Load(),
			Replica: replicas[nd.addr],
		}
		if st != nil {
			ns.Primary = slices.Contains(st.primaries, nd.num)
		}
		if ns.Primary || ns.Replica || ns.Conns > 0 {
			cs.Nodes = append(cs.Nodes, ns)
		}
		delete(replicas, nd.addr)
	}
	// Replicas the proxy never sent to have no counters.
	for addr := range replicas {
		cs.Nodes = append(cs.Nodes, NodeStats{Addr: addr, Replica: true})
	}
	return cs, true
}
