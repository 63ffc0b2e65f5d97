package clients

import (
	"fmt"
	"testing"

	"github.com/exproxy/exproxy/internal/proxytest"
)

// TestPipelineTransactionPubSub: each library's everyday features — a
// pipeline of 100 commands, MULTI/EXEC (one that succeeds, one with a
// command failing at EXEC), and SUBSCRIBE with a PUBLISH received and an
// UNSUBSCRIBE — give the same replies through the proxy as directly.
func TestPipelineTransactionPubSub(t *testing.T) {
	h := proxytest.Start(t)
	for _, lib := range libraries() {
		for _, proto := range proxytest.Protocols {
			t.Run(fmt.Sprintf("%s/RESP%d", lib.name, proto), func(t *testing.T) {
				need(t, lib, proto)
				var outs []map[string]any
				for _, a := range addrs(h) {
					h.ResetRedis(t)
					outs = append(outs, runScript(t, lib, "smoke", a.addr, proto, map[string]any{}))
				}
				if p, _ := outs[0]["pipeline"].([]any); len(p) != 100 {
					t.Fatalf("direct run: %d pipeline replies, want 100: %v", len(p), outs[0])
				}
				sameOutcome(t, lib, outs[0], outs[1])
			})
		}
	}
}
