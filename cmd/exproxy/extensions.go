package main

import (
	"context"
	"net/http"
	"os"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
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
		e, err := exstring.New(cfg.Exstring, exstring.Deps{Upstream: up, DialTimeout: cfg.DialTimeout, Logger: log})
		if err != nil {
			return nil, err
		}
		e.Start(ctx)
		ext.exstring = e
		ext.rewriters = append(ext.rewriters, e)
	}
	if cfg.Contention.Enabled {
		tr, err := contention.New(cfg.Contention, contention.Deps{Logger: log, Instance: instanceName(cfg)})
		if err != nil {
			ext.close() // the exstring connection, if any
			return nil, err
		}
		ext.tracker = tr
		ext.observers = append(ext.observers, tr)
	}
	return ext, nil
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

// collectors are the extensions' Prometheus metrics.
func (e *extensions) collectors() []prometheus.Collector {
	if e.tracker == nil {
		return nil
	}
	return []prometheus.Collector{e.tracker.Collector()}
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
