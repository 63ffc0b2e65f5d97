// Package proxy is exproxy's core: it accepts client connections, frames
// their commands, sends them to Redis over upstream connections it keeps,
// and writes the replies back, byte for byte, in order.
//
// The path of one command, and the file for each step:
//
//	accept           loopaccept.go  the event loop accepts a TCP or unix listener's clients
//	                 server.go      Server.Serve; other listeners' Accept; a session per client
//	                 clientconn.go  the client: a bare descriptor, a net.Conn only to block
//	read and frame   clientread.go  the session's read loop; commands framed in place (resp)
//	route            route.go       process, dispatch, route: decide where it may run, rewrite
//	                 placement.go   placeOf: a shared connection, one of its own, another pool
//	                 repool.go      AUTH, SELECT, HELLO, RESET: move the session to another pool
//	                 table.go       the command table the name is looked up in
//	send upstream    send.go        the batch of one read, in one write, on the session's connection
//	                 upstream.go    upConn: one writer at a time, a FIFO of sessions
//	                 follow.go      a group's followers (EXCAS with one key and version)
//	                                left out of the write, answered from the leader's reply
//	                 pool.go        shared connections per (user, protocol, database); join, leave
//	                 ready.go       ready connections per pool, dialled ahead by the filler
//	                 retire.go      stuck shared connections retired, revoked and idle pools
//	                 dial.go        dialling, TLS, the setup of a connection (AUTH, SELECT, HELLO)
//	match reply      upread.go      the connection's reader: frames replies, hands each to its
//	                                session; a lost connection
//	                 deliver.go     the session's side of that hand-off: deliverLocked, relaying
//	                 replies.go     the reply side: take, decide, dispatch, complete
//	                 observe.go     what replies teach: AUTH required, the extensions' observers
//	                 connstate.go   CLIENT REPLY, pub/sub and MONITOR: how replies pair with commands
//	                 retry.go       resend after a lost Lua library, replies held in order
//	                 exec.go        EXEC's elements given to the handlers of rewritten commands
//	write to client  deliver.go     emitHead, flush: what is collected goes to the client
//	                 output.go      one write that never waits; a bounded backlog for slow readers
//	end              sessionend.go  the client sends no more: the reply side ends, the client is
//	                                closed (on the event loop when nothing is left), connections go
//
// In front of a Redis Cluster, the same steps take these files too:
//
//	the slot map     clusterview.go     clusterView, clusterState: the slot map routing reads
//	                 clusterrefresh.go  the refresh loop; an anonymous pool per primary
//	                 clusternodes.go    the nodes met, their numbers and counters (ClusterStats)
//	route            clusterroute.go    dispatchCluster, routeCluster: a command to its slot's node
//	                 clusterconn.go     the session's connection at a node; failover waits
//	                 clustersplit.go    multi-key commands split per slot, their replies merged
//	                 clusterfanout.go   whole-dataset commands sent to every primary; SCAN
//	                 clustertx.go       transactions, and AUTH/HELLO/RESET across nodes
//	send upstream    clustersend.go     the batch per connection, tagged with sequence numbers
//	                                    (and a group's followers marked, follow.go)
//	match reply      clusterreply.go    replies put back in client order across connections
//	                 clusterredirect.go MOVED and ASK followed, TRYAGAIN and CLUSTERDOWN retried
//	                 clusterretry.go    resend after a lost Lua library, each to its node
//
// A session has one goroutine, its read loop. Its replies are handled by
// whichever upstream connection's reader has them, under the session's
// lock: the reply side has exactly one driver at a time, whatever kind of
// connection serves the session. docs/proxy-core.md tells the same story
// for a newcomer, with the path of one command in both upstream modes.
//
// The core knows its extensions only through extension.go.
package proxy
