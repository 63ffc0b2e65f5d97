// Package cluster holds the parts of a Redis Cluster upstream that do not
// depend on the proxy core: the key slot (slot.go), the cluster's own
// error texts (errors.go), MOVED/ASK redirections (redirect.go), the slot
// map and its nodes (topology.go), reading both from the cluster over the
// proxy's own connections (fetch.go), and where a command's keys are, from
// the cluster's COMMAND key specifications (keyspec.go, getkeys.go).
//
// Everything on the path of a command — Slot, SameSlot, ParseRedirect,
// Topology lookups and Table.Keys — is free of allocations and locks; a
// Topology and a Table are immutable once built, so a router swaps a new
// one in behind an atomic pointer.
package cluster
