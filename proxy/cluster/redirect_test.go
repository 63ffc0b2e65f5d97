package cluster

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/exproxy/exproxy/internal/redistest"
)

func TestParseRedirect(t *testing.T) {
	tests := []struct {
		in   string
		ok   bool
		ask  bool
		slot int
		host string
		port int
	}{
		{"-MOVED 3999 127.0.0.1:6381\r\n", true, false, 3999, "127.0.0.1", 6381},
		{"MOVED 3999 127.0.0.1:6381", true, false, 3999, "127.0.0.1", 6381},
		{"-ASK 0 10.0.0.1:7000\r\n", true, true, 0, "10.0.0.1", 7000},
		{"-MOVED 16383 ::1:7000\r\n", true, false, 16383, "::1", 7000},
		{"-MOVED 1 fe80::1%eth0:7000", true, false, 1, "fe80::1%eth0", 7000},
		{"-MOVED 12 redis-2.cache.internal:6379", true, false, 12, "redis-2.cache.internal", 6379},
		{"-MOVED 12 :6379", true, false, 12, "", 6379}, // unknown-endpoint
		{"-ASK 12 ?:6379", true, true, 12, "?", 6379},  // hostname not known
		{"-MOVED 16384 h:1", false, false, 0, "", 0},   // slot out of range
		{"-MOVED 0399 h:1", false, false, 0, "", 0},    // leading zero
		{"-MOVED -1 h:1", false, false, 0, "", 0},
		{"-MOVED 1 h:0", false, false, 0, "", 0},
		{"-MOVED 1 h:65536", false, false, 0, "", 0},
		{"-MOVED 1 h", false, false, 0, "", 0},
		{"-MOVED 1 h:", false, false, 0, "", 0},
		{"-MOVED 1", false, false, 0, "", 0},
		{"-MOVED  1 h:1", false, false, 0, "", 0},
		{"-MOVED 1 h x:1", false, false, 0, "", 0},
		{"-moved 1 h:1", false, false, 0, "", 0},
		{"-MOVEDX 1 h:1", false, false, 0, "", 0},
		{"-ERR MOVED 1 h:1", false, false, 0, "", 0},
		{"-ASKING 1 h:1", false, false, 0, "", 0},
		{"", false, false, 0, "", 0},
		{"-", false, false, 0, "", 0},
	}
	for _, tt := range tests {
		r, ok := ParseRedirect([]byte(tt.in))
		if ok != tt.ok || ok && (r.Ask != tt.ask || r.Slot != tt.slot || string(r.Host) != tt.host || r.Port != tt.port) {
			t.Errorf("ParseRedirect(%q) = %+v (host %q), %t", tt.in, r, r.Host, ok)
		}
	}
}

func TestRedirectAddr(t *testing.T) {
	tests := []struct {
		line, from, want string
		ok               bool
	}{
		{"MOVED 1 127.0.0.1:7001", "127.0.0.1:7000", "127.0.0.1:7001", true},
		{"MOVED 1 ::1:7001", "[::1]:7000", "[::1]:7001", true},
		{"MOVED 1 redis-2:7001", "redis-1:7000", "redis-2:7001", true},
		{"MOVED 1 :7001", "redis-1:7000", "redis-1:7001", true},
		{"MOVED 1 :7001", "[::1]:7000", "[::1]:7001", true},
		{"MOVED 1 ?:7001", "redis-1:7000", "", false},
	}
	for _, tt := range tests {
		r, ok := ParseRedirect([]byte(tt.line))
		if !ok {
			t.Fatalf("ParseRedirect(%q) failed", tt.line)
		}
		if got, ok := r.Addr(tt.from); got != tt.want || ok != tt.ok {
			t.Errorf("Addr of %q from %s = %q, %t; want %q, %t", tt.line, tt.from, got, ok, tt.want, tt.ok)
		}
	}
}

// refRedirect parses with the standard library, for the fuzz target.
func refRedirect(line string) (ask bool, slot int, host string, port int, ok bool) {
	line = strings.TrimPrefix(line, "-")
	line = strings.TrimSuffix(line, "\r\n")
	kind, rest, found := strings.Cut(line, " ")
	if !found || kind != "MOVED" && kind != "ASK" {
		return
	}
	slotStr, ep, found := strings.Cut(rest, " ")
	if !found {
		return
	}
	i := strings.LastIndexByte(ep, ':')
	if i < 0 {
		return
	}
	host, portStr := ep[:i], ep[i+1:]
	var err error
	if slot, err = strconv.Atoi(slotStr); err != nil || slot < 0 || slot >= SlotCount || strconv.Itoa(slot) != slotStr {
		return
	}
	if port, err = strconv.Atoi(portStr); err != nil || port < 1 || port > 65535 || strconv.Itoa(port) != portStr {
		return
	}
	if strings.IndexFunc(host, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return
	}
	return kind == "ASK", slot, host, port, true
}

func FuzzParseRedirect(f *testing.F) {
	for _, s := range []string{"-MOVED 3999 127.0.0.1:6381\r\n", "-ASK 1 ::1:7000", "MOVED 12 :6379", "-ASK 1 ?:1", "-MOVED 01 h:1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, ok := ParseRedirect(line)
		ask, slot, host, port, refOK := refRedirect(string(line))
		if ok != refOK {
			t.Fatalf("ParseRedirect(%q) ok=%t, reference %t", line, ok, refOK)
		}
		if !ok {
			return
		}
		if r.Ask != ask || r.Slot != slot || string(r.Host) != host || r.Port != port {
			t.Fatalf("ParseRedirect(%q) = %+v, reference %t %d %q %d", line, r, ask, slot, host, port)
		}
		// What Redis would print for it reads back the same.
		kind := "MOVED"
		if r.Ask {
			kind = "ASK"
		}
		again := fmt.Sprintf("-%s %d %s:%d\r\n", kind, r.Slot, r.Host, r.Port)
		if r2, ok := ParseRedirect([]byte(again)); !ok || r2.Slot != r.Slot || string(r2.Host) != string(r.Host) || r2.Port != r.Port || r2.Ask != r.Ask {
			t.Fatalf("%q does not read back: %+v, %t", again, r2, ok)
		}
	})
}

func TestParseRedirectAllocs(t *testing.T) {
	line := []byte("-MOVED 3999 127.0.0.1:6381\r\n")
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseRedirect(line) }); n != 0 {
		t.Errorf("ParseRedirect allocates %v times", n)
	}
}

func BenchmarkParseRedirect(b *testing.B) {
	line := []byte("-MOVED 3999 127.0.0.1:6381\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := ParseRedirect(line); !ok {
			b.Fatal("not parsed")
		}
	}
}

// TestRedirectsFromRedis parses the MOVED and ASK errors of real nodes,
// with each kind of preferred endpoint.
func TestRedirectsFromRedis(t *testing.T) {
	c := needCluster(t)
	prims := c.Primaries(t)
	key := "redirect-test"
	slot := SlotString(key)
	owner := c.SlotOwner(t, slot)
	var other *redistest.ClusterNode
	for _, p := range prims {
		if p != owner {
			other = p
			break
		}
	}
	ownerPort := owner.Port
	setAll := func(name, value string) {
		t.Helper()
		for _, n := range c.Nodes {
			if n.Alive() {
				if err := c.Client(n).ConfigSet(bg(), name, value).Err(); err != nil {
					t.Fatalf("CONFIG SET %s %s on %s: %v", name, value, n, err)
				}
			}
		}
	}
	setAll("cluster-announce-hostname", "localhost")
	t.Cleanup(func() {
		setAll("cluster-preferred-endpoint-type", "ip")
		setAll("cluster-announce-hostname", "")
	})
	for _, tc := range []struct {
		endpointType, host string
	}{
		{"ip", "127.0.0.1"},
		{"hostname", "localhost"},
		{"unknown-endpoint", ""},
	} {
		setAll("cluster-preferred-endpoint-type", tc.endpointType)
		var r Redirect
		var ok bool
		var err error
		// A node learns the others' hostnames by gossip; until then it
		// says "?", which is a form to parse too.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if err = c.Client(other).Get(bg(), key).Err(); err == nil {
				t.Fatalf("GET on a node without the slot succeeded")
			}
			r, ok = ParseRedirect([]byte("-" + err.Error() + "\r\n"))
			if !ok || string(r.Host) != "?" {
				break
			}
		}
		if !ok || r.Ask || r.Slot != slot || string(r.Host) != tc.host || r.Port != ownerPort {
			t.Errorf("%s: %q parsed as %+v, %t; want MOVED %d %s:%d", tc.endpointType, err, r, ok, slot, tc.host, ownerPort)
		}
		if addr, ok := r.Addr(other.Addr); !ok || (tc.host != "localhost" && addr != owner.Addr) {
			t.Errorf("%s: Addr = %q, %t", tc.endpointType, addr, ok)
		}
	}
	setAll("cluster-preferred-endpoint-type", "ip")

	// ASK while the slot migrates; then the slot lives on the other node.
	old := "{" + key + "}old" // same slot, on the source until migrated
	if err := c.Client(owner).Set(bg(), old, "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	m := c.BeginMove(t, slot, other)
	// Keys of the slot on both sides: the node cannot serve them together.
	err := c.Client(owner).MGet(bg(), key, old).Err()
	if err == nil || "-"+err.Error()+"\r\n" != ErrTryAgain {
		t.Errorf("MGET across a migrating slot: %v, want %q", err, ErrTryAgain)
	}
	err = c.Client(owner).Get(bg(), key).Err()
	r, ok := ParseRedirect([]byte("-" + err.Error() + "\r\n"))
	if !ok || !r.Ask || r.Slot != slot || string(r.Host) != "127.0.0.1" || r.Port != other.Port {
		t.Errorf("%q parsed as %+v, %t; want ASK %d %s", err, r, ok, slot, other.Addr)
	}
	m.Finish(t)
	if err := c.WaitStable(bg()); err != nil {
		t.Fatal(err)
	}
}
