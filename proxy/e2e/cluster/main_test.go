// Package cluster holds the proxy's end-to-end tests in front of a Redis
// Cluster: one real cluster of 3 primaries and 3 replicas
// (internal/redistest), shared by the package's tests and started on
// first use, the proxy in-process in front of it (internal/proxytest),
// plain go-redis clients (RESP2 and RESP3) and redis-cli through the
// proxy, and a go-redis ClusterClient of the cluster itself as the
// oracle. Tests that change the cluster (failover, resharding) restore
// what they need or run last.
package cluster

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/exproxy/exproxy/internal/redistest"
)

var (
	shared     *redistest.Cluster
	sharedErr  error
	sharedOnce sync.Once
)

// theCluster returns the package's cluster, starting it on first use.
func theCluster(tb testing.TB) *redistest.Cluster {
	tb.Helper()
	sharedOnce.Do(func() {
		shared, sharedErr = redistest.NewCluster()
	})
	if sharedErr != nil {
		tb.Fatalf("start the cluster: %v", sharedErr)
	}
	return shared
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Stop()
		if testing.Verbose() {
			fmt.Printf("cluster started in %v\n", shared.StartupTime)
		}
	}
	os.Exit(code)
}
