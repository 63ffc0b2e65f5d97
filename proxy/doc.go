// Package proxy is exproxy's core: it accepts client connections, frames
// their commands, sends them to Redis over upstream connections it keeps,
// and writes the replies back, byte for byte, in order.
//
// The path of one command, and the file for each step:
//
//	accept           server.go      Server.Serve accepts; a session per client (session.go)
//	read and frame   clientread.go  the session's read loop; commands framed in place (resp)
//	route            route.go       look the name up (table.go), decide where it may run
//	                                (a shared connection, one of its own, another pool), rewrite
//	send upstream    send.go        the batch of one read, in one write, on the session's connection
//	                 upstream.go    upConn: one writer at a time, one reader, a FIFO of sessions
//	                 pool.go        shared connections per (user, protocol, database); ready ones
//	                 dial.go        dialling, TLS, the setup of a connection (AUTH, SELECT, HELLO)
//	match reply      replies.go     the reader hands each reply to its session: take, decide,
//	                                dispatch, complete
//	                 connstate.go   CLIENT REPLY, pub/sub and MONITOR: how replies pair with commands
//	                 retry.go       resend after a lost Lua library, replies held in order
//	                 exec.go        EXEC's elements given to the handlers of rewritten commands
//	write to client  output.go      one write that never waits; a bounded backlog for slow readers
//
// A session has one goroutine, its read loop. Its replies are handled by
// whichever upstream connection's reader has them, under the session's
// lock: the reply side has exactly one driver at a time, whatever kind of
// connection serves the session. docs/proxy-core.md tells the same story
// for a newcomer, with the path of one command in both upstream modes.
//
// The core knows its extensions only through extension.go.
package proxy
