#!/bin/sh
# Runs twemproxy (nutcracker, Debian package "nutcracker") in place of
# exproxy, taking the flags exbench gives exproxy, so that the same
# harness measures an established C proxy that multiplexes clients onto
# one upstream connection:
#
#   go run ./bench/cmd/exbench --proxy-bin bench/reference/twemproxy.sh --only passthrough
#
# Only the passthrough workloads apply (twemproxy has no EX* commands, no
# WATCH/MULTI, and no /metrics for the memory split).
set -e
listen= up= admin=
while [ $# -gt 0 ]; do
  case "$1" in
    --listen) listen=$2; shift 2;;
    --upstream) up=${2#redis://}; shift 2;;
    --admin-listen) admin=$2; shift 2;;
    *) shift;;
  esac
done
conf=$(mktemp /tmp/twem-XXXXXX.yml)
cat > "$conf" <<YML
alpha:
  listen: $listen
  hash: fnv1a_64
  distribution: ketama
  redis: true
  server_connections: 1
  auto_eject_hosts: false
  servers:
   - $up:1
YML
exec /usr/sbin/nutcracker -c "$conf" -s "${admin##*:}" -a 127.0.0.1 -v 1
