package contention

import (
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
	Rank    int    `json:"rank,omitempty"` // 1 = hottest in its window

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
	}
	if c.Transactions > 0 {
		r.AbortRatio = float64(c.Aborts) / float64(c.Transactions)
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
	Keys               []Row `json:"keys"`
	Patterns           []Row `json:"patterns"`
	Clients            []Row `json:"clients"`
}
