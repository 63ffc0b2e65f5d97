package proxy

// placement is where a command may run.
type placement uint8

const (
	// placeShared: on a shared connection of the session's pool (or on
	// its own connection, while it has one).
	placeShared placement = iota
	// placeOwn: on a connection of the session's own, for as long as the
	// state it starts lasts (a transaction, a subscription, a blocking
	// wait); then the session shares again.
	placeOwn
	// placeOwnForever: on a connection of its own, for good: it leaves
	// state the proxy does not follow (a name, tracking, a reply mode).
	placeOwnForever
	// placeRepool: it changes what Redis sees of the session (AUTH,
	// SELECT, HELLO, RESET): the session moves to the pool of that key.
	placeRepool
	// placeQuit: answered by the proxy, which then closes the client.
	placeQuit
)

// placeOf decides where a command may run.
func placeOf(cmd *command, args [][]byte) placement {
	if cmd == nil {
		return placeShared
	}
	switch cmd.kind {
	case kindPlain:
		if cmd.ownSub != "" && len(args) > 1 && equalFold(args[1], cmd.ownSub) {
			return placeOwn
		}
		if cmd.blockArg {
			for _, a := range args[1:] {
				if equalFold(a, "block") {
					return placeOwn
				}
			}
		}
		return cmd.own
	case kindQuit:
		return placeQuit
	case kindSelect, kindAuth, kindReset:
		return placeRepool
	case kindHello:
		for _, a := range args[min(2, len(args)):] {
			if equalFold(a, "setname") {
				return placeOwnForever
			}
		}
		return placeRepool
	case kindClient:
		// CLIENT SETINFO only labels the connection in CLIENT LIST (and
		// does not exist before Redis 7.2). go-redis sends both it and
		// CLIENT MAINT_NOTIFICATIONS on every new RESP3 connection; the
		// latter is an unknown subcommand to open-source Redis, which
		// answers it with an error and changes nothing. Every other
		// subcommand names, tracks, silences or identifies the
		// connection.
		if len(args) >= 2 && (equalFold(args[1], "setinfo") || equalFold(args[1], "maint_notifications")) {
			return placeShared
		}
		return placeOwnForever
	case kindMulti, kindWatch, kindSubscribe, kindUnsubscribe:
		return placeOwn
	case kindExec, kindDiscard, kindUnwatch:
		// On a shared connection there is nothing for them to end:
		// Redis answers them as it would on an idle connection.
		return placeShared
	case kindMonitor, kindSync:
		return placeOwnForever
	}
	return placeShared
}
