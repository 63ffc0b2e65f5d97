#!/bin/bash
# Per-thread context switches and CPU of PID over SECS seconds:
#   bench/prototype/threadstat.sh PID SECS
# Go names every thread after the binary, so threads are told apart by
# TID (the first is the main thread; the runtime starts sysmon next).
set -euo pipefail
pid=$1 secs=$2
snap() {
	for t in /proc/"$pid"/task/*; do
		tid=${t##*/}
		v=$(awk '/^voluntary_ctxt_switches/{print $2}' "$t/status" 2>/dev/null || echo 0)
		nv=$(awk '/^nonvoluntary_ctxt_switches/{print $2}' "$t/status" 2>/dev/null || echo 0)
		ns=$(awk '{print $1}' "$t/schedstat" 2>/dev/null || echo 0)
		echo "$tid $v $nv $ns"
	done
}
snap >/tmp/threadstat.$$.a
sleep "$secs"
snap >/tmp/threadstat.$$.b
join -a2 -e0 -o 2.1,1.2,1.3,1.4,2.2,2.3,2.4 /tmp/threadstat.$$.a /tmp/threadstat.$$.b |
	awk '{printf "tid %-8s vol %8d  invol %8d  cpu %8.1f ms\n", $1, $5-$2, $6-$3, ($7-$4)/1e6}'
rm -f /tmp/threadstat.$$.a /tmp/threadstat.$$.b
