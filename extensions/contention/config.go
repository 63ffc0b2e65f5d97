package contention

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Config holds the contention tracker's settings. Its names and defaults
// match the "contention:" section of the proxy's configuration
// (config.Contention), so cmd/exproxy copies the fields across one to one.
// Zero values are replaced by DefaultConfig's by Normalize.
type Config struct {
	// Enabled turns tracking on. cmd/exproxy leaves the tracker out of the
	// observer list when it is false, so it then costs nothing at all.
	Enabled bool `yaml:"enabled"`
	// Window is how long counters accumulate before one set of log events
	// is written (default 10s).
	Window time.Duration `yaml:"window"`
	// Top bounds the hot keys, hot patterns and hot clients logged per
	// window, each (default 20).
	Top int `yaml:"top"`
	// Threshold is the fewest conflicts (aborts + execaborts + stale +
	// cas_failed) a key, pattern or client needs in a window to be logged
	// (default 1). 0 logs the top entries by activity even without
	// conflicts.
	Threshold int `yaml:"threshold"`
	// MaxKeys caps the per-window key table; past it the least active key
	// is evicted (its numbers stay in the window totals) (default 10000).
	// MaxPatterns and MaxClients do the same for patterns and clients
	// (default 1000 each).
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
	// Patterns are user rules applied before the built-in grouping, first
	// match wins.
	Patterns []PatternRule `yaml:"patterns"`
	// Instance names this proxy: every event the tracker logs carries it
	// as the "instance" field, so a report over the logs of many sidecars
	// can tell them apart. "" leaves the field out. (cmd/exproxy fills it
	// from the top-level instance-name setting, default the host name.)
	Instance string `yaml:"instance"`
}

// PatternRule names keys matching a regular expression. Pattern may refer to
// submatches ($1, ${name}) as in regexp.Regexp.Expand.
type PatternRule struct {
	Match   string `yaml:"match"`
	Pattern string `yaml:"pattern"`
}

// DefaultConfig returns the defaults documented in docs/contention.md.
func DefaultConfig() Config {
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
	}
}

// Normalize fills zero values with defaults. Threshold and the AbortEvents
// flag are kept as given, since their zero is a choice.
func (c Config) Normalize() Config {
	d := DefaultConfig()
	if c.Window <= 0 {
		c.Window = d.Window
	}
	if c.Top <= 0 {
		c.Top = d.Top
	}
	if c.MaxKeys <= 0 {
		c.MaxKeys = d.MaxKeys
	}
	if c.MaxPatterns <= 0 {
		c.MaxPatterns = d.MaxPatterns
	}
	if c.MaxClients <= 0 {
		c.MaxClients = d.MaxClients
	}
	if c.AbortSampleRate <= 0 {
		c.AbortSampleRate = d.AbortSampleRate
	}
	if c.AbortRateLimit <= 0 {
		c.AbortRateLimit = d.AbortRateLimit
	}
	return c
}

// Validate reports settings that cannot work, naming the yaml key. Zero
// values are accepted (Normalize replaces them).
func (c Config) Validate() error {
	var errs []error
	if c.Window < 0 || c.Window > 0 && c.Window < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("contention.window: must be at least 100ms, got %s", c.Window))
	}
	if c.Top < 0 || c.MaxKeys < 0 || c.MaxPatterns < 0 || c.MaxClients < 0 {
		errs = append(errs, errors.New("contention: top, max-keys, max-patterns and max-clients must not be negative"))
	}
	if c.Threshold < 0 {
		errs = append(errs, fmt.Errorf("contention.threshold: must not be negative, got %d", c.Threshold))
	}
	if s := c.AbortSampleRate; s < 0 || s > 1 {
		errs = append(errs, fmt.Errorf("contention.abort-sample-rate: must be greater than 0 and at most 1, got %g", s))
	}
	if c.AbortRateLimit < 0 {
		errs = append(errs, fmt.Errorf("contention.abort-rate-limit: must be greater than 0, got %g", c.AbortRateLimit))
	}
	for i, r := range c.Patterns {
		if _, err := regexp.Compile(r.Match); err != nil {
			errs = append(errs, fmt.Errorf("contention.patterns[%d].match: %w", i, err))
		}
		if r.Pattern == "" {
			errs = append(errs, fmt.Errorf("contention.patterns[%d].pattern: must not be empty", i))
		}
	}
	return errors.Join(errs...)
}
