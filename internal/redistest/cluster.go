package redistest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Cluster is a Redis Cluster of redis-server processes on free loopback
// ports, created with `redis-cli --cluster create` as an operator would.
//
// A test starts one with StartCluster; a test package that shares one
// cluster between its tests builds it in TestMain with NewCluster and stops
// it there. The helpers that change the cluster (KillPrimary, Failover,
// MoveSlots, Restart, ...) take the calling test's testing.TB and wait until
// every live node agrees on the new slot map before they return.
type Cluster struct {
	// Nodes are all nodes in start order. Roles change with failovers:
	// ask Primaries and ReplicasOf for the current ones.
	Nodes []*ClusterNode
	// StartupTime is how long NewCluster took, from the first process
	// start to a cluster every node agrees on.
	StartupTime time.Duration

	o       clusterOptions
	root    string // holds every node's directory; removed by Stop
	cli     string
	mu      sync.Mutex
	clients map[*ClusterNode]*redis.Client
	stopped bool
}

// ClusterNode is one redis-server of a Cluster.
type ClusterNode struct {
	*Server        // Addr, Port, Dir; Stop kills it (SIGKILL)
	ID      string // the cluster node ID (40 hex digits)
	BusPort int    // cluster bus port (cluster-port)
}

// Alive reports whether the node's process is running.
func (n *ClusterNode) Alive() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

func (n *ClusterNode) String() string { return n.Addr }

type clusterOptions struct {
	primaries, replicas int
	nodeTimeout         time.Duration
	config              []string
	user, password      string
	tls                 *TLSFiles
}

// ClusterOption adjusts a Cluster before it starts.
type ClusterOption func(*clusterOptions)

// WithShards sets the number of primaries and replicas per primary
// (default 3 and 1).
func WithShards(primaries, replicasEach int) ClusterOption {
	return func(o *clusterOptions) { o.primaries, o.replicas = primaries, replicasEach }
}

// WithNodeTimeout sets cluster-node-timeout (default 1s): the time after
// which an unreachable node is suspected, so a failover takes about twice
// this plus the replica's election delay (0.5-1s).
func WithNodeTimeout(d time.Duration) ClusterOption {
	return func(o *clusterOptions) { o.nodeTimeout = d }
}

// WithClusterConfig adds a redis.conf directive to every node, e.g.
// WithClusterConfig("cluster-preferred-endpoint-type", "hostname").
func WithClusterConfig(name string, values ...string) ClusterOption {
	return func(o *clusterOptions) { o.config = append(o.config, append([]string{"--" + name}, values...)...) }
}

// WithAuth protects every node: with user "" (or "default") by
// requirepass, otherwise by an ACL user with every permission while the
// default user is turned off. Replication, redis-cli, MIGRATE and the
// helper's own clients use the same credentials.
func WithAuth(user, password string) ClusterOption {
	return func(o *clusterOptions) {
		if user == "default" {
			user = ""
		}
		o.user, o.password = user, password
	}
}

// WithClusterTLS makes every node speak TLS only: clients, replication and
// the cluster bus. Clients need no certificate; they verify the nodes'
// certificate (for 127.0.0.1) with files.Pool.
func WithClusterTLS(files TLSFiles) ClusterOption {
	return func(o *clusterOptions) { o.tls = &files }
}

// StartCluster starts a cluster for one test and stops it when the test
// ends. Like Start, it fails the test when redis-server is missing.
func StartCluster(tb testing.TB, opts ...ClusterOption) *Cluster {
	tb.Helper()
	c, err := NewCluster(opts...)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	tb.Cleanup(c.Stop)
	return c
}

// NewCluster starts a cluster (3 primaries with one replica each unless
// WithShards says otherwise) and waits until it is ready: cluster_state:ok
// on every node, every node agreeing on the slot map, and every replica's
// replication link up. The caller must call Stop; NewCluster needs no
// testing.TB, so a TestMain can share one cluster between a package's
// tests.
func NewCluster(opts ...ClusterOption) (*Cluster, error) {
	began := time.Now()
	o := clusterOptions{primaries: 3, replicas: 1, nodeTimeout: time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if o.primaries < 3 {
		// redis-cli refuses fewer; so does a cluster that must reach a
		// majority of primaries to fail over.
		return nil, fmt.Errorf("cluster: %d primaries, need at least 3", o.primaries)
	}
	bin := Binary()
	if bin == "" {
		return nil, errors.New("redis-server not found on PATH; install it: sudo apt-get install -y redis-server (or run make deps)")
	}
	cli := CLI()
	if cli == "" {
		return nil, errors.New("redis-cli not found on PATH; install it: sudo apt-get install -y redis-tools (or run make deps)")
	}
	root, err := os.MkdirTemp("", "redistest-cluster-")
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c := &Cluster{o: o, root: root, cli: cli, clients: map[*ClusterNode]*redis.Client{}}
	n := o.primaries * (1 + o.replicas)
	c.Nodes = make([]*ClusterNode, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Nodes[i], errs[i] = c.startNode(bin, filepath.Join(root, fmt.Sprintf("node%d", i)))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Stop()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if err := c.create(); err != nil {
		c.Stop()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c.StartupTime = time.Since(began)
	return c, nil
}

// startNode starts one node in dir on free ports, trying other ports when
// one is taken between the check and the bind.
func (c *Cluster) startNode(bin, dir string) (*ClusterNode, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var port, bus int
		if port, err = freePort(); err != nil {
			return nil, err
		}
		if bus, err = freePort(); err != nil {
			return nil, err
		}
		node := &ClusterNode{Server: &Server{Port: port, Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: dir}, BusPort: bus}
		node.args = c.nodeArgs(node)
		if c.o.tls != nil {
			node.tls = &tls.Config{InsecureSkipVerify: true} // readiness probe only
		}
		if err = node.start(bin); err == nil {
			return node, nil
		}
	}
	return nil, err
}

func (c *Cluster) nodeArgs(n *ClusterNode) []string {
	args := []string{
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", n.Dir,
		"--logfile", filepath.Join(n.Dir, "redis.log"),
		"--daemonize", "no",
		"--protected-mode", "no",
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-port", strconv.Itoa(n.BusPort),
		"--cluster-node-timeout", strconv.FormatInt(c.o.nodeTimeout.Milliseconds(), 10),
		// A replica may always take over, however long it was cut off:
		// tests kill primaries on purpose and want the failover.
		"--cluster-replica-validity-factor", "0",
		// Roles stay where the test put them.
		"--cluster-allow-replica-migration", "no",
		// The first full sync starts at once instead of after 5s.
		"--repl-diskless-sync", "yes",
		"--repl-diskless-sync-delay", "0",
		"--repl-ping-replica-period", "1",
	}
	switch {
	case c.o.password != "" && c.o.user == "":
		args = append(args, "--requirepass", c.o.password, "--masterauth", c.o.password)
	case c.o.password != "":
		args = append(args,
			"--user", c.o.user, "on", ">"+c.o.password, "~*", "&*", "+@all",
			"--user", "default", "off",
			"--masteruser", c.o.user, "--masterauth", c.o.password)
	}
	if t := c.o.tls; t != nil {
		args = append(args, "--tls-cluster", "yes", "--tls-replication", "yes",
			"--tls-cert-file", t.CertFile, "--tls-key-file", t.KeyFile,
			"--tls-ca-cert-file", t.CAFile, "--tls-auth-clients", "no")
	}
	return append(args, c.o.config...)
}

// create joins the started nodes with redis-cli and waits for the result.
func (c *Cluster) create() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(c.o.replicas), "--cluster-yes")
	if out, err := c.runCLI(ctx, args...); err != nil {
		return fmt.Errorf("redis-cli --cluster create: %w\n%s", err, tail(out))
	}
	for _, n := range c.Nodes {
		id, err := c.client(n).Do(ctx, "CLUSTER", "MYID").Text()
		if err != nil {
			return fmt.Errorf("CLUSTER MYID on %s: %w", n.Addr, err)
		}
		n.ID = id
	}
	return c.WaitStable(ctx)
}

// runCLI runs redis-cli with the cluster's credentials and TLS settings.
func (c *Cluster) runCLI(ctx context.Context, args ...string) (string, error) {
	var pre []string
	if c.o.user != "" {
		pre = append(pre, "--user", c.o.user)
	}
	if c.o.tls != nil {
		pre = append(pre, "--tls", "--cacert", c.o.tls.CAFile)
	}
	cmd := exec.CommandContext(ctx, c.cli, append(pre, args...)...)
	// The password goes in the environment, where ps does not show it
	// and redis-cli does not warn about it.
	cmd.Env = os.Environ()
	if c.o.password != "" {
		cmd.Env = append(cmd.Env, "REDISCLI_AUTH="+c.o.password)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func tail(s string) string {
	if len(s) > 3000 {
		return "..." + s[len(s)-3000:]
	}
	return s
}

// Stop kills every node and removes their directories. It is safe to call
// twice.
func (c *Cluster) Stop() {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	c.stopped = true
	clients := c.clients
	c.clients = nil
	c.mu.Unlock()
	for _, cl := range clients {
		_ = cl.Close()
	}
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		if n != nil {
			wg.Add(1)
			go func() { defer wg.Done(); n.Stop() }()
		}
	}
	wg.Wait()
	_ = os.RemoveAll(c.root)
}

// Addrs returns the address of every node, dead or alive: a seed list.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// User and Password are the credentials given to WithAuth.
func (c *Cluster) User() string     { return c.o.user }
func (c *Cluster) Password() string { return c.o.password }

// TLSConfig returns the client TLS configuration for the nodes (nil
// without WithClusterTLS).
func (c *Cluster) TLSConfig() *tls.Config {
	if c.o.tls == nil {
		return nil
	}
	return &tls.Config{RootCAs: c.o.tls.Pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// Client returns a go-redis client (RESP2) for one node, with the
// cluster's credentials. It belongs to the Cluster: do not close it.
func (c *Cluster) Client(n *ClusterNode) *redis.Client { return c.client(n) }

func (c *Cluster) client(n *ClusterNode) *redis.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl := c.clients[n]; cl != nil {
		return cl
	}
	cl := redis.NewClient(&redis.Options{
		Addr:                     n.Addr,
		Username:                 c.o.user,
		Password:                 c.o.password,
		TLSConfig:                c.TLSConfig(),
		Protocol:                 2,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		DialTimeout:              time.Second,
		ReadTimeout:              10 * time.Second,
		MaxRetries:               -1, // report a dead node at once
		PoolSize:                 4,
	})
	if c.clients != nil {
		c.clients[n] = cl
	}
	return cl
}

// NewClusterClient returns a go-redis cluster client for the cluster, as an
// application talking to the cluster directly would use; the caller closes
// it.
func (c *Cluster) NewClusterClient(protocol int) *redis.ClusterClient {
	return redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                    c.Addrs(),
		Username:                 c.o.user,
		Password:                 c.o.password,
		TLSConfig:                c.TLSConfig(),
		Protocol:                 protocol,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
}

// nodeView is one line of CLUSTER NODES.
type nodeView struct {
	id, masterID string
	master       bool
	fail         bool // fail or pfail
	slots        []string
}

// parseClusterNodes reads CLUSTER NODES. Migrating and importing marks
// ([slot->-id]) are left out: they differ between the two nodes of a
// migration by design.
func parseClusterNodes(text string) (map[string]nodeView, error) {
	views := map[string]nodeView{}
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("CLUSTER NODES line %q: too few fields", line)
		}
		v := nodeView{id: f[0], masterID: f[3]}
		for _, flag := range strings.Split(f[2], ",") {
			switch flag {
			case "master":
				v.master = true
			case "fail", "fail?":
				v.fail = true
			}
		}
		for _, s := range f[8:] {
			if !strings.HasPrefix(s, "[") {
				v.slots = append(v.slots, s)
			}
		}
		views[v.id] = v
	}
	return views, nil
}

// signature is a view in a form that two nodes agree on when they agree
// on roles, failures and slots.
func signature(views map[string]nodeView) string {
	lines := make([]string, 0, len(views))
	for _, v := range views {
		lines = append(lines, fmt.Sprintf("%s %t %s %t %s", v.id, v.master, v.masterID, v.fail, strings.Join(v.slots, ",")))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// view returns the cluster as the first live node sees it.
func (c *Cluster) view(ctx context.Context) (map[string]nodeView, error) {
	for _, n := range c.Nodes {
		if !n.Alive() {
			continue
		}
		text, err := c.client(n).Do(ctx, "CLUSTER", "NODES").Text()
		if err != nil {
			return nil, fmt.Errorf("CLUSTER NODES on %s: %w", n.Addr, err)
		}
		return parseClusterNodes(text)
	}
	return nil, errors.New("no node is alive")
}

// WaitStable waits until every live node reports cluster_state:ok, knows
// every node, agrees with the others on roles, failures and slot owners,
// sees no live node as failing and every dead one as failed, reports every
// live node "online" in CLUSTER SHARDS, and every live replica's
// replication link is up. That is when a client can rely
// on the slot map and a replica is ready to take over.
func (c *Cluster) WaitStable(ctx context.Context) error {
	reason := ""
	for {
		ok, why := c.stable(ctx)
		if ok {
			return nil
		}
		reason = why
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not stable: %s", reason)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *Cluster) stable(ctx context.Context) (bool, string) {
	var sig string
	var views map[string]nodeView
	for _, n := range c.Nodes {
		if !n.Alive() {
			continue
		}
		cl := c.client(n)
		info, err := cl.Do(ctx, "CLUSTER", "INFO").Text()
		if err != nil {
			return false, fmt.Sprintf("CLUSTER INFO on %s: %v", n.Addr, err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return false, n.Addr + " has not cluster_state:ok"
		}
		if !strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(len(c.Nodes))+"\r\n") {
			return false, fmt.Sprintf("%s does not know all %d nodes", n.Addr, len(c.Nodes))
		}
		text, err := cl.Do(ctx, "CLUSTER", "NODES").Text()
		if err != nil {
			return false, fmt.Sprintf("CLUSTER NODES on %s: %v", n.Addr, err)
		}
		v, err := parseClusterNodes(text)
		if err != nil {
			return false, err.Error()
		}
		// What CLUSTER SHARDS tells clients: a replica is "loading" until
		// its replication offset has reached this node by gossip.
		shards, err := cl.ClusterShards(ctx).Result()
		if err != nil {
			return false, fmt.Sprintf("CLUSTER SHARDS on %s: %v", n.Addr, err)
		}
		for _, sh := range shards {
			for _, sn := range sh.Nodes {
				if m := c.byID(sn.ID); m != nil && m.Alive() && sn.Health != "online" {
					return false, fmt.Sprintf("%s reports %s as %s", n.Addr, m.Addr, sn.Health)
				}
			}
		}
		s := signature(v)
		if sig == "" {
			sig, views = s, v
		} else if s != sig {
			return false, fmt.Sprintf("%s sees another cluster than %s:\n%s\n--\n%s", n.Addr, c.firstAlive().Addr, s, sig)
		}
	}
	if views == nil {
		return false, "no node is alive"
	}
	for _, n := range c.Nodes {
		v, known := views[n.ID]
		if n.ID == "" || !known {
			continue // before create has read the IDs
		}
		if n.Alive() == v.fail {
			return false, fmt.Sprintf("%s is alive=%t but seen as failing=%t", n.Addr, n.Alive(), v.fail)
		}
		if !n.Alive() || v.master {
			continue
		}
		info, err := c.client(n).Info(ctx, "replication").Result()
		if err != nil {
			return false, fmt.Sprintf("INFO replication on %s: %v", n.Addr, err)
		}
		if !strings.Contains(info, "master_link_status:up") || !strings.Contains(info, "master_sync_in_progress:0") {
			return false, "replica " + n.Addr + " is not in sync"
		}
	}
	return true, ""
}

func (c *Cluster) firstAlive() *ClusterNode {
	for _, n := range c.Nodes {
		if n.Alive() {
			return n
		}
	}
	return nil
}

func (c *Cluster) byID(id string) *ClusterNode {
	for _, n := range c.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

func waitCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 60*time.Second)
}

// Primaries returns the live primaries, ordered by the first slot they
// serve (primaries without slots last), as a live node sees them.
func (c *Cluster) Primaries(tb testing.TB) []*ClusterNode {
	tb.Helper()
	ctx, cancel := waitCtx()
	defer cancel()
	views, err := c.view(ctx)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	type prim struct {
		n     *ClusterNode
		first int
	}
	var ps []prim
	for id, v := range views {
		if !v.master || v.fail {
			continue
		}
		first := SlotCount
		for _, s := range v.slots {
			lo, _, _ := strings.Cut(s, "-")
			if x, err := strconv.Atoi(lo); err == nil && x < first {
				first = x
			}
		}
		if n := c.byID(id); n != nil {
			ps = append(ps, prim{n, first})
		}
	}
	sort.Slice(ps, func(i, j int) bool {
		return ps[i].first < ps[j].first || ps[i].first == ps[j].first && ps[i].n.Port < ps[j].n.Port
	})
	out := make([]*ClusterNode, len(ps))
	for i, p := range ps {
		out[i] = p.n
	}
	return out
}

// ReplicasOf returns the live replicas of a primary.
func (c *Cluster) ReplicasOf(tb testing.TB, primary *ClusterNode) []*ClusterNode {
	tb.Helper()
	ctx, cancel := waitCtx()
	defer cancel()
	views, err := c.view(ctx)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	var out []*ClusterNode
	for _, n := range c.Nodes {
		if v, ok := views[n.ID]; ok && !v.master && !v.fail && v.masterID == primary.ID {
			out = append(out, n)
		}
	}
	return out
}

// SlotCount is the number of hash slots of Redis Cluster.
const SlotCount = 16384

// SlotsOf returns the slots a primary serves, in order.
func (c *Cluster) SlotsOf(tb testing.TB, primary *ClusterNode) []int {
	tb.Helper()
	ctx, cancel := waitCtx()
	defer cancel()
	views, err := c.view(ctx)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	var slots []int
	for _, s := range views[primary.ID].slots {
		lo, hi, isRange := strings.Cut(s, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil {
			tb.Fatalf("redistest: bad slot range %q in CLUSTER NODES", s)
		}
		for x := a; x <= b; x++ {
			slots = append(slots, x)
		}
	}
	sort.Ints(slots)
	return slots
}

// SlotOwner returns the primary serving a slot, or nil.
func (c *Cluster) SlotOwner(tb testing.TB, slot int) *ClusterNode {
	tb.Helper()
	for _, p := range c.Primaries(tb) {
		for _, s := range c.SlotsOf(tb, p) {
			if s == slot {
				return p
			}
		}
	}
	return nil
}

// KillPrimary kills the i-th primary (in the order of Primaries) with
// SIGKILL and waits until one of its replicas has taken over and the
// cluster is stable again. It returns the dead node and the new primary.
func (c *Cluster) KillPrimary(tb testing.TB, i int) (killed, promoted *ClusterNode) {
	tb.Helper()
	prims := c.Primaries(tb)
	if i < 0 || i >= len(prims) {
		tb.Fatalf("redistest: KillPrimary(%d): the cluster has %d primaries", i, len(prims))
	}
	killed = prims[i]
	replicas := c.ReplicasOf(tb, killed)
	if len(replicas) == 0 {
		tb.Fatalf("redistest: KillPrimary(%d): %s has no replica to take over", i, killed.Addr)
	}
	killed.Stop()
	ctx, cancel := waitCtx()
	defer cancel()
	if err := c.WaitStable(ctx); err != nil {
		tb.Fatalf("redistest: after killing %s: %v", killed.Addr, err)
	}
	for _, p := range c.Primaries(tb) {
		for _, r := range replicas {
			if p == r {
				return killed, p
			}
		}
	}
	tb.Fatalf("redistest: after killing %s none of its replicas is a primary", killed.Addr)
	return nil, nil
}

// Failover runs CLUSTER FAILOVER [FORCE|TAKEOVER] on a replica and waits
// until it is the primary and the cluster is stable.
func (c *Cluster) Failover(tb testing.TB, replica *ClusterNode, mode ...string) {
	tb.Helper()
	ctx, cancel := waitCtx()
	defer cancel()
	args := []any{"CLUSTER", "FAILOVER"}
	for _, m := range mode {
		args = append(args, m)
	}
	if err := c.client(replica).Do(ctx, args...).Err(); err != nil {
		tb.Fatalf("redistest: CLUSTER FAILOVER on %s: %v", replica.Addr, err)
	}
	for {
		if err := c.WaitStable(ctx); err != nil {
			tb.Fatalf("redistest: after CLUSTER FAILOVER on %s: %v", replica.Addr, err)
		}
		role, err := c.client(replica).Do(ctx, "ROLE").Slice()
		if err == nil && len(role) > 0 && role[0] == "master" {
			// Stable once more: the old primary turns into a replica
			// after the new one is announced.
			if err := c.WaitStable(ctx); err != nil {
				tb.Fatalf("redistest: after CLUSTER FAILOVER on %s: %v", replica.Addr, err)
			}
			return
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("redistest: %s did not become a primary after CLUSTER FAILOVER", replica.Addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Restart starts a stopped (killed) node again on its ports, with its
// nodes.conf, and waits until the cluster is stable. A primary whose slots
// were taken over in the meantime comes back as a replica of the new
// primary, as it would in production.
func (c *Cluster) Restart(tb testing.TB, n *ClusterNode) {
	tb.Helper()
	if n.Alive() {
		tb.Fatalf("redistest: Restart(%s): the node is running", n.Addr)
	}
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		if err = n.start(Binary()); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond) // the port may linger briefly
	}
	if err != nil {
		tb.Fatalf("redistest: restart %s: %v", n.Addr, err)
	}
	ctx, cancel := waitCtx()
	defer cancel()
	if err := c.WaitStable(ctx); err != nil {
		tb.Fatalf("redistest: after restarting %s: %v", n.Addr, err)
	}
}

// SlotMove is one slot being resharded, in the steps redis-cli --cluster
// reshard takes: the target imports, the source migrates, keys move with
// MIGRATE ... KEYS in batches, and CLUSTER SETSLOT NODE hands the slot
// over. While it is open, the source answers commands on missing keys of
// the slot with -ASK and multi-key commands with -TRYAGAIN, so a test can
// run clients in every phase.
type SlotMove struct {
	Slot     int
	From, To *ClusterNode
	c        *Cluster
}

// BeginMove opens the migration of slot to the primary to.
func (c *Cluster) BeginMove(tb testing.TB, slot int, to *ClusterNode) *SlotMove {
	tb.Helper()
	from := c.SlotOwner(tb, slot)
	if from == nil {
		tb.Fatalf("redistest: slot %d has no owner", slot)
	}
	if from == to {
		tb.Fatalf("redistest: slot %d is already on %s", slot, to.Addr)
	}
	ctx, cancel := waitCtx()
	defer cancel()
	if err := c.client(to).Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", from.ID).Err(); err != nil {
		tb.Fatalf("redistest: SETSLOT %d IMPORTING on %s: %v", slot, to.Addr, err)
	}
	if err := c.client(from).Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", to.ID).Err(); err != nil {
		tb.Fatalf("redistest: SETSLOT %d MIGRATING on %s: %v", slot, from.Addr, err)
	}
	return &SlotMove{Slot: slot, From: from, To: to, c: c}
}

// MigrateKeys moves up to batch keys of the slot and returns how many it
// moved (0 when the source has none left).
func (m *SlotMove) MigrateKeys(tb testing.TB, batch int) int {
	tb.Helper()
	ctx, cancel := waitCtx()
	defer cancel()
	n, err := m.migrate(ctx, batch)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	return n
}

func (m *SlotMove) migrate(ctx context.Context, batch int) (int, error) {
	src := m.c.client(m.From)
	keys, err := src.Do(ctx, "CLUSTER", "GETKEYSINSLOT", m.Slot, batch).StringSlice()
	if err != nil {
		return 0, fmt.Errorf("GETKEYSINSLOT %d on %s: %w", m.Slot, m.From.Addr, err)
	}
	if len(keys) == 0 {
		return 0, nil
	}
	args := []any{"MIGRATE", "127.0.0.1", m.To.Port, "", 0, 10000}
	switch o := m.c.o; {
	case o.password != "" && o.user == "":
		args = append(args, "AUTH", o.password)
	case o.password != "":
		args = append(args, "AUTH2", o.user, o.password)
	}
	args = append(args, "KEYS")
	for _, k := range keys {
		args = append(args, k)
	}
	if err := src.Do(ctx, args...).Err(); err != nil {
		return 0, fmt.Errorf("MIGRATE of %d keys of slot %d from %s to %s: %w", len(keys), m.Slot, m.From.Addr, m.To.Addr, err)
	}
	return len(keys), nil
}

// Finish moves the keys left and gives the slot to the target: CLUSTER
// SETSLOT NODE on the target first, then the source, then every other
// primary, the order that leaves no node pointing clients in a circle.
func (m *SlotMove) Finish(tb testing.TB) {
	tb.Helper()
	ctx, cancel := waitCtx()
	defer cancel()
	if err := m.finish(ctx); err != nil {
		tb.Fatalf("redistest: %v", err)
	}
}

func (m *SlotMove) finish(ctx context.Context) error {
	for {
		n, err := m.migrate(ctx, 100)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
	}
	order := []*ClusterNode{m.To, m.From}
	views, err := m.c.view(ctx)
	if err != nil {
		return err
	}
	for _, n := range m.c.Nodes {
		if v, ok := views[n.ID]; ok && v.master && !v.fail && n != m.To && n != m.From && n.Alive() {
			order = append(order, n)
		}
	}
	for _, n := range order {
		if err := m.c.client(n).Do(ctx, "CLUSTER", "SETSLOT", m.Slot, "NODE", m.To.ID).Err(); err != nil {
			return fmt.Errorf("SETSLOT %d NODE on %s: %w", m.Slot, n.Addr, err)
		}
	}
	return nil
}

// MoveSlots moves the first n slots of primary from to primary to, one
// slot at a time (BeginMove, MigrateKeys, Finish), and waits until the
// cluster is stable. It returns the slots moved.
func (c *Cluster) MoveSlots(tb testing.TB, from, to *ClusterNode, n int) []int {
	tb.Helper()
	slots := c.SlotsOf(tb, from)
	if len(slots) < n {
		tb.Fatalf("redistest: MoveSlots: %s serves %d slots, not %d", from.Addr, len(slots), n)
	}
	slots = slots[:n]
	ctx, cancel := waitCtx()
	defer cancel()
	for _, s := range slots {
		m := c.BeginMove(tb, s, to)
		if err := m.finish(ctx); err != nil {
			tb.Fatalf("redistest: MoveSlots: %v", err)
		}
	}
	if err := c.WaitStable(ctx); err != nil {
		tb.Fatalf("redistest: after MoveSlots: %v", err)
	}
	return slots
}

// ReshardCLI moves n slots from one primary to another with `redis-cli
// --cluster reshard`, as an operator would, and waits until the cluster is
// stable. It returns an error instead of failing a test, so it can run in
// a goroutine beside the test's clients.
func (c *Cluster) ReshardCLI(ctx context.Context, from, to *ClusterNode, n int) error {
	// redis-cli refuses to start while nodes disagree.
	if err := c.WaitStable(ctx); err != nil {
		return err
	}
	out, err := c.runCLI(ctx, "--cluster", "reshard", to.Addr,
		"--cluster-from", from.ID, "--cluster-to", to.ID,
		"--cluster-slots", strconv.Itoa(n), "--cluster-yes")
	if err != nil {
		return fmt.Errorf("redis-cli --cluster reshard: %w\n%s", err, tail(out))
	}
	return c.WaitStable(ctx)
}
