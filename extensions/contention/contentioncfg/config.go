// Package contentioncfg is the configuration of the contention tracker
// (package contention): the "contention:" section of exproxy's
// configuration file, its defaults and its validation.
//
// It is a leaf package of its own so that package config can hold the
// section without importing the tracker, and through it the proxy core
// (config imports no other package of exproxy but these leaves; see
// docs/configuration.md). The tracker uses the same type, as
// contention.Config.
package contentioncfg

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Config holds the contention tracker's settings. The yaml tags are the
// keys of the "contention:" section; docs/contention.md describes them.
type Config struct {
	// Enabled turns tracking on. cmd/exproxy leaves the tracker out of the
	// observer list when it is false, so it then costs nothing at all.
	Enabled bool `yaml:"enabled"`
	// Window is how long counters accumulate before one set of log events
	// is written (default 10s, at least 100ms).
	Window time.Duration `yaml:"window"`
	// Top bounds the hot keys, hot patterns and hot clients logged per
	// window, each (default 20).
	Top int `yaml:"top"`
	// Threshold is the fewest conflicts (aborts + execaborts + stale +
	// cas_failed) a key, pattern or client needs in a window to be logged
	// (default 1). 0 logs the top entries by activity even without
	// conflicts.
	Threshold int `yaml:"threshold"`
	// MaxKeys caps the per-window key table, so memory stays flat under a
	// stream of distinct keys; past it the least active key is evicted
	// (its numbers stay in the window totals) (default 10000). MaxPatterns
	// and MaxClients do the same for patterns and clients (default 1000
	// each).
	MaxKeys     int `yaml:"max-keys"`
	MaxPatterns int `yaml:"max-patterns"`
	MaxClients  int `yaml:"max-clients"`
	// AbortEvents turns on "contention.abort" / "contention.stale" events:
	// one per aborted EXEC or refused write, sampled by AbortSampleRate
	// (0 < rate <= 1, default 1) and capped at AbortRateLimit per second
	// (default 10); the excess is counted as abort_events_dropped.
	AbortEvents     bool    `yaml:"abort-events"`
	AbortSampleRate float64 `yaml:"abort-sample-rate"`
	AbortRateLimit  float64 `yaml:"abort-rate-limit"`
	// Attribution turns on naming the write behind each conflict (the
	// tracker is then a proxy.WriteWatcher): keys watched now, or watched
	// or used by a versioned or compare-and-set command within
	// AttributionTTL (default 30s), are tracked, at most
	// AttributionMaxKeys of them (default 50000), each with its last two
	// writes through the proxy (who and when, never values).
	Attribution        bool          `yaml:"attribution"`
	AttributionMaxKeys int           `yaml:"attribution-max-keys"`
	AttributionTTL     time.Duration `yaml:"attribution-ttl"`
	// MetricsPatterns bounds the pattern label of the Prometheus
	// counters: the most active patterns get a label of their own, at most
	// this many (default 20), the rest count as "(other)"; the
	// invalidator label is bounded the same way.
	MetricsPatterns int `yaml:"metrics-patterns"`
	// Patterns are user rules that group keys into patterns, tried in
	// order (first match wins) before the built-in grouping of numeric,
	// UUID and hex segments.
	Patterns []PatternRule `yaml:"patterns"`
}

// PatternRule maps every key matching the regular expression Match to
// Pattern, which may refer to submatches ($1, ${name}) as in
// regexp.Regexp.Expand.
type PatternRule struct {
	Match   string `yaml:"match"`
	Pattern string `yaml:"pattern"`
}

// Default returns the defaults documented in docs/contention.md.
func Default() Config {
	return Config{
		Enabled:         true,
		Window:          10 * time.Second,
		Top:             20,
		Threshold:       1,
		MaxKeys:         10000,
		MaxPatterns:     1000,
		MaxClients:      1000,
		AbortEvents:     false,
		AbortSampleRate: 1,
		AbortRateLimit:  10,

		Attribution:        true,
		AttributionMaxKeys: 50000,
		AttributionTTL:     30 * time.Second,
		MetricsPatterns:    20,
	}
}

// SettingError says which setting is wrong and why, in the words exproxy
// shows the operator (package config adds where the value came from).
type SettingError struct {
	Key string // the full YAML key, "contention.top"
	Msg string
}

func (e *SettingError) Error() string { return e.Key + ": " + e.Msg }

// Setting returns the key and the message, for package config.
func (e *SettingError) Setting() (key, msg string) { return e.Key, e.Msg }

// Validate reports the first setting that cannot work, in the order of
// the fields, as a *SettingError.
func (c Config) Validate() error {
	checks := []struct {
		key string
		bad bool
		msg string
	}{
		{"contention.window", c.Window < 100*time.Millisecond, fmt.Sprintf("must be at least 100ms, got %s", c.Window)},
		{"contention.top", c.Top < 1, fmt.Sprintf("must be at least 1, got %d", c.Top)},
		{"contention.threshold", c.Threshold < 0, fmt.Sprintf("must not be negative, got %d", c.Threshold)},
		{"contention.max-keys", c.MaxKeys < 1, fmt.Sprintf("must be at least 1, got %d", c.MaxKeys)},
		{"contention.max-patterns", c.MaxPatterns < 1, fmt.Sprintf("must be at least 1, got %d", c.MaxPatterns)},
		{"contention.max-clients", c.MaxClients < 1, fmt.Sprintf("must be at least 1, got %d", c.MaxClients)},
		{"contention.abort-sample-rate", c.AbortSampleRate <= 0 || c.AbortSampleRate > 1, fmt.Sprintf("must be greater than 0 and at most 1, got %g", c.AbortSampleRate)},
		{"contention.abort-rate-limit", c.AbortRateLimit <= 0, fmt.Sprintf("must be greater than 0, got %g", c.AbortRateLimit)},
		{"contention.attribution-max-keys", c.AttributionMaxKeys < 1, fmt.Sprintf("must be at least 1, got %d", c.AttributionMaxKeys)},
		{"contention.attribution-ttl", c.AttributionTTL < 0, fmt.Sprintf("must not be negative, got %s", c.AttributionTTL)},
		{"contention.metrics-patterns", c.MetricsPatterns < 1 || c.MetricsPatterns > 1000, fmt.Sprintf("must be from 1 to 1000, got %d", c.MetricsPatterns)},
	}
	for _, ch := range checks {
		if ch.bad {
			return &SettingError{Key: ch.key, Msg: ch.msg}
		}
	}
	for i, r := range c.Patterns {
		if err := r.check(); err != nil {
			return &SettingError{Key: "contention.patterns", Msg: fmt.Sprintf("rule %d: %s", i+1, err)}
		}
	}
	return nil
}

// check reports what is wrong with one rule.
func (r PatternRule) check() error {
	if _, err := regexp.Compile(r.Match); err != nil || r.Match == "" {
		msg := fmt.Sprintf("match %q does not compile", r.Match)
		if err != nil {
			// Keep the message on one line: it ends up in a log line
			// or a terminal after the setting's origin.
			msg += ": " + strings.Join(strings.Fields(err.Error()), " ")
		}
		return errors.New(msg)
	}
	if r.Pattern == "" {
		return errors.New("pattern is empty")
	}
	return nil
}

// Valid reports whether the rule can be used: the tracker skips rules
// that are not (Validate reports them first, where the config is loaded).
func (r PatternRule) Valid() bool { return r.check() == nil }
