//go:build tools

// Package tools pins modules that the packages will import, so that parallel
// work never races on go.mod. Remove entries as real imports take over.
package tools

import (
	_ "github.com/mediocregopher/radix/v4"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/redis/go-redis/v9"
	_ "go.uber.org/zap"
	_ "gopkg.in/yaml.v3"
)
