package proxy

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

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
