package cluster

import (
	"context"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// checkTopology compares t with the cluster as redistest sees it.
func checkTopology(t *testing.T, c *redistest.Cluster, top *Topology) {
	t.Helper()
	if !top.Covered() {
		t.Fatalf("not covered: %v", top.Uncovered())
	}
	prims := c.Primaries(t)
	for _, p := range prims {
		n := top.Node(p.Addr)
		if n == nil || n.Role != Primary || n.ID != p.ID || n.Health != Online {
			t.Fatalf("primary %s: %+v", p, n)
		}
		for _, s := range c.SlotsOf(t, p) {
			if got := top.Primary(s); got != n {
				t.Fatalf("slot %d: primary %v, want %s", s, got, p)
			}
		}
		var want, got []string
		for _, r := range c.ReplicasOf(t, p) {
			want = append(want, r.Addr)
		}
		for _, r := range top.Shard(c.SlotsOf(t, p)[0]).Replicas {
			if r.Health != Failed {
				got = append(got, r.Addr)
			}
		}
		sort.Strings(want)
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Fatalf("replicas of %s: %v, want %v", p, got, want)
		}
	}
	if got := len(top.Shards()); got < len(prims) {
		t.Fatalf("%d shards for %d primaries", got, len(prims))
	}
}

func nodeClient(c *redistest.Cluster, n *redistest.ClusterNode, protocol int) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: n.Addr, Protocol: protocol, DisableIdentity: true,
		Username: c.User(), Password: c.Password(), TLSConfig: c.TLSConfig(),
	})
}

func TestParseFromRedis(t *testing.T) {
	c := needCluster(t)
	for _, protocol := range []int{2, 3} {
		for _, n := range c.Nodes {
			if !n.Alive() {
				continue
			}
			rdb := nodeClient(c, n, protocol)
			shards, err := rdb.Do(bg(), "CLUSTER", "SHARDS").Result()
			if err != nil {
				t.Fatal(err)
			}
			top, err := ParseShards(shards, n.Addr, false)
			if err != nil {
				t.Fatalf("RESP%d from %s: %v", protocol, n, err)
			}
			checkTopology(t, c, top)
			if top.From != n.Addr || len(top.Nodes()) != len(c.Nodes) {
				t.Fatalf("From %s, %d nodes", top.From, len(top.Nodes()))
			}
			slots, err := rdb.Do(bg(), "CLUSTER", "SLOTS").Result()
			if err != nil {
				t.Fatal(err)
			}
			fromSlots, err := ParseSlots(slots, n.Addr)
			if err != nil {
				t.Fatalf("RESP%d from %s: %v", protocol, n, err)
			}
			checkTopology(t, c, fromSlots)
			if !fromSlots.Equal(top) || !top.Equal(fromSlots) {
				t.Fatalf("CLUSTER SLOTS gives\n%v\nCLUSTER SHARDS\n%v", fromSlots, top)
			}
			rdb.Close()
		}
	}
}

func TestFetcherFollowsFailover(t *testing.T) {
	c := needCluster(t)
	seeds := append([]string{"127.0.0.1:1"}, c.Addrs()...) // a dead seed first
	f := NewFetcher(seeds, Dial{Timeout: time.Second})
	defer f.Close()
	ctx, cancel := context.WithTimeout(bg(), time.Minute)
	defer cancel()
	top, err := f.Topology(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkTopology(t, c, top)
	t.Logf("topology: %v", top)

	// A manual failover: the replica is the primary of the same slots.
	p := c.Primaries(t)[1]
	r := c.ReplicasOf(t, p)[0]
	slot := c.SlotsOf(t, p)[0]
	c.Failover(t, r)
	top2, err := f.Topology(ctx, top)
	if err != nil {
		t.Fatal(err)
	}
	checkTopology(t, c, top2)
	if got := top2.Primary(slot); got == nil || got.Addr != r.Addr || top2.Equal(top) {
		t.Fatalf("after CLUSTER FAILOVER slot %d is on %v, want %s", slot, got, r)
	}

	// A killed primary: asked first (it was in the last topology), it
	// does not answer; the others report it failed.
	killed, promoted := c.KillPrimary(t, 0)
	top3, err := f.Topology(ctx, top2)
	if err != nil {
		t.Fatal(err)
	}
	checkTopology(t, c, top3)
	if n := top3.Node(killed.Addr); n == nil || n.Health != Failed {
		t.Fatalf("killed node %s: %+v", killed, n)
	}
	if top3.From == killed.Addr || top3.Primary(0).Addr != promoted.Addr {
		t.Fatalf("from %s, slot 0 on %s; want %s", top3.From, top3.Primary(0).Addr, promoted)
	}
	c.Restart(t, killed)
	top4, err := f.Topology(ctx, top3)
	if err != nil {
		t.Fatal(err)
	}
	checkTopology(t, c, top4)
	if n := top4.Node(killed.Addr); n == nil || n.Health != Online || n.Role != Replica {
		t.Fatalf("restarted node %s: %+v", killed, n)
	}
}

func TestFetcherErrors(t *testing.T) {
	f := NewFetcher([]string{"127.0.0.1:1", "127.0.0.1:2"}, Dial{Timeout: 200 * time.Millisecond})
	_, err := f.Topology(bg(), nil)
	if err == nil || !strings.Contains(err.Error(), "no node of 2 answered") || !strings.Contains(err.Error(), "127.0.0.1:2") {
		t.Fatalf("Topology from dead seeds: %v", err)
	}
	_, err = f.Table(bg(), nil)
	if err == nil || !strings.Contains(err.Error(), "no node answered COMMAND") {
		t.Fatalf("Table from dead seeds: %v", err)
	}
	f.Close()
	if _, err := f.Topology(bg(), nil); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Topology after Close: %v", err)
	}
	// The error of a Redis without CLUSTER SHARDS (here: one it does not
	// know either) is what makes the Fetcher fall back to CLUSTER SLOTS.
	err = anyNode(t).Do(bg(), "CLUSTER", "NOSUCHTHING").Err()
	if !unknownSubcommand(err) {
		t.Fatalf("unknownSubcommand(%v) = false", err)
	}
	if unknownSubcommand(context.DeadlineExceeded) {
		t.Fatal("a timeout is an unknown subcommand")
	}
}

// TestFetcherTLS reads a TLS cluster's topology with credentials: node
// addresses carry the TLS ports.
func TestFetcherTLS(t *testing.T) {
	needCluster(t)
	files := redistest.NewTLSFiles(t)
	c := redistest.StartCluster(t, redistest.WithShards(3, 0), redistest.WithClusterTLS(files), redistest.WithAuth("proxy", "pw-123456"))
	f := NewFetcher(c.Addrs()[:1], Dial{TLS: c.TLSConfig(), Username: "proxy", Password: "pw-123456"})
	defer f.Close()
	top, err := f.Topology(bg(), nil)
	if err != nil {
		t.Fatal(err)
	}
	checkTopology(t, c, top)
	tab, err := f.Table(bg(), top)
	if err != nil {
		t.Fatal(err)
	}
	if c := tab.Command("get"); c == nil || !c.HasKeys() {
		t.Fatalf("GET from the TLS cluster's COMMAND: %+v", c)
	}
	// Without credentials the nodes refuse, and the error says so.
	bad := NewFetcher(c.Addrs()[:1], Dial{TLS: c.TLSConfig()})
	defer bad.Close()
	if _, err := bad.Topology(bg(), nil); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("Topology without credentials: %v", err)
	}
}

// shardsReply builds a CLUSTER SHARDS reply in RESP3 form.
func shardsReply(shards ...[]any) []any {
	var out []any
	for _, s := range shards {
		out = append(out, map[any]any{"slots": s[0], "nodes": s[1]})
	}
	return out
}

func shardNodeReply(id, ip, endpoint string, port, tlsPort int, role, health string) map[any]any {
	m := map[any]any{"id": id, "ip": ip, "endpoint": endpoint, "role": role, "health": health, "replication-offset": int64(5)}
	if port > 0 {
		m["port"] = int64(port)
	}
	if tlsPort > 0 {
		m["tls-port"] = int64(tlsPort)
	}
	return m
}

func TestParseShards(t *testing.T) {
	full := []any{int64(0), int64(8000), int64(8001), int64(16383)}
	tests := []struct {
		name  string
		reply any
		from  string
		tls   bool
		err   string
		check func(t *testing.T, top *Topology)
	}{
		{
			name: "endpoints",
			reply: shardsReply(
				[]any{full[:2], []any{
					shardNodeReply("a", "10.0.0.1", "10.0.0.1", 7000, 0, "master", "online"),
					shardNodeReply("b", "10.0.0.2", "", 7001, 0, "replica", "loading"), // unknown-endpoint: the queried host
				}},
				[]any{full[2:], []any{
					shardNodeReply("c", "10.0.0.3", "?", 7002, 0, "master", "online"), // hostname unknown: the IP
					shardNodeReply("d", "fe80::1", "redis-d", 7003, 0, "replica", "fail"),
				}},
			),
			from: "seed.internal:7000",
			check: func(t *testing.T, top *Topology) {
				if !top.Covered() || top.Primary(0).Addr != "10.0.0.1:7000" || top.Primary(16383).Addr != "10.0.0.3:7002" {
					t.Fatalf("%v", top)
				}
				if n := top.Node("seed.internal:7001"); n == nil || n.Role != Replica || n.Health != Loading || n.ReplOffset != 5 {
					t.Fatalf("unknown-endpoint replica: %+v", n)
				}
				if n := top.Node("redis-d:7003"); n == nil || n.Health != Failed || n.IP != "fe80::1" {
					t.Fatalf("hostname replica: %+v", n)
				}
				if got := top.String(); got != "10.0.0.1:7000 0-8000 +seed.internal:7001(loading); 10.0.0.3:7002 8001-16383 +redis-d:7003(failed)" {
					t.Fatalf("String() = %s", got)
				}
			},
		},
		{
			name: "tls ports",
			reply: shardsReply([]any{full, []any{
				shardNodeReply("a", "::1", "::1", 0, 7100, "master", "online"),
				shardNodeReply("b", "::1", "::1", 7001, 7101, "replica", "online"),
			}}),
			tls: true,
			check: func(t *testing.T, top *Topology) {
				if top.Primary(9000).Addr != "[::1]:7100" || top.Shards()[0].Replicas[0].Addr != "[::1]:7101" {
					t.Fatalf("%v", top)
				}
			},
		},
		{
			name: "uncovered and a slot-less primary",
			reply: shardsReply(
				[]any{[]any{int64(0), int64(99), int64(200), int64(300), int64(100), int64(199)}, []any{shardNodeReply("a", "h", "h", 1, 0, "master", "online")}},
				[]any{[]any{}, []any{shardNodeReply("z", "h", "h", 2, 0, "master", "fail")}},
			),
			check: func(t *testing.T, top *Topology) {
				if top.Covered() || !slices.Equal(top.Uncovered(), []SlotRange{{301, 16383}}) {
					t.Fatalf("uncovered %v", top.Uncovered())
				}
				sh := top.Shards()
				if len(sh) != 2 || !slices.Equal(sh[0].Slots, []SlotRange{{0, 300}}) || len(sh[1].Slots) != 0 || sh[1].Primary.Addr != "h:2" {
					t.Fatalf("shards %+v", sh)
				}
				if top.Primary(301) != nil || top.Shard(-1) != nil || top.Shard(SlotCount) != nil {
					t.Fatal("a slot without owner has one")
				}
			},
		},
		{name: "not an array", reply: "x", err: "CLUSTER SHARDS: string, want an array"},
		{name: "two owners", reply: shardsReply(
			[]any{[]any{int64(0), int64(10)}, []any{shardNodeReply("a", "h", "h", 1, 0, "master", "online")}},
			[]any{[]any{int64(10), int64(20)}, []any{shardNodeReply("b", "h", "h", 2, 0, "master", "online")}},
		), err: "slot 10 served by both h:1 and h:2"},
		{name: "slot range", reply: shardsReply([]any{[]any{int64(0), int64(16384)}, []any{shardNodeReply("a", "h", "h", 1, 0, "master", "online")}}), err: "slot range 0-16384 out of 0-16383"},
		{name: "odd slots", reply: shardsReply([]any{[]any{int64(0)}, []any{}}), err: "slots: want an array of start/end pairs"},
		{name: "no port", reply: shardsReply([]any{full, []any{shardNodeReply("a", "h", "h", 0, 7100, "master", "online")}}), err: "node a: no usable port"},
		{name: "no primary", reply: shardsReply([]any{full, []any{shardNodeReply("a", "h", "h", 1, 0, "replica", "online")}}), err: "slots but no primary"},
		{name: "same address", reply: shardsReply([]any{full, []any{
			shardNodeReply("a", "h", "h", 1, 0, "master", "online"), shardNodeReply("b", "h", "h", 1, 0, "replica", "online"),
		}}), err: "nodes a and b both at h:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Each reply in both protocols: RESP3 maps, RESP2 flat arrays.
			for _, reply := range []any{tt.reply, toRESP2(tt.reply)} {
				top, err := ParseShards(reply, tt.from, tt.tls)
				if tt.err != "" {
					if err == nil || !strings.Contains(err.Error(), tt.err) {
						t.Fatalf("error %v, want %q", err, tt.err)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				tt.check(t, top)
			}
		})
	}
}

// toRESP2 turns maps into flat key/value arrays, as a RESP2 reply has them.
func toRESP2(v any) any {
	switch x := v.(type) {
	case map[any]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k.(string))
		}
		sort.Strings(keys)
		var out []any
		for _, k := range keys {
			out = append(out, k, toRESP2(x[k]))
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = toRESP2(e)
		}
		return out
	}
	return v
}

func TestParseSlots(t *testing.T) {
	reply := []any{
		[]any{int64(0), int64(99), []any{"10.0.0.1", int64(7000), "a"}, []any{"10.0.0.2", int64(7001), "b"}},
		[]any{int64(100), int64(16383), []any{nil, int64(7002), "c", map[any]any{"ip": "10.0.0.3"}}, []any{"?", int64(7003), "d", []any{"ip", "10.0.0.4"}}},
		[]any{int64(50), int64(49), []any{"10.0.0.1", int64(7000), "a"}},
	}
	if _, err := ParseSlots(reply, "seed:1"); err == nil || !strings.Contains(err.Error(), "range 2: bad slots 50-49") {
		t.Fatalf("bad range: %v", err)
	}
	top, err := ParseSlots(reply[:2], "seed:1")
	if err != nil {
		t.Fatal(err)
	}
	if !top.Covered() || top.Primary(0).Addr != "10.0.0.1:7000" || top.Primary(100).Addr != "seed:7002" || top.Primary(100).IP != "10.0.0.3" {
		t.Fatalf("%v", top)
	}
	if r := top.Shard(100).Replicas; len(r) != 1 || r[0].Addr != "10.0.0.4:7003" || r[0].Role != Replica {
		t.Fatalf("replicas %+v", r)
	}
	bad := []any{[]any{int64(0), int64(1), []any{"h", int64(1), "a"}}, []any{int64(2), int64(3), []any{"h", int64(2), "b"}, []any{"h", int64(1), "a"}}}
	if _, err := ParseSlots(bad, "s:1"); err == nil || !strings.Contains(err.Error(), "listed as primary and as replica") {
		t.Fatalf("node in two roles: %v", err)
	}
}

// checkInvariants is what any Topology, however odd its source, must
// satisfy.
func checkInvariants(t *testing.T, top *Topology) {
	covered := 0
	for s := 0; s < SlotCount; s++ {
		if p := top.Primary(s); p != nil {
			covered++
			if top.Node(p.Addr) != p || p.Role != Primary {
				t.Fatalf("slot %d: primary %+v is not among the nodes as primary", s, p)
			}
		}
	}
	missing := 0
	for _, r := range top.Uncovered() {
		missing += r.End - r.Start + 1
	}
	if covered+missing != SlotCount || top.Covered() != (missing == 0) {
		t.Fatalf("covered %d + uncovered %d", covered, missing)
	}
	for i, sh := range top.Shards() {
		for _, r := range sh.Slots {
			for s := r.Start; s <= r.End; s++ {
				if top.Shard(s) != &top.Shards()[i] {
					t.Fatalf("slot %d not owned by its shard", s)
				}
			}
		}
	}
	_ = top.String()
	if !top.Equal(top) {
		t.Fatal("not Equal to itself")
	}
}

func FuzzParseShards(f *testing.F) {
	full := []any{int64(0), int64(16383)}
	f.Add(encodeRESP(shardsReply([]any{full, []any{shardNodeReply("a", "10.0.0.1", "10.0.0.1", 7000, 0, "master", "online")}})), false)
	f.Add(encodeRESP(toRESP2(shardsReply([]any{full[:1], []any{shardNodeReply("a", "::1", "", 1, 2, "master", "online")}}))), true)
	f.Add(encodeRESP([]any{[]any{int64(0), int64(99), []any{"h", int64(1), "a"}}}), false)
	f.Fuzz(func(t *testing.T, data []byte, useTLS bool) {
		v, _, err := decodeRESP(data)
		if err != nil {
			return
		}
		if top, err := ParseShards(v, "seed:1", useTLS); err == nil {
			checkInvariants(t, top)
		}
		if top, err := ParseSlots(v, "seed:1"); err == nil {
			checkInvariants(t, top)
		}
	})
}
