package cluster

import (
	"net"
	"strconv"
)

// Redirect is a -MOVED or -ASK error reply of a cluster node.
type Redirect struct {
	// Ask is true for -ASK: send this one command, preceded by ASKING, to
	// the node named; the slot is being migrated there. -MOVED means the
	// slot now lives there, so the slot map is stale.
	Ask  bool
	Slot int
	// Host is as the node sent it, a sub-slice of the parsed line: an IP
	// address (IPv6 without brackets), a hostname (with
	// cluster-preferred-endpoint-type hostname), "?" for a hostname the
	// node does not know, or empty when the node does not know the
	// endpoint at all (cluster-preferred-endpoint-type unknown-endpoint),
	// which means "the host you asked".
	Host []byte
	Port int
}

// ParseRedirect reads a MOVED or ASK error line such as
// "-MOVED 3999 127.0.0.1:6381\r\n" or "-ASK 3999 ::1:6381"; the leading
// '-' and the CRLF are optional. It accepts exactly what Redis sends —
// "MOVED" or "ASK", one space, a slot below SlotCount without leading
// zeros, one space, host:port with a port from 1 to 65535 — and returns
// false for anything else, so any other error passes through as data.
// It does not allocate.
func ParseRedirect(line []byte) (r Redirect, ok bool) {
	if len(line) > 0 && line[0] == '-' {
		line = line[1:]
	}
	if n := len(line); n >= 2 && line[n-2] == '\r' && line[n-1] == '\n' {
		line = line[:n-2]
	}
	switch {
	case hasPrefix(line, "MOVED "):
		line = line[len("MOVED "):]
	case hasPrefix(line, "ASK "):
		r.Ask = true
		line = line[len("ASK "):]
	default:
		return Redirect{}, false
	}
	sp := -1
	for i, c := range line {
		if c == ' ' {
			sp = i
			break
		}
	}
	if sp < 0 {
		return Redirect{}, false
	}
	slot, ok := atoiCanonical(line[:sp], SlotCount-1)
	if !ok {
		return Redirect{}, false
	}
	ep := line[sp+1:]
	colon := -1
	for i := len(ep) - 1; i >= 0; i-- {
		if ep[i] == ':' {
			colon = i
			break
		}
	}
	if colon < 0 {
		return Redirect{}, false
	}
	port, ok := atoiCanonical(ep[colon+1:], 65535)
	if !ok || port == 0 {
		return Redirect{}, false
	}
	host := ep[:colon]
	for _, c := range host {
		if c <= ' ' || c == 0x7f {
			return Redirect{}, false
		}
	}
	r.Slot, r.Host, r.Port = slot, host, port
	return r, true
}

// Addr returns the address to dial for the redirection, Host and Port
// joined (IPv6 in brackets). An empty Host means the host of from, the
// address of the node that sent the redirection, as the cluster
// specification tells clients to do. For "?" (a hostname the node does
// not know) there is no address to dial: ok is false, and the slot map,
// which has the node's IP, must decide.
func (r Redirect) Addr(from string) (addr string, ok bool) {
	host := string(r.Host)
	switch host {
	case "?":
		return "", false
	case "":
		var err error
		if host, _, err = net.SplitHostPort(from); err != nil {
			return "", false
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(r.Port)), true
}

func hasPrefix(b []byte, p string) bool {
	return len(b) >= len(p) && string(b[:len(p)]) == p
}

// atoiCanonical reads a decimal number from 0 to max, as Redis prints
// one: digits only, no sign, no leading zero.
func atoiCanonical(b []byte, max int) (int, bool) {
	if len(b) == 0 || len(b) > 1 && b[0] == '0' {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
		if n > max {
			return 0, false
		}
	}
	return n, true
}
