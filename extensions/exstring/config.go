package exstring

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/exproxy/exproxy/extensions/exstring/exstringcfg"
	"github.com/exproxy/exproxy/proxy"
)

// Config holds the extension's settings: the "exstring:" section of the
// proxy's configuration. The type lives in the leaf package exstringcfg so
// that package config can hold it without importing the extension.
type Config = exstringcfg.Config

// DefaultConfig returns the defaults: the commands on, FCALL where Redis
// has functions.
func DefaultConfig() Config { return exstringcfg.Default() }

// Deps is what the extension needs from the process that runs it.
type Deps struct {
	// Upstream is the Redis the library is loaded into: the same server
	// the proxy forwards to. Its Username/Password/DB are the proxy's own
	// credentials; that user needs +function (or +script in Scripts mode).
	Upstream proxy.Upstream
	// DialTimeout bounds connecting and each load; default 2s.
	DialTimeout time.Duration
	// Logger receives load events; default zap.NewNop().
	Logger *zap.Logger
}

func (d *Deps) setDefaults() error {
	if d.Upstream.Addr == "" {
		return errors.New("exstring: config: upstream address is empty")
	}
	if d.Upstream.Network == "" {
		d.Upstream.Network = "tcp"
	}
	if d.Upstream.Network != "tcp" && d.Upstream.Network != "unix" {
		return fmt.Errorf("exstring: config: upstream network %q: want tcp or unix", d.Upstream.Network)
	}
	if d.DialTimeout <= 0 {
		d.DialTimeout = 2 * time.Second
	}
	if d.Logger == nil {
		d.Logger = zap.NewNop()
	}
	return nil
}
