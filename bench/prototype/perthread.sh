#!/bin/bash
# Per-thread perf counts of one candidate under p1 (quiet): which thread
# is sysmon (the only one calling nanosleep) and what each thread costs.
#   bench/prototype/perthread.sh NAME CMD ARGS...   (RPORT/PPORT in ARGS
#   are replaced by the Redis and proxy ports), e.g.
#   ./perthread.sh exp /tmp/exproxy-main --listen 127.0.0.1:PPORT --upstream 127.0.0.1:RPORT
set -u
name=$1; shift
rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c 0 redis-server --port $rport --save '' --appendonly no --daemonize no >/dev/null 2>&1 & r=$!
until redis-cli -p $rport ping >/dev/null 2>&1; do sleep 0.1; done
redis-benchmark -p $rport -t set -r 100000 -n 200000 -d 64 -c 50 -P 16 -q >/dev/null
args=("$@"); args=("${args[@]//RPORT/$rport}"); args=("${args[@]//PPORT/$pport}")
taskset -c 1 "${args[@]}" >/dev/null 2>&1 & p=$!
until redis-cli -p $pport ping >/dev/null 2>&1; do sleep 0.1; done
taskset -c 1 redis-benchmark -p $pport -t get -c 50 -P 1 -d 64 -r 100000 -n 100000000 >/dev/null 2>&1 & b=$!
sleep 1
a=$(redis-cli -p $rport info commandstats | sed -n 's/^cmdstat_get:calls=\([0-9]*\),.*/\1/p')
perf stat --per-thread -x, -e task-clock,context-switches,syscalls:sys_enter_nanosleep,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_write -p $p -o /tmp/perthread-$name.csv -- sleep 4
c=$(redis-cli -p $rport info commandstats | sed -n 's/^cmdstat_get:calls=\([0-9]*\),.*/\1/p')
kill $b $p $r; wait 2>/dev/null
n=$((c-a))
echo "== $name: $n requests"
awk -F, -v n=$n '$2 ~ /^[0-9.]+$/ {v[$1]=v[$1] sprintf(" %s=%.4f", $4, ($4=="task-clock")? $2*1000/n : $2/n)} END {for (t in v) print t v[t]}' /tmp/perthread-$name.csv | sort
