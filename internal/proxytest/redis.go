package proxytest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Eventually polls cond until it holds or IOTimeout passes.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(IOTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// InfoField reads one field of an INFO section from Redis directly.
func (h *Harness) InfoField(tb testing.TB, section, field string) string {
	tb.Helper()
	a := h.DirectRaw(tb)
	defer a.Close()
	v := a.Do("INFO", section)
	for _, line := range strings.Split(v, "\r\n") {
		if strings.HasPrefix(line, field+":") {
			return strings.TrimPrefix(line, field+":")
		}
	}
	return ""
}

// WaitBlocked waits until Redis reports n clients blocked.
func (h *Harness) WaitBlocked(tb testing.TB, n int) {
	tb.Helper()
	Eventually(tb, fmt.Sprintf("%d blocked clients", n), func() bool {
		return h.InfoField(tb, "clients", "blocked_clients") == strconv.Itoa(n)
	})
}

// ClientList returns Redis's CLIENT LIST lines (direct).
func (h *Harness) ClientList(tb testing.TB) []string {
	tb.Helper()
	a := h.DirectRaw(tb)
	defer a.Close()
	v := a.Do("CLIENT", "LIST")
	i := strings.Index(v, "\r\n")
	body := strings.TrimSuffix(v[i+2:], "\r\n")
	var lines []string
	for _, l := range strings.Split(body, "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// BaseClients is how many Redis connections the proxy holds for no client
// in particular: its shared connections and the ready ones.
func (h *Harness) BaseClients() int {
	st := h.Stats()
	return int(st.SharedConns + st.ReadyConns)
}

// NumClients counts Redis's client connections other than the test's own
// direct ones (the proxy's upstream connections, in practice).
func (h *Harness) NumClients(tb testing.TB) int {
	tb.Helper()
	n := 0
	for _, l := range h.ClientList(tb) {
		if strings.Contains(l, " name="+DirectClientName+" ") {
			continue
		}
		if _, mine := h.own.Load(ClientField(l, "addr")); mine {
			continue
		}
		n++
	}
	return n
}

// ClientField returns one field of a CLIENT LIST line.
func ClientField(line, name string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v
		}
	}
	return ""
}

// OpenFDs counts the test process's open file descriptors (-1 where
// /proc is missing).
func OpenFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}
