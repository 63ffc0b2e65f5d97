package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"

	"go.uber.org/zap"

	"github.com/exproxy/exproxy/config"
	"github.com/exproxy/exproxy/extensions/contention"
	"github.com/exproxy/exproxy/extensions/exstring"
	"github.com/exproxy/exproxy/proxy"
)

// extensions are the proxy's extensions for one run, in the fixed order the
// core consults them. The core never imports them; this is the one place
// that knows them all.
type extensions struct {
	rewriters []proxy.Rewriter
	observers []proxy.Observer

	exstring  *exstring.Extension
	tracker   *contention.Tracker
	closeOnce sync.Once
}

// buildExtensions constructs the enabled extensions. The exstring library
// starts loading in the background (until ctx ends); a Redis that is down
// at start-up does not stop the proxy.
func buildExtensions(ctx context.Context, cfg *config.Config, up proxy.Upstream, log *zap.Logger) (*extensions, error) {
	ext := &extensions{}
	if cfg.Exstring.Enabled {
		e, err := exstring.New(exstring.Config{
			Upstream:    up,
			DialTimeout: cfg.DialTimeout,
			Scripts:     cfg.Exstring.Scripts,
			Logger:      log,
		})
		if err != nil {
			return nil, fmt.Errorf("exstring: %w", err)
		}
		e.Start(ctx)
		ext.exstring = e
		ext.rewriters = append(ext.rewriters, e)
	}
	if cfg.Contention.Enabled {
		cc := contentionConfig(cfg.Contention)
		cc.Instance = instanceName(cfg)
		if err := cc.Validate(); err != nil {
			// config.Validate checks the same ranges; this catches the two
			// drifting apart, before any traffic.
			return nil, fmt.Errorf("contention: %w", err)
		}
		ext.tracker = contention.New(cc, log)
		ext.observers = append(ext.observers, ext.tracker)
	}
	return ext, nil
}

// contentionConfig maps the config-side settings onto the tracker's own.
func contentionConfig(c config.Contention) contention.Config {
	cc := contention.Config{
		Enabled:         c.Enabled,
		Window:          c.Window,
		Top:             c.Top,
		Threshold:       c.Threshold,
		MaxKeys:         c.MaxKeys,
		MaxPatterns:     c.MaxPatterns,
		MaxClients:      c.MaxClients,
		AbortEvents:     c.AbortEvents,
		AbortSampleRate: c.AbortSampleRate,
		AbortRateLimit:  c.AbortRateLimit,
	}
	for _, r := range c.Patterns {
		cc.Patterns = append(cc.Patterns, contention.PatternRule{Match: r.Match, Pattern: r.Pattern})
	}
	return cc
}

// instanceName is the proxy's name in its contention events: instance-name,
// else the host name, which in Kubernetes is the pod's name.
func instanceName(cfg *config.Config) string {
	if cfg.InstanceName != "" {
		return cfg.InstanceName
	}
	h, _ := os.Hostname()
	return h
}

// contentionHandler is the tracker's /contention handler, or nil when
// tracking is off.
func (e *extensions) contentionHandler() http.Handler {
	if e.tracker == nil {
		return nil
	}
	return e.tracker.Handler()
}

// close flushes the partial contention window and releases the exstring
// connection. Call it after the proxy has stopped delivering events.
func (e *extensions) close() {
	e.closeOnce.Do(func() {
		if e.tracker != nil {
			_ = e.tracker.Close()
		}
		if e.exstring != nil {
			_ = e.exstring.Close()
		}
	})
}
