package clients

import (
	"fmt"
	"testing"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
)

const (
	password      = "s3cret-pw"
	aliceUser     = "alice"
	alicePassword = "alice-pw"
)

// TestPasswordWatchCounter: against a Redis with requirepass and an ACL
// user, each library logs in (as the default user with the password, and
// as the ACL user) and runs the WATCH/MULTI/EXEC atomic counter from
// several clients at once. Every committed transaction adds one, so the
// counter ends exactly at clients × increments, directly and through the
// proxy; a wrong password fails with what Redis says.
func TestPasswordWatchCounter(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithRedis(redistest.WithConfig("requirepass", password)))
	h.Password = password
	admin := h.DirectRaw(t)
	if got := admin.Do("ACL", "SETUSER", aliceUser, "on", ">"+alicePassword, "~*", "&*", "+@all"); got != "+OK\r\n" {
		t.Fatalf("ACL SETUSER: %q", got)
	}
	admin.Close()
	const clients, increments = 3, 15
	users := []map[string]any{
		{"password": password},
		{"user": aliceUser, "password": alicePassword},
	}
	for _, lib := range libraries() {
		for _, proto := range proxytest.Protocols {
			for _, u := range users {
				args := map[string]any{"clients": clients, "increments": increments}
				for k, v := range u {
					args[k] = v
				}
				t.Run(fmt.Sprintf("%s/RESP%d/user=%v", lib.name, proto, u["user"]), func(t *testing.T) {
					need(t, lib, proto)
					var outs []map[string]any
					for _, a := range addrs(h) {
						h.ResetRedis(t)
						out := runScript(t, lib, "counter", a.addr, proto, args)
						if out["final"] != float64(clients*increments) || out["commits"] != float64(clients*increments) {
							t.Errorf("%s: counter %v after %v commits; want %d", a.via, out["final"], out["commits"], clients*increments)
						}
						if errs, _ := out["errors"].([]any); len(errs) != 0 {
							t.Errorf("%s: clients failed: %v", a.via, errs)
						}
						outs = append(outs, out)
					}
					sameOutcome(t, lib, outs[0], outs[1])
				})
			}
		}
	}
}
