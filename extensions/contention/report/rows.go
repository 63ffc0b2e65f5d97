package report

import (
	"sort"
	"strings"
	"time"

	"github.com/exproxy/exproxy/extensions/contention"
)

// Row is one line of the report; JSON output is an array of these, a
// stable interface for scripts (docs/contention.md).
type Row struct {
	Key     string `json:"key,omitempty"`
	Pattern string `json:"pattern,omitempty"`
	Client  string `json:"client,omitempty"`
	// Invalidator is the writer of an invalidator row (--by invalidator):
	// a client's name or host, or "(outside this proxy)". Its aborts,
	// stale and cas_failed are the conflicts its writes caused.
	Invalidator string `json:"invalidator,omitempty"`
	// Instance is the sidecar: the grouping field of --by instance, and
	// on client rows of a client known only by a loopback address when
	// the logs come from more than one sidecar.
	Instance         string    `json:"instance,omitempty"`
	Transactions     int64     `json:"transactions"`
	Commits          int64     `json:"commits"`
	Aborts           int64     `json:"aborts"`
	ExecAborts       int64     `json:"execaborts"`
	ExecErrors       int64     `json:"exec_errors"`
	GivenUp          int64     `json:"given_up"`
	Stale            int64     `json:"stale"`
	CASFailed        int64     `json:"cas_failed"`
	Conflicts        int64     `json:"conflicts"`
	AbortRatio       float64   `json:"abort_ratio"`
	Retries          int64     `json:"retries"`
	RetriesPerCommit float64   `json:"retries_per_commit"`
	RetriesMax       int64     `json:"retries_max"`
	ChainsGivenUp    int64     `json:"chains_given_up"`
	WatchExecCount   uint64    `json:"watch_to_exec_count"`
	WatchExecP50Ms   float64   `json:"watch_to_exec_p50_ms"`
	WatchExecP99Ms   float64   `json:"watch_to_exec_p99_ms"`
	Windows          int       `json:"windows"`
	FirstSeen        time.Time `json:"first_seen"`
	LastSeen         time.Time `json:"last_seen"`
	// FirstSeenUTC and LastSeenUTC are the same instants for people and
	// spreadsheets: "2026-11-22 00:16:36", UTC, to the second.
	FirstSeenUTC string   `json:"first_seen_utc"`
	LastSeenUTC  string   `json:"last_seen_utc"`
	Clients      []string `json:"clients,omitempty"`
	// Instances are the sidecars that logged the row, when the logs come
	// from more than one.
	Instances []string `json:"instances,omitempty"`

	// Successes beside the failures: conditional versioned writes and
	// CAS/CAD applied; ConflictRatio is conflicts over all attempts.
	VersionedCommits int64   `json:"versioned_commits"`
	CASCommits       int64   `json:"cas_commits"`
	ConflictRatio    float64 `json:"conflict_ratio"`
	// Where the writes behind the conflicts came from: a client of the
	// proxy (attributed), outside it, or unknown (unattributed).
	Attributed   int64 `json:"attributed"`
	Outside      int64 `json:"outside"`
	Unattributed int64 `json:"unattributed"`
	// Invalidators are the writers behind a key's, pattern's or client's
	// conflicts, most first; InvalidatedKeys the keys of an invalidator.
	Invalidators    []contention.Link `json:"invalidators,omitempty"`
	InvalidatedKeys []contention.Link `json:"invalidated_keys,omitempty"`

	src *agg // the aggregate behind the row, for the chart over time
}

func (a *Aggregator) row(g *agg) Row {
	c := &g.counts
	r := Row{
		Transactions: c.Transactions, Commits: c.Commits, Aborts: c.Aborts, ExecAborts: c.ExecAborts,
		ExecErrors: c.ExecErrors, GivenUp: c.GivenUp, Stale: c.Stale, CASFailed: c.CASFailed,
		Conflicts: conflicts(c),
		Retries:   c.Retries, RetriesMax: c.RetriesMax, ChainsGivenUp: c.ChainsGivenUp,
		WatchExecCount: c.WatchExecCount, WatchExecP50Ms: c.WatchExecP50Ms, WatchExecP99Ms: c.WatchExecP99Ms,
		Windows: g.windows, FirstSeen: g.first, LastSeen: g.last,
		FirstSeenUTC: clock(g.first), LastSeenUTC: clock(g.last),
		VersionedCommits: c.VersionedCommits, CASCommits: c.CASCommits,
		Attributed: c.Attributed, Outside: c.Outside, Unattributed: c.Unattributed,
		src: g,
	}
	if n := c.Transactions + c.VersionedCommits + c.Stale + c.CASCommits + c.CASFailed; n > 0 {
		r.ConflictRatio = float64(r.Conflicts) / float64(n)
	}
	multi := a.multi()
	for k, l := range g.links {
		x := *l
		name, inst, local := strings.Cut(k.name, "\x00")
		if local && multi {
			name += " (" + inst + ")"
		}
		if a.opts.By == "invalidator" && g != &a.total {
			x.Key = name
		} else {
			x.Invalidator = name
		}
		if x.Key != "" {
			r.InvalidatedKeys = append(r.InvalidatedKeys, x)
		} else {
			r.Invalidators = append(r.Invalidators, x)
		}
	}
	contention.SortLinks(r.Invalidators)
	contention.SortLinks(r.InvalidatedKeys)
	switch a.opts.By {
	case "pattern":
		r.Pattern = g.name
	case "key":
		r.Key, r.Pattern = g.name, g.pattern
	case "client":
		r.Client = g.name
		if multi {
			r.Instance = g.instance
		}
	case "instance":
		r.Instance = g.name
	case "invalidator":
		r.Invalidator = g.name
		if multi {
			r.Instance = g.instance
		}
	}
	if c.Transactions > 0 {
		r.AbortRatio = float64(c.Aborts) / float64(c.Transactions)
	}
	if c.Commits > 0 {
		r.RetriesPerCommit = float64(c.CommitRetries) / float64(c.Commits)
	}
	if len(g.hist) > 0 {
		bs := make([]contention.HistBucket, 0, len(g.hist))
		for u, n := range g.hist {
			bs = append(bs, contention.HistBucket{UpperUs: u, Count: n})
		}
		r.WatchExecP50Ms = contention.QuantileMs(bs, 0.50)
		r.WatchExecP99Ms = contention.QuantileMs(bs, 0.99)
	}
	seen := map[string]bool{}
	for cl := range g.clients {
		name, inst, local := strings.Cut(cl, "\x00")
		if local && multi {
			name += " (" + inst + ")"
		}
		if !seen[name] {
			seen[name] = true
			r.Clients = append(r.Clients, name)
		}
	}
	sort.Strings(r.Clients)
	if multi && a.opts.By != "instance" {
		for inst := range g.instances {
			r.Instances = append(r.Instances, inst)
		}
		sort.Strings(r.Instances)
	}
	return r
}

// multi reports whether the input holds more than one sidecar's windows,
// which is when the report names sidecars.
func (a *Aggregator) multi() bool { return len(a.sidecars) > 1 }

// Rows returns the ranked rows: most conflicts first, then most aborts,
// then most transactions, then by name; cut to Options.Top.
func (a *Aggregator) Rows() []Row {
	var out []Row
	if a.opts.By == "instance" {
		out = make([]Row, 0, len(a.sidecars))
		for _, g := range a.sidecars {
			out = append(out, a.row(g))
		}
	} else {
		out = make([]Row, 0, len(a.rows))
		for _, g := range a.rows {
			out = append(out, a.row(g))
		}
	}
	sortRows(out)
	if a.opts.Top > 0 && len(out) > a.opts.Top {
		out = out[:a.opts.Top]
	}
	return out
}

// sortRows ranks rows: most conflicts first, then most aborts, then most
// transactions, then by name.
func sortRows(out []Row) {
	sort.Slice(out, func(i, j int) bool {
		x, y := out[i], out[j]
		if x.Conflicts != y.Conflicts {
			return x.Conflicts > y.Conflicts
		}
		if x.Aborts != y.Aborts {
			return x.Aborts > y.Aborts
		}
		if x.Transactions != y.Transactions {
			return x.Transactions > y.Transactions
		}
		if x.name() != y.name() {
			return x.name() < y.name()
		}
		return x.Instance < y.Instance
	})
}

// name is the row's grouping value (key rows also carry their pattern).
func (r *Row) name() string {
	switch {
	case r.Key != "":
		return r.Key
	case r.Client != "":
		return r.Client
	case r.Invalidator != "":
		return r.Invalidator
	case r.Pattern != "":
		return r.Pattern
	}
	return r.Instance
}

// label is the row's name as people read it: a client known only by a
// loopback address is qualified with its sidecar.
func (r *Row) label() string {
	if (r.Client != "" || r.Invalidator != "") && r.Instance != "" && isLocalClient(r.name()) {
		return r.name() + " (" + r.Instance + ")"
	}
	return r.name()
}

// Totals are the window summaries added up: exact, including keys that
// were never hot enough to get a row of their own.
func (a *Aggregator) Totals() Row {
	t := a.row(&a.total)
	t.Pattern, t.Key, t.Client, t.Invalidator, t.Instance, t.Clients = "", "", "", "", "", nil
	t.Windows = len(a.windows)
	return t
}

// Invalidators returns the writers that caused conflicts, most first
// (whatever the rows are grouped by), cut to Options.Top.
func (a *Aggregator) Invalidators() []Row {
	src := a.invs
	if a.opts.By == "invalidator" {
		src = a.rows
	}
	save := a.opts.By
	a.opts.By = "invalidator"
	out := make([]Row, 0, len(src))
	for _, g := range src {
		out = append(out, a.row(g))
	}
	a.opts.By = save
	sortRows(out)
	if a.opts.Top > 0 && len(out) > a.opts.Top {
		out = out[:a.opts.Top]
	}
	return out
}

// Sidecars returns one row per sidecar (the sums of its window
// summaries), by name.
func (a *Aggregator) Sidecars() []Row {
	out := make([]Row, 0, len(a.sidecars))
	for _, g := range a.sidecars {
		r := a.row(g)
		r.Pattern, r.Key, r.Client, r.Clients, r.Instances = "", "", "", nil, nil
		r.Instance = g.name
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Instance < out[j].Instance })
	return out
}
