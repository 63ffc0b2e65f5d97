package contention

import (
	"sort"
	"strconv"
	"time"

	"go.uber.org/zap/zapcore"
)

// Row is one key, pattern or client of a window (or the window's totals), as
// logged and as served by the admin endpoint. The JSON names are the log
// field names: docs/contention.md lists them and `exproxy contention` reads
// them, so they are a stable interface.
type Row struct {
	Key     string `json:"key,omitempty"`
	Pattern string `json:"pattern,omitempty"` // for key rows: the key's pattern
	Client  string `json:"client,omitempty"`
	// Invalidator names, on an invalidator row, the client whose writes
	// caused conflicts (its label, as Client), or OutsideLabel; its
	// aborts, stale and cas_failed are the conflicts it caused.
	Invalidator string `json:"invalidator,omitempty"`
	Rank        int    `json:"rank,omitempty"` // 1 = hottest in its window

	Transactions     int64   `json:"transactions"`
	Commits          int64   `json:"commits"`
	Aborts           int64   `json:"aborts"`
	ExecAborts       int64   `json:"execaborts"`
	ExecErrors       int64   `json:"exec_errors"`
	GivenUp          int64   `json:"given_up"`
	Stale            int64   `json:"stale"`
	CASFailed        int64   `json:"cas_failed"`
	Conflicts        int64   `json:"conflicts"`
	AbortRatio       float64 `json:"abort_ratio"`
	Retries          int64   `json:"retries"`
	CommitRetries    int64   `json:"commit_retries"`
	RetriesPerCommit float64 `json:"retries_per_commit"`
	RetriesMax       int64   `json:"retries_max"`
	ChainsGivenUp    int64   `json:"chains_given_up"`
	WatchExecCount   uint64  `json:"watch_to_exec_count"`
	WatchExecP50Ms   float64 `json:"watch_to_exec_p50_ms"`
	WatchExecP99Ms   float64 `json:"watch_to_exec_p99_ms"`
	// WatchExecHist maps a bucket's upper bound in microseconds (as a
	// decimal string) to its count, non-empty buckets only, so windows can
	// be merged exactly.
	WatchExecHist    map[string]uint64 `json:"watch_to_exec_hist,omitempty"`
	Clients          []string          `json:"clients,omitempty"`
	ClientsTruncated bool              `json:"clients_truncated,omitempty"`

	// Successes beside the failures: conditional versioned writes and
	// CAS/CAD that were applied. ConflictRatio is conflicts over attempts
	// (transactions + versioned writes + CAS/CAD, applied or refused).
	VersionedCommits int64   `json:"versioned_commits"`
	CASCommits       int64   `json:"cas_commits"`
	ConflictRatio    float64 `json:"conflict_ratio"`
	// Where the writes behind the conflicts came from (see Link).
	Attributed   int64 `json:"attributed"`
	Outside      int64 `json:"outside"`
	Unattributed int64 `json:"unattributed"`
	// Invalidators are, on a key, pattern or client row, the writers that
	// caused its conflicts, most first (at most 8); InvalidatedKeys are, on
	// an invalidator row, the keys it invalidated.
	Invalidators    []Link `json:"invalidators,omitempty"`
	InvalidatedKeys []Link `json:"invalidated_keys,omitempty"`
	LinksTruncated  bool   `json:"links_truncated,omitempty"`
}

// Link counts the conflicts between a row and one invalidator (on key,
// pattern and client rows) or one key (on invalidator rows), through one
// command of the invalidator's.
type Link struct {
	Invalidator string `json:"invalidator,omitempty"`
	Key         string `json:"key,omitempty"`
	Command     string `json:"command,omitempty"`
	Aborts      int64  `json:"aborts"`
	Stale       int64  `json:"stale"`
	CASFailed   int64  `json:"cas_failed"`
}

// Total is the link's conflicts of every kind.
func (l *Link) Total() int64 { return l.Aborts + l.Stale + l.CASFailed }

// SortLinks orders links by conflicts, most first, then by name and
// command.
func SortLinks(ls []Link) {
	sort.Slice(ls, func(i, j int) bool {
		a, b := &ls[i], &ls[j]
		if a.Total() != b.Total() {
			return a.Total() > b.Total()
		}
		// On a tie a client comes before the outside: it can be acted on.
		if ao, bo := a.Invalidator == OutsideLabel, b.Invalidator == OutsideLabel; ao != bo {
			return bo
		}
		if a.Invalidator+a.Key != b.Invalidator+b.Key {
			return a.Invalidator+a.Key < b.Invalidator+b.Key
		}
		return a.Command < b.Command
	})
}

func (l Link) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	if l.Invalidator != "" {
		enc.AddString("invalidator", l.Invalidator)
	}
	if l.Key != "" {
		enc.AddString("key", l.Key)
	}
	if l.Command != "" {
		enc.AddString("command", l.Command)
	}
	enc.AddInt64("aborts", l.Aborts)
	enc.AddInt64("stale", l.Stale)
	enc.AddInt64("cas_failed", l.CASFailed)
	return nil
}

type links []Link

func (ls links) MarshalLogArray(a zapcore.ArrayEncoder) error {
	for _, l := range ls {
		if err := a.AppendObject(l); err != nil {
			return err
		}
	}
	return nil
}

func makeRow(c *counts, h *hist) Row {
	r := Row{
		Transactions:  c.Transactions,
		Commits:       c.Commits,
		Aborts:        c.Aborts,
		ExecAborts:    c.ExecAborts,
		ExecErrors:    c.ExecErrors,
		GivenUp:       c.GivenUp,
		Stale:         c.Stale,
		CASFailed:     c.CASFailed,
		Conflicts:     c.conflicts(),
		Retries:       c.Retries,
		CommitRetries: c.CommitRetries,
		RetriesMax:    c.RetriesMax,
		ChainsGivenUp: c.ChainsGivenUp,

		VersionedCommits: c.VersionedCommits,
		CASCommits:       c.CASCommits,
		Attributed:       c.Attributed,
		Outside:          c.Outside,
		Unattributed:     c.Unattributed,
	}
	if c.Transactions > 0 {
		r.AbortRatio = float64(c.Aborts) / float64(c.Transactions)
	}
	if a := c.attempts(); a > 0 {
		r.ConflictRatio = float64(c.conflicts()) / float64(a)
	}
	if c.Commits > 0 {
		r.RetriesPerCommit = float64(c.CommitRetries) / float64(c.Commits)
	}
	if h != nil {
		sp := h.sparse()
		if len(sp) > 0 {
			r.WatchExecCount = h.total()
			r.WatchExecP50Ms = quantileUpper(sp, 0.50)
			r.WatchExecP99Ms = quantileUpper(sp, 0.99)
			r.WatchExecHist = make(map[string]uint64, len(sp))
			for _, b := range sp {
				r.WatchExecHist[strconv.FormatUint(b.UpperUs, 10)] = b.Count
			}
		}
	}
	return r
}

func entryRow(e *entry) Row {
	r := makeRow(&e.counts, e.hist)
	if len(e.clients) > 0 {
		r.Clients = append([]string(nil), e.clients...)
	}
	r.ClientsTruncated = e.moreCli
	if len(e.links) > 0 {
		r.Invalidators = make([]Link, 0, len(e.links))
		for _, l := range e.links {
			r.Invalidators = append(r.Invalidators, Link{Invalidator: l.name, Command: l.command, Aborts: l.n[conflictAbort], Stale: l.n[conflictStale], CASFailed: l.n[conflictCAS]})
		}
		SortLinks(r.Invalidators)
	}
	r.LinksTruncated = e.moreLinks
	return r
}

// invalidatorRow is entryRow for an invalidator: its links are keys.
func invalidatorRow(e *entry) Row {
	r := entryRow(e)
	r.Invalidator = e.name
	r.InvalidatedKeys = r.Invalidators
	r.Invalidators = nil
	for i := range r.InvalidatedKeys {
		l := &r.InvalidatedKeys[i]
		l.Key, l.Invalidator = l.Invalidator, ""
	}
	SortLinks(r.InvalidatedKeys)
	return r
}

// MarshalLogObject writes the row as flat zap fields with the JSON names.
func (r Row) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	if r.Key != "" {
		enc.AddString("key", r.Key)
	}
	if r.Pattern != "" {
		enc.AddString("pattern", r.Pattern)
	}
	if r.Client != "" {
		enc.AddString("client", r.Client)
	}
	if r.Invalidator != "" {
		enc.AddString("invalidator", r.Invalidator)
	}
	if r.Rank != 0 {
		enc.AddInt("rank", r.Rank)
	}
	enc.AddInt64("transactions", r.Transactions)
	enc.AddInt64("commits", r.Commits)
	enc.AddInt64("aborts", r.Aborts)
	enc.AddInt64("execaborts", r.ExecAborts)
	enc.AddInt64("exec_errors", r.ExecErrors)
	enc.AddInt64("given_up", r.GivenUp)
	enc.AddInt64("stale", r.Stale)
	enc.AddInt64("cas_failed", r.CASFailed)
	enc.AddInt64("conflicts", r.Conflicts)
	enc.AddFloat64("abort_ratio", r.AbortRatio)
	enc.AddInt64("retries", r.Retries)
	enc.AddInt64("commit_retries", r.CommitRetries)
	enc.AddFloat64("retries_per_commit", r.RetriesPerCommit)
	enc.AddInt64("retries_max", r.RetriesMax)
	enc.AddInt64("chains_given_up", r.ChainsGivenUp)
	enc.AddUint64("watch_to_exec_count", r.WatchExecCount)
	enc.AddFloat64("watch_to_exec_p50_ms", r.WatchExecP50Ms)
	enc.AddFloat64("watch_to_exec_p99_ms", r.WatchExecP99Ms)
	if len(r.WatchExecHist) > 0 {
		_ = enc.AddObject("watch_to_exec_hist", histFields(r.WatchExecHist))
	}
	if len(r.Clients) > 0 {
		_ = enc.AddArray("clients", zapcore.ArrayMarshalerFunc(func(a zapcore.ArrayEncoder) error {
			for _, c := range r.Clients {
				a.AppendString(c)
			}
			return nil
		}))
	}
	if r.ClientsTruncated {
		enc.AddBool("clients_truncated", true)
	}
	enc.AddInt64("versioned_commits", r.VersionedCommits)
	enc.AddInt64("cas_commits", r.CASCommits)
	enc.AddFloat64("conflict_ratio", r.ConflictRatio)
	enc.AddInt64("attributed", r.Attributed)
	enc.AddInt64("outside", r.Outside)
	enc.AddInt64("unattributed", r.Unattributed)
	if len(r.Invalidators) > 0 {
		_ = enc.AddArray("invalidators", links(r.Invalidators))
	}
	if len(r.InvalidatedKeys) > 0 {
		_ = enc.AddArray("invalidated_keys", links(r.InvalidatedKeys))
	}
	if r.LinksTruncated {
		enc.AddBool("links_truncated", true)
	}
	return nil
}

// histFields writes buckets in ascending order, which a Go map would not.
type histFields map[string]uint64

func (h histFields) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	var bs []HistBucket
	for k, v := range h {
		u, _ := strconv.ParseUint(k, 10, 64)
		bs = append(bs, HistBucket{UpperUs: u, Count: v})
	}
	for _, b := range sortBuckets(bs) {
		enc.AddUint64(strconv.FormatUint(b.UpperUs, 10), b.Count)
	}
	return nil
}

// Window is the state of one window: the last complete one, or the current
// one so far (Partial).
type Window struct {
	Start   time.Time `json:"window_start"`
	End     time.Time `json:"window_end"`
	Partial bool      `json:"partial"`
	Totals  Row       `json:"totals"`
	// KeysTracked is how many distinct keys the table held at the end;
	// *Evicted count entries pushed out by the caps, whose numbers are in
	// the totals but in no row.
	KeysTracked        int   `json:"keys_tracked"`
	KeysEvicted        int64 `json:"keys_evicted"`
	PatternsEvicted    int64 `json:"patterns_evicted"`
	ClientsEvicted     int64 `json:"clients_evicted"`
	AbortEventsDropped int64 `json:"abort_events_dropped"`
	// KeysWatched is how many keys the attribution set held at the end
	// (watched now, or watched or versioned within attribution-ttl);
	// KeysUntracked how many could not be added to it during the window
	// because it was full.
	KeysWatched   int64 `json:"keys_watched"`
	KeysUntracked int64 `json:"keys_untracked"`
	Keys          []Row `json:"keys"`
	Patterns      []Row `json:"patterns"`
	Clients       []Row `json:"clients"`
	Invalidators  []Row `json:"invalidators"`
}
