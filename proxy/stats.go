package proxy

// Stats are cumulative counters and gauges for metrics.
type Stats struct {
	ClientsConnected  int64 // open client connections now
	ClientsTotal      int64 // accepted since start
	ClientsRejected   int64 // refused by MaxClients
	Commands          int64 // commands forwarded upstream
	UpstreamErrors    int64 // failed dials and lost upstream connections
	ProtocolErrors    int64 // malformed client input
	OutputLimitClosed int64 // clients closed for exceeding ClientOutputLimit
	// LostCommands counts commands in flight on an upstream connection
	// that was lost: their outcome is unknown, and their clients were
	// closed without a reply, as Redis going away would close them.
	LostCommands   int64
	UpstreamConns  int64 // upstream connections open now, of every kind
	SharedConns    int64 // shared upstream connections open now
	ReadyConns     int64 // ready upstream connections waiting for a session now
	Pools          int64 // connection pools (user, protocol, database) now
	SessionsPinned int64 // times a session took a connection of its own
	SessionsShared int64 // times a session gave its own connection back and shared again
	// LoopHandoffs counts the times a session read by the event loop had
	// to wait (for replies before it moved, a dial, ...) and was served
	// apart while a new goroutine ran the loop.
	LoopHandoffs int64
	// SharedRetired counts shared connections retired because their
	// replies stopped while owed (a long script): new commands went to a
	// fresh connection.
	SharedRetired int64
	// AnsweredByLeader counts commands answered from the reply of an
	// earlier command of their group instead of being sent (Follower:
	// an EXCAS that could only be refused as stale).
	AnsweredByLeader int64
	AuthRequired     bool // Redis requires AUTH, as far as the proxy knows
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return Stats{
		ClientsConnected:  s.stats.connected.Load(),
		ClientsTotal:      s.stats.total.Load(),
		ClientsRejected:   s.stats.rejected.Load(),
		Commands:          s.stats.commands.Load(),
		UpstreamErrors:    s.stats.upstreamErrors.Load(),
		ProtocolErrors:    s.stats.protocolErrors.Load(),
		OutputLimitClosed: s.stats.outputLimitClosed.Load(),
		LostCommands:      s.stats.lostCommands.Load(),
		UpstreamConns:     s.stats.upstreamConns.Load(),
		SharedConns:       s.stats.sharedConns.Load(),
		ReadyConns:        s.stats.readyConns.Load(),
		Pools:             s.stats.pools.Load(),
		SessionsPinned:    s.stats.pinned.Load(),
		SessionsShared:    s.stats.unpinned.Load(),
		LoopHandoffs:      s.stats.handoffs.Load(),
		SharedRetired:     s.stats.retired.Load(),
		AnsweredByLeader:  s.stats.answeredByLeader.Load(),
		AuthRequired:      s.authRequired.Load(),
	}
}
