# exproxy developer targets. `make help` lists them.
#
# Newcomer on a fresh Debian/Ubuntu machine with Go installed:
#   make run    # local redis-server (if none on 6379) + the proxy on 127.0.0.1:6380
#   make test   # installs redis-server if missing (as root), then vet + race tests

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
BIN       := bin/exproxy
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
# Race tests of the whole tree take a few minutes on 2 cores; the timeout
# only catches a hang.
TESTFLAGS ?= -race -timeout 30m
FUZZTIME  ?= 15s
BENCHFLAGS ?=
IMAGE     ?= exproxy:$(VERSION)

# Where `make run` puts things.
RUN_LISTEN   ?= 127.0.0.1:6380
RUN_UPSTREAM ?= 127.0.0.1:6379
RUN_FLAGS    ?=

.PHONY: help build run run-cluster test deps bench fuzz lint docker clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

build: ## build bin/exproxy (static, version from git)
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/exproxy

# redis-server is needed by `make run` and by the tests. Installing needs
# root; otherwise say exactly what to run.
define need_redis
	if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "redis-server/redis-cli missing: installing redis-server and redis-tools"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -q; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server redis-tools; \
		else \
			echo "redis-server and redis-cli are needed. Install them with:"; \
			echo "  sudo apt-get update && sudo apt-get install -y redis-server redis-tools"; \
			exit 1; \
		fi; \
	fi
endef

# The client libraries proxy/e2e/clients runs besides go-redis: redis-py
# (Debian's python3-redis) and ioredis/node-redis (npm ci into
# proxy/e2e/clients/node/node_modules, versions from its package-lock.json).
# Installed when root; otherwise the tests skip and say what to run. npm ci
# runs again only when package-lock.json is newer than the installed tree.
CLIENTS_NODE := proxy/e2e/clients/node
define need_clients
	pkgs=; \
	python3 -c 'import redis' 2>/dev/null || /usr/bin/python3 -c 'import redis' 2>/dev/null || pkgs="python3-redis"; \
	command -v node >/dev/null || pkgs="$$pkgs nodejs npm"; \
	if [ -n "$$pkgs" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "client libraries for the tests missing: installing$$pkgs"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -q; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$pkgs; \
		else \
			echo "the client-library tests will skip; install what they need with:"; \
			echo "  sudo apt-get update && sudo apt-get install -y$$pkgs"; \
		fi; \
	fi; \
	if command -v npm >/dev/null; then \
		if [ ! -e $(CLIENTS_NODE)/node_modules/.package-lock.json ] || \
		   [ $(CLIENTS_NODE)/package-lock.json -nt $(CLIENTS_NODE)/node_modules/.package-lock.json ]; then \
			(cd $(CLIENTS_NODE) && npm ci --no-audit --no-fund); \
		fi; \
	else \
		echo "the ioredis/node-redis tests will skip: npm not found (apt-get install npm, then: cd $(CLIENTS_NODE) && npm ci)"; \
	fi
endef

deps: ## install redis-server/redis-tools and the tests' client libraries (as root) and download Go modules
	@$(need_redis)
	@$(need_clients)
	$(GO) mod download

# run: uses a Redis already answering on 127.0.0.1:6379, or starts one as a
# child (no persistence, data in a temp dir) that stops when the proxy does.
run: build ## run the proxy on 127.0.0.1:6380 in front of a local Redis (Ctrl-C stops both)
	@$(need_redis)
	@up='$(RUN_UPSTREAM)'; up_host=$${up%:*}; up_port=$${up##*:}; listen='$(RUN_LISTEN)'; redis_pid=; dir=; \
	cleanup() { \
		if [ -n "$$redis_pid" ]; then kill "$$redis_pid" 2>/dev/null || true; wait "$$redis_pid" 2>/dev/null || true; fi; \
		if [ -n "$$dir" ]; then rm -rf "$$dir"; fi; \
	}; \
	trap cleanup EXIT; \
	reply=$$(redis-cli -h "$$up_host" -p "$$up_port" ping 2>&1 || true); \
	case "$$reply" in \
	PONG*|NOAUTH*|*"NOAUTH"*) echo "using the Redis already answering on $(RUN_UPSTREAM)";; \
	*) dir=$$(mktemp -d); \
	   echo "starting redis-server on $(RUN_UPSTREAM) (data in $$dir, stopped on exit)"; \
	   redis-server --bind "$$up_host" --port "$$up_port" --save '' --appendonly no \
	     --dir "$$dir" --logfile "$$dir/redis.log" --daemonize no & redis_pid=$$!; \
	   for i in $$(seq 100); do \
	     redis-cli -h "$$up_host" -p "$$up_port" ping >/dev/null 2>&1 && break; \
	     kill -0 "$$redis_pid" 2>/dev/null || { echo "redis-server failed to start:"; cat "$$dir/redis.log"; exit 1; }; \
	     sleep 0.1; \
	   done;; \
	esac; \
	echo "exproxy on $(RUN_LISTEN): try  redis-cli -p $${listen##*:} ping"; \
	./$(BIN) --listen $(RUN_LISTEN) --upstream $(RUN_UPSTREAM) --log-format console $(RUN_FLAGS) || status=$$?; \
	exit $${status:-0}

# run-cluster: six redis-servers (3 primaries, 3 replicas) with
# cluster-enabled on the first free ports from RUN_CLUSTER_PORT (each port
# and its bus port, +10000, must be free), joined by redis-cli --cluster
# create, and the proxy in front; Ctrl-C stops them all and removes their
# data directory.
RUN_CLUSTER_PORT ?= 7000

run-cluster: build ## run the proxy on 127.0.0.1:6380 in front of a local 3-primary/3-replica Redis Cluster (Ctrl-C stops all)
	@$(need_redis)
	@listen='$(RUN_LISTEN)'; dir=$$(mktemp -d); pids=(); ports=(); \
	cleanup() { \
		for pid in "$${pids[@]}"; do kill "$$pid" 2>/dev/null || true; done; \
		for pid in "$${pids[@]}"; do wait "$$pid" 2>/dev/null || true; done; \
		rm -rf "$$dir"; \
	}; \
	trap cleanup EXIT; \
	free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$$1") 2>/dev/null; }; \
	p=$(RUN_CLUSTER_PORT); \
	while [ $${#ports[@]} -lt 6 ]; do \
		[ $$p -lt 55535 ] || { echo "no free ports from $(RUN_CLUSTER_PORT)"; exit 1; }; \
		if free $$p && free $$((p+10000)); then ports+=($$p); fi; p=$$((p+1)); \
	done; \
	echo "starting 6 cluster nodes on 127.0.0.1:$${ports[*]} (data in $$dir, stopped on exit)"; \
	for p in "$${ports[@]}"; do \
		redis-server --bind 127.0.0.1 --port $$p --cluster-enabled yes --cluster-config-file "$$dir/nodes-$$p.conf" \
		  --save '' --appendonly no --dir "$$dir" --logfile "$$dir/redis-$$p.log" --daemonize no & pids+=($$!); \
	done; \
	for p in "$${ports[@]}"; do \
		for i in $$(seq 100); do redis-cli -p $$p ping >/dev/null 2>&1 && break; sleep 0.1; done; \
		redis-cli -p $$p ping >/dev/null 2>&1 || { echo "redis-server on $$p failed to start:"; cat "$$dir/redis-$$p.log"; exit 1; }; \
	done; \
	addrs=(); for p in "$${ports[@]}"; do addrs+=("127.0.0.1:$$p"); done; \
	redis-cli --cluster create "$${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$$dir/create.log" 2>&1 || \
		{ echo "redis-cli --cluster create failed:"; cat "$$dir/create.log"; exit 1; }; \
	for i in $$(seq 200); do \
		ok=1; for p in "$${ports[@]}"; do redis-cli -p $$p cluster info 2>/dev/null | grep -q 'cluster_state:ok' || ok=; done; \
		[ -n "$$ok" ] && break; sleep 0.1; \
	done; \
	[ -n "$$ok" ] || { echo "the cluster did not reach cluster_state:ok"; exit 1; }; \
	seeds=$$(IFS=,; echo "$${addrs[*]:0:3}"); \
	echo "exproxy on $(RUN_LISTEN) in front of redis+cluster://$$seeds: try  redis-cli -p $${listen##*:} set foo bar"; \
	./$(BIN) --listen $(RUN_LISTEN) --upstream "redis+cluster://$$seeds" --log-format console $(RUN_FLAGS) || status=$$?; \
	exit $${status:-0}

test: ## gofmt check, go vet + all tests with -race (installs redis-server and the client libraries first if missing and root)
	@$(need_redis)
	@$(need_clients)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) test $(TESTFLAGS) ./...
	@# The end-to-end suites again with sessions on shared upstream
	@# connections (the suites above use the library default, pinned).
	EXPROXY_TEST_UPSTREAM_MODE=shared $(GO) test $(TESTFLAGS) ./proxy/e2e/... ./extensions/...

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# bench also measures twemproxy when nutcracker is installed
# (apt-get install nutcracker), and predixy with BENCHFLAGS=--predixy-bin=PATH
# (build it yourself: it has no package). BENCHFLAGS=--busy adds the
# busy-host rows; BENCHFLAGS="--proxy-bin old=PATH,new=build" measures two
# exproxy builds side by side; see docs/benchmarks.md.
bench: ## benchmark exproxy and the C proxies against direct Redis (go run ./bench/cmd/exbench; BENCHFLAGS=--quick for a smoke run)
	@$(need_redis)
	@command -v nutcracker >/dev/null || [ -x /usr/sbin/nutcracker ] || \
		echo "exbench: twemproxy not installed (apt-get install nutcracker): measuring without it"
	$(GO) run ./bench/cmd/exbench $(BENCHFLAGS)

fuzz: ## run every Go fuzz target for FUZZTIME (default 15s) each
	@for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' "$$pkg" | grep '^Fuzz' || true); do \
			echo "== $$pkg $$target"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
		done; \
	done

docker: ## build the container image (needs a Docker engine)
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

clean: ## remove build output
	rm -rf bin
