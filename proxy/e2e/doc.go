// Package e2e holds the proxy's end-to-end tests: a real redis-server
// (internal/redistest), the proxy built in-process in front of it
// (internal/proxytest), and clients talking to both — go-redis (RESP2 and
// RESP3), radix, raw TCP and redis-cli. Most tests compare "through the
// proxy" with "direct to Redis": the proxy is transparent, so Redis itself
// is the oracle. The tests use only the proxy's exported API, and no
// extension: what an extension does through the proxy is tested in its own
// package.
//
// The whole suite runs in either upstream mode (EXPROXY_TEST_UPSTREAM_MODE;
// make test runs both). The tests, by file:
//
//	types_test.go     data types, binary values, 1/64 MB values (heap), 10k pipelines, inline
//	tx_test.go        MULTI/EXEC/DISCARD/WATCH, aborted EXEC, EXECABORT
//	conn_test.go      SELECT, AUTH/ACL, HELLO, every RESP3 type
//	pubsub_test.go    pub/sub RESP2/3, MONITOR, CLIENT TRACKING, mode switches, pushes
//	blocking_test.go  blocking commands, CLIENT REPLY/SETNAME/ID, RESET, QUIT
//	scripting_test.go EVAL/EVALSHA/SCRIPT/FUNCTION/FCALL
//	injected_test.go  the proxy sends nothing on a client's behalf
//	extension_test.go the extension contract: rewrites, local replies, reply handlers
//	                  inside MULTI/EXEC, observers
//	failure_test.go   Redis down/lost/killed, disconnects and leaks, malformed input,
//	                  limits, slow readers, timeouts, shutdown
//	goredis_test.go   go-redis high-level API, radix, redis-cli, replication
//	stress_test.go    trickled input, backpressure, big pipelines, concurrency
//	upstream_test.go  unix and TLS upstreams, unix listener, stats, no secrets in logs
//	shared_test.go    shared upstream mode itself: sharing, interleaving, moving to
//	                  a connection of its own
package e2e
