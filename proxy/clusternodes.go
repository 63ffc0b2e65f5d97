package proxy

import (
	"fmt"
	"slices"
	"sync/atomic"
)

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

// clusterNode returns the counters of node n (nil for the one Redis).
func (s *Server) clusterNode(n int32) *clusterNode {
	if s.cluster == nil || n == 0 {
		return nil
	}
	return s.cluster.node(n)
}
