package cluster

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
)

// Role is a node's role in its shard.
type Role uint8

const (
	Primary Role = iota
	Replica
)

func (r Role) String() string {
	if r == Replica {
		return "replica"
	}
	return "primary"
}

// Health is a node's state as CLUSTER SHARDS reports it.
type Health uint8

const (
	// Online: serving. CLUSTER SLOTS lists only nodes in this state
	// (besides primaries), so its nodes are all Online.
	Online Health = iota
	// Loading: a replica that has not synced with its primary yet.
	Loading
	// Failed: the cluster has marked the node as failed.
	Failed
)

func (h Health) String() string {
	switch h {
	case Loading:
		return "loading"
	case Failed:
		return "failed"
	}
	return "online"
}

// Node is one node of a cluster, as a Topology describes it.
type Node struct {
	ID string
	// Addr is host:port to dial: the node's preferred endpoint (its IP,
	// or its hostname under cluster-preferred-endpoint-type hostname)
	// and the port for the proxy's transport (tls-port over TLS).
	Addr       string
	IP         string // "" when the reply did not say (CLUSTER SLOTS with an IP endpoint)
	Hostname   string // cluster-announce-hostname, "" when none
	Role       Role
	Health     Health
	ReplOffset int64 // replication offset (CLUSTER SHARDS only)
}

// SlotRange is the slots from Start to End, both included.
type SlotRange struct{ Start, End int }

// Shard is a primary, its replicas and the slots it serves.
type Shard struct {
	Primary  *Node
	Replicas []*Node
	Slots    []SlotRange // in order, merged where adjacent
}

// Topology is a cluster's slot map as one node reported it: which primary
// serves each slot, and every node. It is immutable; lookups are array
// reads.
type Topology struct {
	// From is the address of the node that reported it.
	From   string
	shards []Shard
	owner  [SlotCount]uint16 // index into shards plus one; 0: no owner
	nodes  []*Node           // sorted by Addr
	served int               // slots with an owner
}

// Primary returns the primary serving slot, or nil when none does.
func (t *Topology) Primary(slot int) *Node {
	if s := t.Shard(slot); s != nil {
		return s.Primary
	}
	return nil
}

// Shard returns the shard serving slot, or nil when none does.
func (t *Topology) Shard(slot int) *Shard {
	if slot < 0 || slot >= SlotCount || t.owner[slot] == 0 {
		return nil
	}
	return &t.shards[t.owner[slot]-1]
}

// Shards returns every shard, those without slots included, ordered by
// their first slot (slot-less ones last, by primary address).
func (t *Topology) Shards() []Shard { return t.shards }

// Nodes returns every node, ordered by address.
func (t *Topology) Nodes() []*Node { return t.nodes }

// Node returns the node with the given address, or nil.
func (t *Topology) Node(addr string) *Node {
	i := sort.Search(len(t.nodes), func(i int) bool { return t.nodes[i].Addr >= addr })
	if i < len(t.nodes) && t.nodes[i].Addr == addr {
		return t.nodes[i]
	}
	return nil
}

// Covered reports whether every slot has a primary, which a cluster needs
// (with cluster-require-full-coverage, the default) to serve any command.
func (t *Topology) Covered() bool { return t.served == SlotCount }

// Uncovered returns the slot ranges no primary serves.
func (t *Topology) Uncovered() []SlotRange {
	var out []SlotRange
	for s := 0; s < SlotCount; s++ {
		if t.owner[s] != 0 {
			continue
		}
		if n := len(out); n > 0 && out[n-1].End == s-1 {
			out[n-1].End = s
		} else {
			out = append(out, SlotRange{s, s})
		}
	}
	return out
}

// Equal reports whether u describes the same cluster: the same nodes
// with the same IDs, roles and health, and the same primary for every
// slot. Replication offsets are not compared, so a refresh that finds
// nothing new can keep the old Topology.
func (t *Topology) Equal(u *Topology) bool {
	if t == nil || u == nil {
		return t == u
	}
	if len(t.nodes) != len(u.nodes) || len(t.shards) != len(u.shards) {
		return false
	}
	for i, n := range t.nodes {
		m := u.nodes[i]
		if n.Addr != m.Addr || n.ID != m.ID || n.Role != m.Role || n.Health != m.Health {
			return false
		}
	}
	for s := range t.owner {
		a, b := t.Primary(s), u.Primary(s)
		if (a == nil) != (b == nil) || a != nil && a.Addr != b.Addr {
			return false
		}
	}
	return true
}

// String summarises the topology for logs: each shard's primary, slots
// and replicas.
func (t *Topology) String() string {
	var b strings.Builder
	for i, sh := range t.shards {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(sh.Primary.Addr)
		if sh.Primary.Health != Online {
			b.WriteString("(" + sh.Primary.Health.String() + ")")
		}
		for j, r := range sh.Slots {
			if j == 0 {
				b.WriteByte(' ')
			} else {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(r.Start))
			if r.End != r.Start {
				b.WriteString("-" + strconv.Itoa(r.End))
			}
		}
		for _, r := range sh.Replicas {
			b.WriteString(" +" + r.Addr)
			if r.Health != Online {
				b.WriteString("(" + r.Health.String() + ")")
			}
		}
	}
	if u := t.Uncovered(); len(u) > 0 {
		fmt.Fprintf(&b, "; %d slot ranges not served", len(u))
	}
	return b.String()
}

// endpoint picks the host to dial: the preferred endpoint, the host the
// reply came from when the cluster does not know it (an empty endpoint,
// as the cluster specification says), the IP when the preferred hostname
// is unknown ("?").
func endpoint(ep, ip, from string) string {
	switch ep {
	case "":
		h, _, err := net.SplitHostPort(from)
		if err != nil || h == "" {
			return ip
		}
		return h
	case "?":
		return ip
	}
	return ep
}

// builder collects shards and checks that no slot has two owners.
type builder struct {
	t     *Topology
	byKey map[string]*Node
}

func newBuilder(from string) *builder {
	return &builder{t: &Topology{From: from}, byKey: map[string]*Node{}}
}

// node returns the one Node for an ID (or address, when the reply has no
// ID), so a node listed in several slot ranges is one value.
func (b *builder) node(n *Node) *Node {
	key := n.ID
	if key == "" {
		key = "@" + n.Addr
	}
	if old, ok := b.byKey[key]; ok {
		return old
	}
	b.byKey[key] = n
	b.t.nodes = append(b.t.nodes, n)
	return n
}

func (b *builder) addSlots(shard int, r SlotRange) error {
	if r.Start < 0 || r.End >= SlotCount || r.Start > r.End {
		return fmt.Errorf("slot range %d-%d out of 0-%d", r.Start, r.End, SlotCount-1)
	}
	for s := r.Start; s <= r.End; s++ {
		if o := b.t.owner[s]; o != 0 && int(o) != shard+1 {
			return fmt.Errorf("slot %d served by both %s and %s", s, b.t.shards[o-1].Primary.Addr, b.t.shards[shard].Primary.Addr)
		}
		b.t.owner[s] = uint16(shard + 1)
	}
	b.t.shards[shard].Slots = append(b.t.shards[shard].Slots, r)
	return nil
}

// finish orders shards by first slot, merges adjacent ranges and
// renumbers the slot owners.
func (b *builder) finish() (*Topology, error) {
	t := b.t
	for i := range t.shards {
		sh := &t.shards[i]
		sort.Slice(sh.Slots, func(x, y int) bool { return sh.Slots[x].Start < sh.Slots[y].Start })
		merged := sh.Slots[:0]
		for _, r := range sh.Slots {
			if n := len(merged); n > 0 && merged[n-1].End+1 >= r.Start {
				merged[n-1].End = max(merged[n-1].End, r.End)
				continue
			}
			merged = append(merged, r)
		}
		sh.Slots = merged
	}
	old := make([]int, len(t.shards)) // old index of each new position
	for i := range old {
		old[i] = i
	}
	sort.SliceStable(old, func(x, y int) bool {
		a, c := t.shards[old[x]], t.shards[old[y]]
		switch {
		case len(a.Slots) == 0 || len(c.Slots) == 0:
			if len(a.Slots) != len(c.Slots) {
				return len(a.Slots) > 0
			}
			return a.Primary.Addr < c.Primary.Addr
		}
		return a.Slots[0].Start < c.Slots[0].Start
	})
	newIndex := make([]uint16, len(t.shards)+1)
	shards := make([]Shard, len(t.shards))
	for n, o := range old {
		shards[n] = t.shards[o]
		newIndex[o+1] = uint16(n + 1)
	}
	t.shards = shards
	for s, o := range t.owner {
		t.owner[s] = newIndex[o]
		if o != 0 {
			t.served++
		}
	}
	sort.Slice(t.nodes, func(i, j int) bool { return t.nodes[i].Addr < t.nodes[j].Addr })
	for i := 1; i < len(t.nodes); i++ {
		if t.nodes[i].Addr == t.nodes[i-1].Addr {
			return nil, fmt.Errorf("nodes %s and %s both at %s", t.nodes[i-1].ID, t.nodes[i].ID, t.nodes[i].Addr)
		}
	}
	return t, nil
}

// ParseShards reads a CLUSTER SHARDS reply (Redis 7.0+), RESP2 or RESP3,
// as go-redis's Do returns it. from is the address of the node that sent
// it; useTLS picks each node's tls-port.
func ParseShards(reply any, from string, useTLS bool) (*Topology, error) {
	shards, ok := array(reply)
	if !ok {
		return nil, fmt.Errorf("CLUSTER SHARDS: %T, want an array", reply)
	}
	b := newBuilder(from)
	for i, sh := range shards {
		if err := b.shard(sh, from, useTLS); err != nil {
			return nil, fmt.Errorf("CLUSTER SHARDS: shard %d: %w", i, err)
		}
	}
	t, err := b.finish()
	if err != nil {
		return nil, fmt.Errorf("CLUSTER SHARDS: %w", err)
	}
	return t, nil
}

func (b *builder) shard(v any, from string, useTLS bool) error {
	var slots []int64
	var nodes []*Node
	err := pairs(v, func(k string, v any) error {
		switch k {
		case "slots":
			a, ok := array(v)
			if !ok || len(a)%2 != 0 {
				return errors.New("slots: want an array of start/end pairs")
			}
			for _, x := range a {
				n, ok := integer(x)
				if !ok {
					return fmt.Errorf("slots: %T, want an integer", x)
				}
				slots = append(slots, n)
			}
		case "nodes":
			a, ok := array(v)
			if !ok {
				return errors.New("nodes: want an array")
			}
			for _, x := range a {
				n, err := shardNode(x, from, useTLS)
				if err != nil {
					return err
				}
				nodes = append(nodes, n)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	var primary *Node
	var replicas []*Node
	for _, n := range nodes {
		n = b.node(n)
		if n.Role == Primary && primary == nil {
			primary = n
		} else if n != primary {
			replicas = append(replicas, n)
		}
	}
	if primary == nil {
		if len(slots) > 0 {
			return errors.New("slots but no primary")
		}
		return nil // a shard of replicas alone serves nothing
	}
	b.t.shards = append(b.t.shards, Shard{Primary: primary, Replicas: replicas})
	idx := len(b.t.shards) - 1
	for i := 0; i < len(slots); i += 2 {
		if slots[i] < 0 || slots[i+1] >= SlotCount || slots[i] > slots[i+1] {
			return fmt.Errorf("slot range %d-%d out of 0-%d", slots[i], slots[i+1], SlotCount-1)
		}
		if err := b.addSlots(idx, SlotRange{int(slots[i]), int(slots[i+1])}); err != nil {
			return err
		}
	}
	return nil
}

func shardNode(v any, from string, useTLS bool) (*Node, error) {
	n := &Node{}
	var ep string
	var port, tlsPort int64
	err := pairs(v, func(k string, v any) error {
		var ok bool
		switch k {
		case "id":
			n.ID, ok = str(v)
		case "ip":
			n.IP, ok = str(v)
		case "endpoint":
			ep, ok = str(v)
		case "hostname":
			n.Hostname, ok = str(v)
		case "port":
			port, ok = integer(v)
		case "tls-port":
			tlsPort, ok = integer(v)
		case "replication-offset":
			n.ReplOffset, ok = integer(v)
		case "role":
			var r string
			if r, ok = str(v); ok && r != "master" {
				n.Role = Replica
			}
		case "health":
			var h string
			if h, ok = str(v); ok {
				switch h {
				case "online":
				case "loading":
					n.Health = Loading
				default: // "fail" (7.0), "failed"
					n.Health = Failed
				}
			}
		default:
			ok = true // fields of later versions
		}
		if !ok {
			return fmt.Errorf("node %s: %T", k, v)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Over TLS the tls-port; without, the plaintext port (which a TLS
	// cluster reports only when it has one).
	if useTLS && tlsPort > 0 {
		port = tlsPort
	}
	if port <= 0 || port > 65535 {
		return nil, fmt.Errorf("node %s: no usable port (port %d, tls-port %d)", n.ID, port, tlsPort)
	}
	host := endpoint(ep, n.IP, from)
	if host == "" {
		return nil, fmt.Errorf("node %s: no endpoint or IP", n.ID)
	}
	n.Addr = net.JoinHostPort(host, strconv.FormatInt(port, 10))
	return n, nil
}

// ParseSlots reads a CLUSTER SLOTS reply, for clusters older than 7.0
// (no CLUSTER SHARDS). Its ports are already those for the connection it
// was asked on (TLS or not). It lists only available replicas and says
// nothing of health, so every node is Online.
func ParseSlots(reply any, from string) (*Topology, error) {
	ranges, ok := array(reply)
	if !ok {
		return nil, fmt.Errorf("CLUSTER SLOTS: %T, want an array", reply)
	}
	b := newBuilder(from)
	shardOf := map[*Node]int{}
	for i, rv := range ranges {
		r, ok := array(rv)
		if !ok || len(r) < 3 {
			return nil, fmt.Errorf("CLUSTER SLOTS: range %d: want [start end primary replicas...]", i)
		}
		start, ok1 := integer(r[0])
		end, ok2 := integer(r[1])
		if !ok1 || !ok2 || start < 0 || end >= SlotCount || start > end {
			return nil, fmt.Errorf("CLUSTER SLOTS: range %d: bad slots %v-%v", i, r[0], r[1])
		}
		var primary *Node
		for j, nv := range r[2:] {
			n, err := slotsNode(nv, from)
			if err != nil {
				return nil, fmt.Errorf("CLUSTER SLOTS: range %d: %w", i, err)
			}
			if j > 0 {
				n.Role = Replica
			}
			role := n.Role
			if n = b.node(n); n.Role != role {
				return nil, fmt.Errorf("CLUSTER SLOTS: %s is listed as primary and as replica", n.Addr)
			}
			if j == 0 {
				primary = n
				if _, ok := shardOf[n]; !ok {
					b.t.shards = append(b.t.shards, Shard{Primary: n})
					shardOf[n] = len(b.t.shards) - 1
				}
				continue
			}
			sh := &b.t.shards[shardOf[primary]]
			known := false
			for _, x := range sh.Replicas {
				known = known || x == n
			}
			if !known {
				sh.Replicas = append(sh.Replicas, n)
			}
		}
		if err := b.addSlots(shardOf[primary], SlotRange{int(start), int(end)}); err != nil {
			return nil, fmt.Errorf("CLUSTER SLOTS: %w", err)
		}
	}
	t, err := b.finish()
	if err != nil {
		return nil, fmt.Errorf("CLUSTER SLOTS: %w", err)
	}
	return t, nil
}

func slotsNode(v any, from string) (*Node, error) {
	a, ok := array(v)
	if !ok || len(a) < 2 {
		return nil, errors.New("node: want [endpoint port id ...]")
	}
	n := &Node{}
	ep, ok := str(a[0])
	if !ok && a[0] != nil { // nil: unknown-endpoint
		return nil, fmt.Errorf("node endpoint %T", a[0])
	}
	port, ok := integer(a[1])
	if !ok || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("node port %v", a[1])
	}
	if len(a) > 2 {
		if n.ID, ok = str(a[2]); !ok {
			return nil, fmt.Errorf("node id %T", a[2])
		}
	}
	if len(a) > 3 {
		err := pairs(a[3], func(k string, v any) error {
			s, _ := str(v)
			switch k {
			case "ip":
				n.IP = s
			case "hostname":
				n.Hostname = s
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("node metadata: %w", err)
		}
	}
	if ep != "" && ep != "?" && n.IP == "" && net.ParseIP(ep) != nil {
		n.IP = ep // the preferred endpoint is the IP
	}
	host := endpoint(ep, n.IP, from)
	if host == "" {
		return nil, fmt.Errorf("node %s: no endpoint or IP", n.ID)
	}
	n.Addr = net.JoinHostPort(host, strconv.FormatInt(port, 10))
	return n, nil
}
