package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/zap"

	"github.com/exproxy/exproxy/config"
	"github.com/exproxy/exproxy/proxy"
)

// health answers /healthz and /readyz.
type health struct {
	// serving is true from the moment the proxy accepts clients until
	// shutdown starts, so a load balancer stops sending new connections
	// while the proxy drains.
	serving atomic.Bool
	stats   func() proxy.Stats
	// cluster, in front of a Redis Cluster, gives its per-node counters.
	cluster func() (proxy.ClusterStats, bool)
	// ping checks the upstream on a connection of the proxy's own, never
	// on a client's: a client must see in INFO and MONITOR only what it
	// sent itself.
	ping     func(ctx context.Context) error
	timeout  time.Duration
	upstream string
	closeFn  func() error
	// collectors are the extensions' metrics, served on /metrics beside
	// the proxy's (the contention tracker's counters).
	collectors []prometheus.Collector
}

func newHealth(stats func() proxy.Stats, up proxy.Upstream, dialTimeout time.Duration) *health {
	c := redis.NewClient(&redis.Options{
		Network:   up.Network,
		Addr:      up.Addr,
		Username:  up.Username,
		Password:  up.Password,
		DB:        up.DB,
		TLSConfig: up.TLS,
		// RESP2 and no CLIENT SETINFO/MAINT_NOTIFICATIONS: the check should
		// send PING and nothing a Redis 7.0 might refuse.
		Protocol:                 2,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		DialTimeout:              dialTimeout,
		ReadTimeout:              dialTimeout,
		WriteTimeout:             dialTimeout,
		PoolSize:                 1,
		MaxRetries:               -1,
	})
	return &health{
		stats:    stats,
		ping:     func(ctx context.Context) error { return c.Ping(ctx).Err() },
		timeout:  dialTimeout + time.Second,
		upstream: up.String(),
		closeFn:  c.Close,
	}
}

// clusterReady makes /readyz, in front of a Redis Cluster, ready when
// the proxy has the slot map and every slot has a primary: the proxy's
// own connection to one node says little about the others.
func (h *health) clusterReady(ready func() (bool, string), stats func() (proxy.ClusterStats, bool)) {
	h.cluster = stats
	h.close()
	h.closeFn = nil
	h.ping = func(context.Context) error {
		if ok, why := ready(); !ok {
			return errors.New(why)
		}
		return nil
	}
}

func (h *health) close() {
	if h.closeFn != nil {
		_ = h.closeFn()
	}
}

func (h *health) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !h.serving.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not serving")
		return
	}
	fmt.Fprintln(w, "ok")
}

func (h *health) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !h.serving.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not serving")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	if err := h.ping(ctx); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "upstream %s: %v\n", h.upstream, err)
		return
	}
	fmt.Fprintln(w, "ok")
}

// statsCollector exports proxy.Server.Stats as Prometheus metrics, read at
// scrape time so the proxy keeps only its own atomic counters.
type statsCollector struct {
	stats func() proxy.Stats
	descs []*prometheus.Desc
}

var statsMetrics = []struct {
	name, help string
	kind       prometheus.ValueType
	value      func(proxy.Stats) int64
}{
	{"exproxy_clients_connected", "Client connections open now.", prometheus.GaugeValue, func(s proxy.Stats) int64 { return s.ClientsConnected }},
	{"exproxy_clients_total", "Client connections accepted since start.", prometheus.CounterValue, func(s proxy.Stats) int64 { return s.ClientsTotal }},
	{"exproxy_clients_rejected_total", "Client connections refused by max-clients.", prometheus.CounterValue, func(s proxy.Stats) int64 { return s.ClientsRejected }},
	{"exproxy_commands_total", "Commands forwarded upstream.", prometheus.CounterValue, func(s proxy.Stats) int64 { return s.Commands }},
	{"exproxy_upstream_errors_total", "Failed upstream dials and lost upstream connections.", prometheus.CounterValue, func(s proxy.Stats) int64 { return s.UpstreamErrors }},
	{"exproxy_protocol_errors_total", "Malformed client input.", prometheus.CounterValue, func(s proxy.Stats) int64 { return s.ProtocolErrors }},
	{"exproxy_output_limit_closed_total", "Clients disconnected for exceeding client-output-limit.", prometheus.CounterValue, func(s proxy.Stats) int64 { return s.OutputLimitClosed }},
	{"exproxy_upstream_lost_commands_total", "Commands in flight on an upstream connection that was lost; their clients were closed without a reply, as Redis going away closes them.", prometheus.CounterValue, func(s proxy.Stats) int64 { return s.LostCommands }},
	{"exproxy_upstream_connections", "Upstream connections open, of every kind.", prometheus.GaugeValue, func(s proxy.Stats) int64 { return s.UpstreamConns }},
	{"exproxy_shared_upstream_connections", "Shared upstream connections open (upstream-mode shared).", prometheus.GaugeValue, func(s proxy.Stats) int64 { return s.SharedConns }},
	{"exproxy_ready_upstream_connections", "Upstream connections dialled ahead, waiting for a client that needs one of its own.", prometheus.GaugeValue, func(s proxy.Stats) int64 { return s.ReadyConns }},
	{"exproxy_upstream_pools", "Pools of shared upstream connections (one per user, protocol and database in use).", prometheus.GaugeValue, func(s proxy.Stats) int64 { return s.Pools }},
	{"exproxy_sessions_pinned_total", "Times a client took an upstream connection of its own (upstream-mode shared: a transaction, subscription, blocking command, ...).", prometheus.CounterValue, func(s proxy.Stats) int64 { return s.SessionsPinned }},
	{"exproxy_sessions_shared_again_total", "Times a client gave its own upstream connection back and shared again (upstream-mode shared).", prometheus.CounterValue, func(s proxy.Stats) int64 { return s.SessionsShared }},
	{"exproxy_loop_handoffs_total", "Times a client read by the event loop had to wait (its replies before a move, a dial, ...) and was served apart while a new goroutine ran the loop.", prometheus.CounterValue, func(s proxy.Stats) int64 { return s.LoopHandoffs }},
	{"exproxy_shared_upstream_retired_total", "Shared upstream connections retired because their replies stopped while owed (a long script); new commands went to a fresh connection.", prometheus.CounterValue, func(s proxy.Stats) int64 { return s.SharedRetired }},
	{"exproxy_answered_by_leader_total", "Versioned writes answered from the reply of an earlier one with the same key and expected version, sent in the same write to Redis, instead of being sent: EXCAS that Redis could only have refused as stale.", prometheus.CounterValue, func(s proxy.Stats) int64 { return s.AnsweredByLeader }},
	{"exproxy_upstream_auth_required", "1 when Redis requires AUTH (as far as the proxy knows): unauthenticated clients are then held to Redis's pre-AUTH limits.", prometheus.GaugeValue, func(s proxy.Stats) int64 {
		if s.AuthRequired {
			return 1
		}
		return 0
	}},
}

// attributionReady is 1 once the proxy has read Redis's command table
// (proxy.Server.CommandsLoaded), which it does only when contention
// attribution is on: until then the core cannot tell writes, so
// attribution hears of none and counts their conflicts as outside this
// proxy.
func attributionReady(loaded func() bool) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "exproxy_contention_attribution_ready",
		Help: "1 once the proxy has read Redis's command table and reports writes to contention attribution; 0 before (just after start, or while Redis cannot be reached).",
	}, func() float64 {
		if loaded() {
			return 1
		}
		return 0
	})
}

func newStatsCollector(stats func() proxy.Stats) *statsCollector {
	c := &statsCollector{stats: stats}
	for _, m := range statsMetrics {
		c.descs = append(c.descs, prometheus.NewDesc(m.name, m.help, nil, nil))
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	for i, m := range statsMetrics {
		ch <- prometheus.MustNewConstMetric(c.descs[i], m.kind, float64(m.value(s)))
	}
}

// clusterCollector exports the per-node counters of a Redis Cluster
// upstream. Its node label takes only the nodes of the current slot map
// (and former ones with connections open), so the series stay as many as
// the cluster has nodes.
type clusterCollector struct {
	stats                                          func() (proxy.ClusterStats, bool)
	nodes, covered, refreshes                      *prometheus.Desc
	nodeConns, nodeCommands, nodeErrors, redirects *prometheus.Desc
}

func newClusterCollector(stats func() (proxy.ClusterStats, bool)) *clusterCollector {
	node := []string{"node"}
	return &clusterCollector{
		stats:        stats,
		nodes:        prometheus.NewDesc("exproxy_cluster_nodes", "Redis Cluster nodes in the slot map, by role (primary, replica).", []string{"role"}, nil),
		covered:      prometheus.NewDesc("exproxy_cluster_slots_covered", "Hash slots with a primary in the slot map (16384 when the cluster is whole).", nil, nil),
		refreshes:    prometheus.NewDesc("exproxy_cluster_slot_map_refreshes_total", "Times the Redis Cluster slot map was read.", nil, nil),
		nodeConns:    prometheus.NewDesc("exproxy_cluster_node_upstream_connections", "Upstream connections open to a Redis Cluster node.", node, nil),
		nodeCommands: prometheus.NewDesc("exproxy_cluster_node_commands_total", "Commands (and parts of split or fanned-out commands) sent to a Redis Cluster node.", node, nil),
		nodeErrors:   prometheus.NewDesc("exproxy_cluster_node_errors_total", "Failed dials and lost connections to a Redis Cluster node.", node, nil),
		redirects:    prometheus.NewDesc("exproxy_cluster_node_redirects_total", "MOVED and ASK redirections a Redis Cluster node gave that the proxy followed, by kind (moved, ask).", []string{"node", "kind"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.nodes, c.covered, c.refreshes, c.nodeConns, c.nodeCommands, c.nodeErrors, c.redirects} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	cs, ok := c.stats()
	if !ok {
		return
	}
	var primaries, replicas int
	for _, n := range cs.Nodes {
		switch {
		case n.Primary:
			primaries++
		case n.Replica:
			replicas++
		}
		ch <- prometheus.MustNewConstMetric(c.nodeConns, prometheus.GaugeValue, float64(n.Conns), n.Addr)
		ch <- prometheus.MustNewConstMetric(c.nodeCommands, prometheus.CounterValue, float64(n.Commands), n.Addr)
		ch <- prometheus.MustNewConstMetric(c.nodeErrors, prometheus.CounterValue, float64(n.Errors), n.Addr)
		ch <- prometheus.MustNewConstMetric(c.redirects, prometheus.CounterValue, float64(n.Moved), n.Addr, "moved")
		ch <- prometheus.MustNewConstMetric(c.redirects, prometheus.CounterValue, float64(n.Asks), n.Addr, "ask")
	}
	ch <- prometheus.MustNewConstMetric(c.nodes, prometheus.GaugeValue, float64(primaries), "primary")
	ch <- prometheus.MustNewConstMetric(c.nodes, prometheus.GaugeValue, float64(replicas), "replica")
	ch <- prometheus.MustNewConstMetric(c.covered, prometheus.GaugeValue, float64(cs.SlotsCovered))
	ch <- prometheus.MustNewConstMetric(c.refreshes, prometheus.CounterValue, float64(cs.Refreshes))
}

// metricsHandler serves the proxy's counters (and, in front of a Redis
// Cluster, its per-node ones: cluster may be nil), build info and the Go
// runtime and process metrics from a registry of its own (not the global
// one, so nothing an imported package registers leaks in).
func metricsHandler(stats func() proxy.Stats, cluster func() (proxy.ClusterStats, bool), extra ...prometheus.Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(extra...)
	if cluster != nil {
		reg.MustRegister(newClusterCollector(cluster))
	}
	reg.MustRegister(
		newStatsCollector(stats),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "exproxy_build_info",
			Help:        "Always 1; the version label names the build.",
			ConstLabels: prometheus.Labels{"version": version},
		}, func() float64 { return 1 }),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// adminMux routes the admin endpoints; contention may be nil (tracking
// off). The private paths go through o.private.
func adminMux(h *health, contention http.Handler, o adminOptions) http.Handler {
	mux := http.NewServeMux()
	if o.pprof {
		mux.Handle("/debug/pprof/", o.private(http.HandlerFunc(pprof.Index)))
		// Never pprof.Cmdline: it shows os.Args, passwords and all.
		mux.Handle("/debug/pprof/cmdline", o.private(cmdlineHandler(o.secrets)))
		mux.Handle("/debug/pprof/profile", o.private(http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/symbol", o.private(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("/debug/pprof/trace", o.private(http.HandlerFunc(pprof.Trace)))
	}
	mux.HandleFunc("GET /healthz", h.healthz)
	mux.HandleFunc("GET /readyz", h.readyz)
	mux.Handle("GET /metrics", metricsHandler(h.stats, h.cluster, h.collectors...))
	if contention == nil {
		contention = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "contention tracking is off (contention.enabled: false)", http.StatusNotFound)
		})
	}
	mux.Handle("/contention", o.private(contention))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Nothing here is meant to be cached, or rendered as anything but
		// what its Content-Type says.
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		mux.ServeHTTP(w, r)
	})
}

// adminServer is the HTTP admin endpoint.
type adminServer struct {
	opts adminOptions
	srv  *http.Server
	l    net.Listener
	log  *zap.Logger
}

// startAdmin listens on cfg.Admin.Listen and serves the admin endpoints.
func startAdmin(cfg *config.Config, h *health, contention http.Handler, log *zap.Logger) (*adminServer, error) {
	l, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin listen: %w", err)
	}
	// Judge the address the socket got, not the text: "localhost" may
	// resolve anywhere, and ":9380" is every interface.
	opts := newAdminOptions(cfg, l.Addr().String())
	a := &adminServer{
		opts: opts,
		srv: &http.Server{
			Handler:           adminMux(h, contention, opts),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          zap.NewStdLog(log.Named("admin")),
		},
		l:   l,
		log: log,
	}
	go func() {
		if err := a.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin endpoint stopped", zap.Error(err))
		}
	}()
	return a, nil
}

func (a *adminServer) addr() string { return a.l.Addr().String() }

func (a *adminServer) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		_ = a.srv.Close()
	}
}
