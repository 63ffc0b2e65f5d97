#!/bin/bash
# Profiles exproxy under the p1 workload (redis-benchmark -t get -c 50 -P 1
# -d 64), pinned as evbench pins it, on a quiet host or with a CPU-bound
# loop on the proxy's CPU ("busy"):
#
#   bench/prototype/profile.sh OUTDIR [quiet|busy] [extra exproxy flags...]
#
# OUTDIR gets: trace.out (Go execution trace, 3 s) and trace-events.txt
# (its events counted by kind, per request), cpu.pprof and pprof-top.txt
# (5 s), perf-stat.txt (syscalls, scheduler events, per request, 5 s),
# schedtrace.txt (GODEBUG=schedtrace=1000) and the request counts of each
# window (from Redis's cmdstat_get). EXPROXY names the binary
# (default /tmp/exproxy-main).
set -euo pipefail
out=$1
mode=${2:-quiet}
shift 2 || shift $#
bin=${EXPROXY:-/tmp/exproxy-main}
mkdir -p "$out"

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(freeport); pport=$(freeport); aport=$(freeport)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

taskset -c 0 redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
	--dir "$out" --daemonize no >"$out/redis.log" 2>&1 &
pids+=($!)
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.1; done
redis-benchmark -p "$rport" -t set -r 100000 -n 400000 -d 64 -c 50 -P 16 -q >/dev/null

GODEBUG=schedtrace=1000 taskset -c 1 "$bin" --listen "127.0.0.1:$pport" --upstream "127.0.0.1:$rport" \
	--log-level warn --admin-listen "127.0.0.1:$aport" --admin-pprof "$@" 2>"$out/schedtrace.txt" &
ppid=$!
pids+=($ppid)
until redis-cli -p "$pport" ping >/dev/null 2>&1; do sleep 0.1; done

if [ "$mode" = busy ]; then
	taskset -c 1 sh -c 'while :; do :; done' &
	pids+=($!)
fi
taskset -c 1 redis-benchmark -p "$pport" -t get -c 50 -P 1 -d 64 -r 100000 -n 100000000 --csv >/dev/null 2>&1 &
pids+=($!)
sleep 2

gets() { redis-cli -p "$rport" info commandstats | sed -n 's/^cmdstat_get:calls=\([0-9]*\),.*/\1/p'; }
window() { # name command...: runs the command, records requests served meanwhile
	local name=$1; shift
	local a b
	a=$(gets)
	"$@"
	b=$(gets)
	echo "$name $((b - a))" >>"$out/requests.txt"
}
: >"$out/requests.txt"
window trace curl -s -o "$out/trace.out" "http://127.0.0.1:$aport/debug/pprof/trace?seconds=3"
window pprof curl -s -o "$out/cpu.pprof" "http://127.0.0.1:$aport/debug/pprof/profile?seconds=5"
window perf perf stat -x, -o "$out/perf-stat.csv" -p "$ppid" \
	-e raw_syscalls:sys_enter,syscalls:sys_enter_read,syscalls:sys_enter_write \
	-e syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_futex,syscalls:sys_enter_nanosleep \
	-e syscalls:sys_enter_tgkill,syscalls:sys_enter_getpid \
	-e sched:sched_switch,sched:sched_wakeup,sched:sched_waking \
	-e context-switches,cpu-migrations,task-clock -- sleep 5
ls /proc/$ppid/task | wc -l >"$out/threads.txt"
cleanup
trap - EXIT

perfn=$(awk '$1=="perf"{print $2}' "$out/requests.txt")
awk -F, -v n="$perfn" '$1 ~ /^[0-9.]+$/ {printf "%-32s %12.0f  %8.4f /req\n", $3, $1, $1/n}' "$out/perf-stat.csv" >"$out/perf-stat.txt"
go tool pprof -top -nodecount=40 "$bin" "$out/cpu.pprof" >"$out/pprof-top.txt" 2>/dev/null || true
tracen=$(awk '$1=="trace"{print $2}' "$out/requests.txt")
go tool trace -d=parsed "$out/trace.out" 2>/dev/null |
	awk -v n="$tracen" -f "$(dirname "$0")/tracecount.awk" | sort -rn >"$out/trace-events.txt"
echo "requests per window:"; cat "$out/requests.txt"
