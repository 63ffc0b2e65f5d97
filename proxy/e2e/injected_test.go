package e2e

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/exproxy/exproxy/internal/proxytest"
)

// monitorLine is `+1700000000.123456 [0 127.0.0.1:5555] "SET" "x" "1"`.
var monitorLine = regexp.MustCompile(`^\+[0-9.]+ \[([0-9]+) ([^\]]+)\] (.*)\r\n$`)

// statsOf parses INFO commandstats/errorstats into name -> calls/count.
func statsOf(info string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(info, "\r\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || !(strings.HasPrefix(name, "cmdstat_") || strings.HasPrefix(name, "errorstat_")) {
			continue
		}
		for _, f := range strings.Split(rest, ",") {
			if strings.HasPrefix(f, "calls=") || strings.HasPrefix(f, "count=") || strings.HasPrefix(f, "failed_calls=") ||
				strings.HasPrefix(f, "rejected_calls=") {
				out[name+"."+strings.SplitN(f, "=", 2)[0]] = strings.SplitN(f, "=", 2)[1]
			}
		}
	}
	return out
}

// clientInfoFields keeps the CLIENT INFO fields that describe the client's
// state rather than its socket.
func clientInfoFields(s string) string {
	var keep []string
	for _, f := range strings.Fields(s) {
		k, _, _ := strings.Cut(f, "=")
		switch k {
		case "name", "db", "sub", "psub", "ssub", "multi", "watch", "flags", "user", "resp", "cmd", "redir", "lib-name", "lib-ver":
			keep = append(keep, f)
		}
	}
	return strings.Join(keep, " ")
}

// TestE2ENothingInjected: the proxy sends nothing upstream on a client's
// behalf. The same session, once direct and once through the proxy, must
// leave the same MONITOR lines, INFO commandstats/errorstats deltas and
// CLIENT INFO state.
func TestE2ENothingInjected(t *testing.T) {
	h := proxytest.Start(t)
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			session := func(addr string) (mon []string, stats map[string]string, info string) {
				h.ResetRedis(t)
				admin := h.DirectRaw(t)
				defer admin.Close()
				m := h.DirectRaw(t)
				defer m.Close()
				if got := m.Do("MONITOR"); got != "+OK\r\n" {
					t.Fatalf("MONITOR: %q", got)
				}
				before := statsOf(admin.Do("INFO", "commandstats") + admin.Do("INFO", "errorstats"))

				if proto == 3 && h.Shared() {
					t.Skip("shared upstream mode opens its RESP3 connections with a HELLO 3 of its own (docs/proxy-core.md)")
				}
				r := proxytest.Dial(t, addr)
				if proto == 3 {
					r.Do("HELLO", "3")
				}
				r.Do("PING")
				r.Do("SET", "x", "1")
				r.Do("GET", "x")
				r.Do("NOSUCHCMD", "a")
				r.Do("MULTI")
				r.Do("INCR", "x")
				r.Do("EXEC")
				info = clientInfoFields(r.Do("CLIENT", "INFO"))
				r.Close()
				// Wait until Redis has seen the disconnect, so stats are final.
				proxytest.Eventually(t, "client gone", func() bool { return h.NumClients(t) == h.BaseClients() })

				after := statsOf(admin.Do("INFO", "commandstats") + admin.Do("INFO", "errorstats"))
				admin.Do("ECHO", "--end-of-session--")
				for {
					v := m.Read()
					if strings.Contains(v, "--end-of-session--") {
						break
					}
					sm := monitorLine.FindStringSubmatch(v)
					if sm == nil {
						t.Fatalf("unexpected MONITOR output %q", v)
					}
					if strings.Contains(sm[3], `"INFO"`) || strings.Contains(sm[3], `"CLIENT" "LIST"`) {
						continue // the test's own admin connection
					}
					mon = append(mon, "db"+sm[1]+" "+sm[3])
				}
				stats = map[string]string{}
				for k, v := range after {
					if strings.HasPrefix(k, "cmdstat_info.") || strings.HasPrefix(k, "cmdstat_client|list.") ||
						strings.HasPrefix(k, "cmdstat_monitor.") || strings.HasPrefix(k, "cmdstat_echo.") {
						continue
					}
					if before[k] != v {
						stats[k] = before[k] + "->" + v
					}
				}
				return mon, stats, info
			}
			wantMon, wantStats, wantInfo := session(h.Redis.Addr)
			gotMon, gotStats, gotInfo := session(h.Addr)
			if strings.Join(gotMon, "\n") != strings.Join(wantMon, "\n") {
				t.Errorf("MONITOR through proxy:\n%s\nwant (direct):\n%s", strings.Join(gotMon, "\n"), strings.Join(wantMon, "\n"))
			}
			// Deltas, not absolute values: the runs follow each other.
			if d := diffDeltas(gotStats, wantStats); d != "" {
				t.Errorf("INFO commandstats/errorstats deltas differ (proxy vs direct):\n%s", d)
			}
			if gotInfo != wantInfo {
				t.Errorf("CLIENT INFO through proxy %q, direct %q", gotInfo, wantInfo)
			}
		})
	}
}

// diffDeltas compares two before->after maps by their increments.
func diffDeltas(got, want map[string]string) string {
	inc := func(s string) int64 {
		a, b, _ := strings.Cut(s, "->")
		var x, y int64
		fmt.Sscan(a, &x)
		fmt.Sscan(b, &y)
		return y - x
	}
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	var names []string
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	var out strings.Builder
	for _, k := range names {
		g, w := int64(0), int64(0)
		if v, ok := got[k]; ok {
			g = inc(v)
		}
		if v, ok := want[k]; ok {
			w = inc(v)
		}
		if g != w {
			fmt.Fprintf(&out, "  %s: proxy +%d, direct +%d\n", k, g, w)
		}
	}
	return out.String()
}

// TestE2ENoUpstreamWithoutClient: an idle proxy holds no connection to
// Redis but its ready ones (ready-conns), and a client's upstream
// connection exists only while it does.
func TestE2ENoUpstreamWithoutClient(t *testing.T) {
	h := proxytest.Start(t)
	const ready = 2 // Options.ReadyConns' default
	proxytest.Eventually(t, "only the ready connections", func() bool { return h.NumClients(t) == ready })
	cl := h.Client(t, 2)
	if err := cl.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	proxytest.Eventually(t, "the ready connections and the client's", func() bool { return h.NumClients(t) == ready+1 })
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	if !h.Shared() {
		proxytest.Eventually(t, "the client's connection closed", func() bool { return h.NumClients(t) == ready })
	}
}
