// Package exstringcfg is the configuration of the versioned-string
// commands (package exstring): the "exstring:" section of exproxy's
// configuration file, its defaults and its validation.
//
// It is a leaf package of its own so that package config can hold the
// section without importing the extension, and through it the proxy core
// (config imports no other package of exproxy but these leaves; see
// docs/configuration.md). The extension uses the same type, as
// exstring.Config.
package exstringcfg

// Config holds the extension's settings. The yaml tags are the keys of the
// "exstring:" section.
type Config struct {
	// Enabled adds the EX* commands, CAS and CAD; without it the proxy is
	// a pure passthrough.
	Enabled bool `yaml:"enabled"`
	// Scripts makes the proxy use SCRIPT LOAD and EVALSHA even where Redis
	// has functions (for client ACLs that grant +evalsha but not +fcall).
	// Without it the proxy uses FCALL and switches to EVALSHA by itself on
	// a Redis that does not know FUNCTION.
	Scripts bool `yaml:"scripts"`
	// AnswerStale lets the proxy answer, from the reply of the first, the
	// EXCAS commands with the same key and expected version that it sends
	// to Redis in one write: Redis could only refuse them as stale.
	// Without it each is sent and run.
	AnswerStale bool `yaml:"answer-stale"`
}

// Default returns the defaults: the commands on, FCALL where Redis has
// functions, stale EXCAS answered in the proxy.
func Default() Config { return Config{Enabled: true, AnswerStale: true} }

// Validate reports settings that cannot work. Every combination of the
// two switches can, so it returns nil; it is here so that each extension's
// configuration has the same shape (Default, Validate).
func (c Config) Validate() error { return nil }
