package contention

import (
	"go.uber.org/zap"

	"github.com/exproxy/exproxy/extensions/contention/contentioncfg"
)

// Config holds the tracker's settings: the "contention:" section of the
// proxy's configuration. The type lives in the leaf package contentioncfg
// so that package config can hold it without importing the tracker.
type Config = contentioncfg.Config

// PatternRule names keys matching a regular expression (see Config).
type PatternRule = contentioncfg.PatternRule

// DefaultConfig returns the defaults documented in docs/contention.md.
func DefaultConfig() Config { return contentioncfg.Default() }

// Deps is what the tracker needs from the process that runs it.
type Deps struct {
	// Logger receives the window, key, pattern, client and abort events;
	// default zap.NewNop(). It should write JSON lines in production:
	// `exproxy contention` reads them back.
	Logger *zap.Logger
	// Instance names this proxy: every event the tracker logs carries it
	// as the "instance" field, so a report over the logs of many sidecars
	// can tell them apart. "" leaves the field out. (cmd/exproxy fills it
	// from the top-level instance-name setting, default the host name.)
	Instance string
}
