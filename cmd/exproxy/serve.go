package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/exproxy/exproxy/config"
	"github.com/exproxy/exproxy/proxy"
	"github.com/exproxy/exproxy/proxy/resp"
)

func serveUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: exproxy [serve] [flags]

Runs the proxy until SIGTERM or SIGINT, then stops accepting, lets in-flight
replies finish within --drain-timeout, writes the last contention window and
exits 0. Settings come from defaults < the YAML file (--config) < EXPROXY_*
environment variables < flags; see docs/configuration.md.

Flags:
`)
	config.WriteFlagUsage(w)
}

func runServe(args []string, e env) int {
	fs := flag.NewFlagSet("exproxy serve", flag.ContinueOnError)
	// The flag package would print the whole usage after an error; one
	// line pointing at --help is easier to read in a container's log.
	fs.SetOutput(io.Discard)
	flags := config.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			serveUsage(e.stdout)
			return exitOK
		}
		fmt.Fprintf(e.stderr, "exproxy: %v (see exproxy --help)\n", err)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "exproxy: unexpected argument %q (see exproxy --help)\n", fs.Arg(0))
		return exitUsage
	}
	cfg, err := config.Load(flags, e.lookupEnv)
	if err != nil {
		fmt.Fprintf(e.stderr, "exproxy: %v\n", err)
		return exitUsage
	}
	log, closeLog, err := newLogger(cfg, e.stdout, e.stderr)
	if err != nil {
		fmt.Fprintf(e.stderr, "exproxy: %v\n", err)
		return exitUsage
	}
	defer closeLog()
	goRedisLogger.log.Store(log.Named("go-redis"))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	code, err := serve(ctx, stop, cfg, log)
	if err != nil {
		log.Error("exproxy failed", zap.Error(err))
		// The log may be a file or JSON: say it on stderr too, in one line.
		if cfg.Log.File != "stderr" || cfg.Log.Format != "console" {
			fmt.Fprintf(e.stderr, "exproxy: %v\n", err)
		}
	}
	return code
}

// upstreamOptions maps the parsed upstream onto the core's type.
func upstreamOptions(u config.Upstream) proxy.Upstream {
	return proxy.Upstream{
		Network:  u.Network,
		Addr:     u.Addr,
		TLS:      u.TLS,
		Username: u.Username,
		Password: u.Password,
		DB:       u.DB,
		Cluster:  u.Cluster,
		Seeds:    u.Seeds,
	}
}

// upstreamMode maps a validated upstream-mode setting.
// clientIO maps the setting onto proxy.Options: "loop" is the default,
// which falls back to a goroutine per client where there is no epoll.
func clientIO(s string) proxy.ClientIO {
	if s == "goroutine" {
		return proxy.GoroutinePerClient
	}
	return proxy.DefaultClientIO
}

// readyConns maps the setting (0: none) onto proxy.Options (0: default).
func readyConns(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

func upstreamMode(s string) proxy.UpstreamMode {
	m, _ := proxy.ParseUpstreamMode(s)
	return m
}

// proxyOptions maps the configuration onto proxy.Options (without the
// extensions, which serve adds).
func proxyOptions(cfg *config.Config, up proxy.Upstream, log *zap.Logger) proxy.Options {
	return proxy.Options{
		Listen:       cfg.Listen,
		Upstream:     up,
		DialTimeout:  cfg.DialTimeout,
		WriteTimeout: cfg.WriteTimeout,
		MaxClients:   cfg.MaxClients,
		Limits: resp.Limits{
			MaxBulkLen:   cfg.Limits.ProtoMaxBulkLen,
			MaxInlineLen: int(cfg.Limits.InlineMaxLen),
			MaxArgs:      cfg.Limits.MaxArgs,
		},
		Cluster: proxy.ClusterOptions{
			RefreshInterval:    cfg.Cluster.RefreshInterval,
			MinRefreshInterval: cfg.Cluster.MinRefreshInterval,
			FailoverWait:       cfg.Cluster.FailoverWait,
			MaxRedirects:       cfg.Cluster.MaxRedirects,
		},
		MaxPending:        cfg.Limits.MaxPending,
		ClientOutputLimit: cfg.Limits.ClientOutputLimit,
		Mode:              upstreamMode(cfg.UpstreamMode),
		SharedConns:       cfg.SharedConns,
		ReadyConns:        readyConns(cfg.ReadyConns),
		ClientIO:          clientIO(cfg.ClientIO),
		DrainTimeout:      cfg.DrainTimeout,
		Logger:            log,
	}
}

// serve runs the proxy until ctx ends (a signal), then shuts down
// gracefully; it calls restoreSignals when the drain starts, so that a
// second Ctrl-C ends an impatient wait at once. It returns the exit status,
// and the error behind a failure.
func serve(ctx context.Context, restoreSignals func(), cfg *config.Config, log *zap.Logger) (int, error) {
	cu, err := cfg.ResolveUpstream()
	if err != nil {
		return exitUsage, err
	}
	up := upstreamOptions(cu)
	opts := proxyOptions(cfg, up, log)

	// Extensions run for the life of the process; their background work
	// (loading the Lua library) stops with bgCtx.
	bgCtx, cancelBg := context.WithCancel(context.Background())
	defer cancelBg()
	ext, err := buildExtensions(bgCtx, cfg, up, log)
	if err != nil {
		return exitUsage, err
	}
	defer ext.close()
	opts.Rewriters = ext.rewriters
	opts.Observers = ext.observers

	srv, err := proxy.New(opts)
	if err != nil {
		return exitUsage, fmt.Errorf("proxy: %w", err)
	}
	l, err := listen(cfg.Listen)
	if err != nil {
		return exitFailure, err
	}

	health := newHealth(srv.Stats, up, cfg.DialTimeout)
	health.collectors = ext.collectors()
	if cfg.Contention.Enabled && cfg.Contention.Attribution {
		health.collectors = append(health.collectors, attributionReady(srv.CommandsLoaded))
	}
	if up.Cluster {
		health.clusterReady(srv.ClusterReady, srv.ClusterStats)
	}
	defer health.close()
	var admin *adminServer
	if cfg.Admin.Listen != "" {
		admin, err = startAdmin(cfg, health, ext.contentionHandler(), log)
		if err != nil {
			_ = l.Close()
			return exitFailure, err
		}
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	health.serving.Store(true)
	fields := []zap.Field{
		zap.String("version", version),
		zap.String("instance", instanceName(cfg)),
		zap.String("listen", l.Addr().String()),
		zap.Stringer("upstream", up),
		zap.String("upstream_mode", cfg.UpstreamMode),
		zap.String("client_io", cfg.ClientIO),
		zap.Bool("exstring", cfg.Exstring.Enabled),
		zap.Bool("contention", cfg.Contention.Enabled),
	}
	if admin != nil {
		fields = append(fields, zap.String("admin", admin.addr()), zap.Stringer("admin_private", admin.opts.access), zap.Bool("pprof", cfg.Admin.Pprof))
	}
	log.Info("exproxy started", fields...)
	warnSettings(cfg, up, log)
	if admin != nil {
		warnAdmin(cfg, admin, log)
	}

	code, failure := exitOK, error(nil)
	select {
	case <-ctx.Done():
		restoreSignals()
		log.Info("shutting down", zap.Duration("drain_timeout", cfg.DrainTimeout))
	case err := <-served:
		// Serve only returns on its own when the listener breaks.
		code, failure = exitFailure, fmt.Errorf("serving %s: %w", cfg.Listen, err)
	}
	health.serving.Store(false)
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(drainCtx); err != nil {
		// Connections still open at the deadline were closed: that is the
		// drain timeout doing its job, not a failure of the shutdown.
		log.Warn("drain timeout: closed the connections still open", zap.Error(err))
	}
	if failure == nil {
		if err := <-served; err != nil && !errors.Is(err, proxy.ErrServerClosed) {
			code, failure = exitFailure, fmt.Errorf("serving %s: %w", cfg.Listen, err)
		}
	}
	if admin != nil {
		admin.shutdown()
	}
	// Flush the partial contention window after the last session is gone,
	// so nothing counted is lost.
	ext.close()
	log.Info("exproxy stopped", zap.Duration("drained_in", time.Since(start)))
	return code, failure
}

// listen opens the client listener: TCP for host:port, a unix socket for a
// path. A socket file left by a process that died is removed first, as
// redis-server does; one that still answers is in use and is an error.
func listen(addr string) (net.Listener, error) {
	if !strings.Contains(addr, "/") {
		var lc net.ListenConfig
		if loopback(addr) {
			// A client on the same host cannot vanish without the kernel
			// closing its end, so keepalive probes would find nothing;
			// not setting them up saves four setsockopt calls per
			// connection, which clients that connect per command feel.
			lc.KeepAlive = -1
		}
		l, err := lc.Listen(context.Background(), "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		return l, nil
	}
	if fi, err := os.Stat(addr); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.DialTimeout("unix", addr, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("listen: %s is in use by another process", addr)
		}
		_ = os.Remove(addr)
	}
	l, err := net.Listen("unix", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return l, nil
}

// loopback reports whether host:port is a loopback address.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// warnSettings logs settings that work but are likely mistakes.
func warnSettings(cfg *config.Config, up proxy.Upstream, log *zap.Logger) {
	if up.TLS != nil && up.TLS.InsecureSkipVerify {
		log.Warn("TLS certificate verification of the upstream is off (tls.insecure-skip-verify)")
	}
	// Each client costs up to two descriptors: its own and, pinned (or
	// moved off the shared connections), its upstream connection. Go raises the soft limit to the hard one at start-up, so
	// what is left here is the real ceiling.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		if need := 2*uint64(cfg.MaxClients) + 32; lim.Cur < need {
			log.Warn("the open-file limit is below what max-clients needs; clients past it will fail to connect",
				zap.Int("max_clients", cfg.MaxClients), zap.Uint64("nofile_limit", lim.Cur), zap.Uint64("nofile_needed", need))
		}
	}
}

// warnAdmin logs admin settings that expose more, or less, than the
// operator probably meant.
func warnAdmin(cfg *config.Config, admin *adminServer, log *zap.Logger) {
	switch admin.opts.access {
	case privateUnauthenticated:
		log.Warn("admin.allow-unauthenticated: /contention (key names, client addresses) and /debug/pprof/ are served without a token to anyone who reaches the admin address",
			zap.String("admin", admin.addr()))
	case privateOff:
		msg := "the admin endpoint listens beyond loopback without admin.token: /contention and /debug/pprof/ answer 403 (health and metrics are served)"
		if cfg.Admin.Pprof {
			// Asked for, and unreachable: say so louder.
			log.Warn(msg, zap.String("admin", admin.addr()))
		} else if cfg.Contention.Enabled {
			log.Info(msg, zap.String("admin", admin.addr()))
		}
	case privateToken:
		if cfg.Admin.AllowUnauthenticated {
			log.Warn("admin.allow-unauthenticated has no effect: admin.token is set, and is required on /contention and /debug/pprof/")
		}
	}
}
