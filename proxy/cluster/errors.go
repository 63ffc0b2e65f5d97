package cluster

// The error replies of Redis Cluster (7.0), byte for byte, for a proxy that
// must give a client the error a cluster node would.
const (
	// ErrCrossSlot: a command's keys hash to different slots.
	ErrCrossSlot = "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
	// ErrTryAgain: a multi-key command on a slot being migrated, whose
	// keys are not all on one side yet; the client should retry later.
	ErrTryAgain = "-TRYAGAIN Multiple keys request during rehashing of slot\r\n"
	// ErrClusterDown: the cluster is in the fail state.
	ErrClusterDown = "-CLUSTERDOWN The cluster is down\r\n"
	// ErrClusterDownReadOnly: the cluster is down and cluster-allow-reads-when-down
	// lets only reads through.
	ErrClusterDownReadOnly = "-CLUSTERDOWN The cluster is down and only accepts read commands\r\n"
	// ErrSlotNotServed: no node serves the key's slot.
	ErrSlotNotServed = "-CLUSTERDOWN Hash slot not served\r\n"
	// ErrSelect: SELECT of a database other than 0.
	ErrSelect = "-ERR SELECT is not allowed in cluster mode\r\n"
)
