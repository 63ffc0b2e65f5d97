package cluster

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// The package's tests share one cluster (3 primaries, 3 replicas),
// started by the first test that needs it — so listing, fuzzing and the
// benchmarks of pure code start none — and stopped by TestMain. Tests
// that change it (failover, slot moves) leave it stable and covered;
// none relies on which node serves which slot.
var (
	sharedOnce sync.Once
	shared     *redistest.Cluster
	sharedErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	os.Exit(code)
}

func needCluster(tb testing.TB) *redistest.Cluster {
	tb.Helper()
	sharedOnce.Do(func() {
		shared, sharedErr = redistest.NewCluster()
		if sharedErr == nil {
			fmt.Fprintf(os.Stderr, "cluster tests: 3+3 node cluster ready in %v\n", shared.StartupTime.Round(time.Millisecond))
		}
	})
	if sharedErr != nil {
		tb.Fatalf("cluster: %v", sharedErr)
	}
	return shared
}

// anyNode returns a go-redis client for a live node of the shared cluster.
func anyNode(tb testing.TB) *redis.Client {
	tb.Helper()
	c := needCluster(tb)
	for _, n := range c.Nodes {
		if n.Alive() {
			return c.Client(n)
		}
	}
	tb.Fatal("no live node")
	return nil
}

func bg() context.Context { return context.Background() }
