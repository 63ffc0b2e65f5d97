// Command exbench measures exproxy against direct Redis and against the
// C proxies (twemproxy, and predixy when given) in one run: it builds the
// proxy, starts its own redis-server and the proxies on loopback, pins
// them as a sidecar is deployed (redis-server on one CPU, the proxies and
// the load generators together on another), runs every workload
// interleaved over several rounds and prints a table. See
// docs/benchmarks.md.
//
//	go run ./bench/cmd/exbench            # full run (~7 minutes on 2 cores)
//	go run ./bench/cmd/exbench --quick    # smoke run (about 1-2 minutes)
//	go run ./bench/cmd/exbench --busy     # also every passthrough row on a busy core
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/exproxy/exproxy/bench/internal/fixture"
	"github.com/exproxy/exproxy/bench/internal/suite"
	"github.com/exproxy/exproxy/config"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	// A busy-host spinner is this binary run again: it never returns.
	fixture.MaybeSpin()
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "exbench: FAIL: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		rounds    = flag.Int("rounds", 5, "interleaved direct/proxy rounds per workload")
		quick     = flag.Bool("quick", false, "smoke run: 2 rounds, 1/10 of the requests, 0.5s optimistic-locking runs, 1,000 connections for memory")
		proxyBin  = flag.String("proxy-bin", "", "use this exproxy binary instead of building ./cmd/exproxy; or NAME=PATH,NAME=PATH,... to measure several exproxy builds side by side in the same rounds (a PATH of \"build\" builds ./cmd/exproxy), e.g. old=/tmp/exproxy-old,new=build")
		stub      = flag.Bool("stub-proxy", false, "no proxy: measure direct Redis twice (harness development only; the report says STUB)")
		occDur    = flag.Duration("occ-duration", 1500*time.Millisecond, "length of one optimistic-locking run")
		memConns  = flag.Int("mem-conns", 10000, "idle connections for the memory figure")
		slowLimit = flag.String("slow-limit", "32mb", "client-output-limit of the proxies in the slowreader workload")
		slowValue = flag.String("slow-value", "8mb", "size of the value the slowreader clients GET")
		slowRnds  = flag.Int("slow-rounds", 2, "rounds of the slowreader workload (a fresh proxy per case and round)")
		only      = flag.String("only", "", "comma-separated workload groups to run: passthrough,cluster,occ,rediscost,memory,slowreader, or single passthrough workloads such as p1-64B or p16-64B-cluster (default all; the cluster rows are left out of --quick)")
		busy      = flag.Bool("busy", false, "also run the passthrough workloads with a CPU-bound process on the proxies' CPU (a busy host)")
		twemBin   = flag.String("twemproxy-bin", fixture.TwemproxyPath(), "twemproxy (nutcracker) binary measured beside exproxy; \"\" to leave it out")
		predBin   = flag.String("predixy-bin", "", "predixy binary measured beside exproxy (predixy has no package: build it yourself)")
		costRnds  = flag.Int("cost-rounds", 3, "rounds of the rediscost workloads (Redis's own CPU per call)")
		costDur   = flag.Duration("cost-duration", 600*time.Millisecond, "length of one rediscost run")
		luaBase   = flag.String("lua-baseline", "", "an exproxy binary whose Lua library rediscost measures beside this one's, interleaved (before/after of a Lua change)")
		noPin     = flag.Bool("no-pin", false, "do not pin processes with taskset")
		cpuRedis  = flag.String("cpu-redis", "0", "CPU list for redis-server (taskset -c)")
		cpuLoad   = flag.String("cpu-load", "1", "CPU list for exproxy, redis-benchmark and this harness")
		resp      = flag.Int("resp", 3, "RESP protocol go-redis negotiates in the optimistic-locking workloads (2 or 3)")
		perfDir   = flag.String("perf-dir", "", "after the figures, record a perf profile of the proxy under the p1-64B workload into this directory")
		keep      = flag.Bool("keep", false, "keep the scratch directory (process logs) after the run")
		proxyArgs multiFlag
	)
	flag.Var(&proxyArgs, "proxy-arg", "extra argument for exproxy (repeatable), e.g. --proxy-arg=--max-clients=20000")
	flag.Parse()

	if *quick {
		if !isSet("rounds") {
			*rounds = 2
		}
		if !isSet("occ-duration") {
			*occDur = 500 * time.Millisecond
		}
		if !isSet("mem-conns") {
			*memConns = 1000
		}
		if !isSet("cost-rounds") {
			*costRnds = 1
		}
		if !isSet("cost-duration") {
			*costDur = 300 * time.Millisecond
		}
		if !isSet("slow-rounds") {
			*slowRnds = 1
		}
	}
	if *rounds < 1 {
		return fmt.Errorf("--rounds must be at least 1")
	}
	pin := !*noPin
	if pin && runtime.NumCPU() < 2 {
		fmt.Fprintf(os.Stderr, "exbench: only %d CPU: running unpinned\n", runtime.NumCPU())
		pin = false
	}
	if err := fixture.NeedTools(pin); err != nil {
		return err
	}

	// 10,000 client connections to the proxy mean 10,000 more from the
	// proxy to Redis; everyone here needs far more than the usual 1024.
	nofile, err := fixture.RaiseNoFile(65536)
	if err != nil {
		return err
	}
	// Each proxied connection is two descriptors in the proxy (client and
	// upstream), plus a few of its own; if the hard limit cannot be
	// raised (no CAP_SYS_RESOURCE, e.g. in a container), measure with as
	// many connections as fit: the figure is per connection anyway.
	if fit := int(nofile-200) / 2; *memConns > fit {
		fmt.Fprintf(os.Stderr, "exbench: RLIMIT_NOFILE is %d and cannot be raised: the memory workload opens %d connections instead of %d\n", nofile, fit, *memConns)
		*memConns = fit
	}

	dir, err := os.MkdirTemp("", "exbench-")
	if err != nil {
		return fmt.Errorf("scratch dir: %w", err)
	}
	if *keep {
		fmt.Fprintf(os.Stderr, "exbench: logs in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	cands, err := parseCandidates(*proxyBin)
	if err != nil {
		return err
	}
	if *stub {
		cands = nil
	}
	for i, c := range cands {
		if c.Bin != "" {
			if _, err := exec.LookPath(c.Bin); err != nil {
				return fmt.Errorf("--proxy-bin %s: %w", c.Bin, err)
			}
			continue
		}
		root, err := moduleRoot()
		if err != nil {
			return err
		}
		cands[i].Bin = filepath.Join(dir, "exproxy")
		fmt.Fprintf(os.Stderr, "exbench: go build -o %s ./cmd/exproxy\n", cands[i].Bin)
		// Built before pinning, so the compiler gets every CPU.
		if err := fixture.BuildProxy(root, cands[i].Bin); err != nil {
			return fmt.Errorf("%w\n(use --stub-proxy to exercise the harness without a proxy)", err)
		}
	}
	bin := ""
	if len(cands) > 0 {
		bin = cands[0].Bin
	}

	if *perfDir != "" {
		// Go's profiler on the admin address; costs nothing until asked.
		proxyArgs = append(multiFlag{"--admin-pprof"}, proxyArgs...)
	}
	for _, b := range []*string{twemBin, predBin, luaBase} {
		if *b != "" {
			if _, err := exec.LookPath(*b); err != nil {
				return fmt.Errorf("%s: %w", *b, err)
			}
		}
	}
	if *costRnds < 1 {
		return fmt.Errorf("--cost-rounds must be at least 1")
	}
	limit, err := config.ParseSize(*slowLimit)
	if err != nil || limit < 1<<20 {
		return fmt.Errorf("--slow-limit %q: want a size of at least 1mb (%v)", *slowLimit, err)
	}
	value, err := config.ParseSize(*slowValue)
	if err != nil || value < 1<<20 {
		return fmt.Errorf("--slow-value %q: want a size of at least 1mb (%v)", *slowValue, err)
	}
	if *slowRnds < 1 {
		return fmt.Errorf("--slow-rounds must be at least 1")
	}
	cfg := suite.Config{
		Rounds: *rounds, Quick: *quick, OCCDuration: *occDur, MemConns: *memConns, Busy: *busy,
		SlowLimit: limit, SlowValue: value, SlowRounds: *slowRnds,
		ProxyBin: bin, ProxyArgs: proxyArgs, Stub: *stub, Candidates: cands,
		TwemproxyBin: *twemBin, PredixyBin: *predBin,
		CostRounds: *costRnds, CostDuration: *costDur, LuaBaseline: *luaBase,
		Protocol: *resp, PerfDir: *perfDir,
		Dir: dir, Log: os.Stderr, Out: os.Stdout,
	}
	if *only != "" {
		valid := append(append([]string(nil), suite.Groups...), suite.PassWorkloads...)
		for _, g := range strings.Split(*only, ",") {
			g = strings.TrimSpace(g)
			if !slices.Contains(valid, g) {
				return fmt.Errorf("--only: unknown group %q (one of %s)", g, strings.Join(valid, ", "))
			}
			cfg.Only = append(cfg.Only, g)
		}
	}
	if pin {
		cfg.CPURedis, cfg.CPULoad = *cpuRedis, *cpuLoad
		if err := fixture.PinSelf(*cpuLoad); err != nil {
			return err
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	load0 := loadavg()
	printMachine(cands, *stub)
	err = suite.Run(ctx, cfg)
	fmt.Printf("\ntotal time %v; load average at start %s, at end %s\n", time.Since(start).Round(time.Second), load0, loadavg())
	return err
}

// parseCandidates reads --proxy-bin: "" (build ./cmd/exproxy), one PATH,
// or NAME=PATH,... for several exproxy builds measured side by side. A
// candidate whose Bin is "" is built from the module.
func parseCandidates(v string) ([]suite.Candidate, error) {
	if !strings.Contains(v, "=") {
		return []suite.Candidate{{Name: "exproxy", Bin: v}}, nil
	}
	var out []suite.Candidate
	seen := map[string]bool{"direct": true, "twemproxy": true, "predixy": true, "stub": true}
	for _, part := range strings.Split(v, ",") {
		name, path, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || name == "" || path == "" {
			return nil, fmt.Errorf("--proxy-bin: %q is not NAME=PATH", part)
		}
		if seen[name] {
			return nil, fmt.Errorf("--proxy-bin: name %q used twice or reserved", name)
		}
		seen[name] = true
		if path == "build" {
			path = ""
		}
		out = append(out, suite.Candidate{Name: name, Bin: path})
	}
	built := 0
	for _, c := range out {
		if c.Bin == "" {
			built++
		}
	}
	if built > 1 {
		return nil, fmt.Errorf("--proxy-bin: only one candidate can be \"build\"")
	}
	return out, nil
}

func isSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run exbench inside the exproxy module (or pass --proxy-bin)")
	}
	return filepath.Dir(mod), nil
}

// loadavg tells the reader whether something else was competing for the
// two CPUs (other builds and tests share these machines).
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// printMachine writes what docs/benchmarks.md records about the machine, so
// a pasted report is self-describing.
func printMachine(cands []suite.Candidate, stub bool) {
	model := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := "unknown"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	redisVer := "unknown"
	if b, err := exec.Command("redis-server", "--version").Output(); err == nil {
		redisVer = strings.TrimSpace(string(b))
	}
	commit := "unknown"
	if b, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		commit = strings.TrimSpace(string(b))
	}
	fmt.Printf("machine: %d CPUs, %s, Linux %s\n", runtime.NumCPU(), model, kernel)
	fmt.Printf("redis:   %s\n", redisVer)
	fmt.Printf("go:      %s; exproxy commit %s", runtime.Version(), commit)
	if stub {
		fmt.Printf(" (STUB: no proxy)")
	}
	for _, c := range cands {
		fmt.Printf("; %s = %s", c.Name, c.Bin)
	}
	fmt.Println()
	fmt.Printf("command: %s\n", strings.Join(os.Args, " "))
}
