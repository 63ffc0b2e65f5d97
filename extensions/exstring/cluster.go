package exstring

import (
	"context"
	"errors"
	"sort"

	"github.com/exproxy/exproxy/proxy"
)

// In front of a Redis Cluster the library must be on every primary: the
// proxy names them (SetNodes) when it first reads the slot map and
// whenever they change — a replica promoted by a failover, a node added
// by resharding — and each gets a loader of its own, loading in the
// background at once. A command that finds the library missing on its
// node anyway (FUNCTION FLUSH, a promoted replica that never had it) is
// resent after ReloadNode has loaded it there. Functions replicate, so a
// replica promoted in a failover usually has the library already; the
// load then finds it there.

// SetNodes implements proxy.NodesWatcher: it starts loading the library
// on every primary it has not loaded it on yet.
func (e *Extension) SetNodes(primaries []string) {
	e.nmu.Lock()
	defer e.nmu.Unlock()
	for _, addr := range primaries {
		if e.nodes[addr] != nil {
			continue
		}
		l := &loader{}
		l.initAt(e, addr)
		e.nodes[addr] = l
		go l.keepLoading(e.bg, nil)
	}
}

// ReloadNode implements proxy.NodeReloader: it loads the library on one
// node (answering at once with the last error while a recent load there
// failed), waiting for a load that starts after this call.
func (e *Extension) ReloadNode(ctx context.Context, addr string) error {
	return e.nodeLoader(addr).reload(ctx, true)
}

// ReloadNode is the commands' NodeReloader.
func (c *command) ReloadNode(ctx context.Context, addr string) error {
	return c.ext.ReloadNode(ctx, addr)
}

func (e *Extension) nodeLoader(addr string) *loader {
	e.nmu.Lock()
	defer e.nmu.Unlock()
	l := e.nodes[addr]
	if l == nil {
		l = &loader{}
		l.initAt(e, addr)
		e.nodes[addr] = l
	}
	return l
}

// Nodes returns the cluster nodes the extension loads the library on,
// sorted.
func (e *Extension) Nodes() []string {
	e.nmu.Lock()
	defer e.nmu.Unlock()
	out := make([]string, 0, len(e.nodes))
	for a := range e.nodes {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// eachNode runs fn for every node's loader, and joins the errors.
func (e *Extension) eachNode(fn func(*loader) error) error {
	e.nmu.Lock()
	ls := make([]*loader, 0, len(e.nodes))
	for _, l := range e.nodes {
		ls = append(ls, l)
	}
	e.nmu.Unlock()
	if len(ls) == 0 {
		return errors.New("exstring: load: no cluster node known yet")
	}
	var errs []error
	for _, l := range ls {
		errs = append(errs, fn(l))
	}
	return errors.Join(errs...)
}

var (
	_ proxy.NodesWatcher = (*Extension)(nil)
	_ proxy.NodeReloader = (*command)(nil)
)
