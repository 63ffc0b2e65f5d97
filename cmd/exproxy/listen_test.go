package main

import (
	"net"
	"syscall"
	"testing"
)

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:6380": true,
		"127.9.9.9:1":    true,
		"[::1]:6380":     true,
		"localhost:6380": true,
		"0.0.0.0:6380":   false,
		":6380":          false,
		"10.0.0.5:6380":  false,
		"redis.svc:6380": false,
		"no-port":        false,
	} {
		if got := loopback(addr); got != want {
			t.Errorf("loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// keepAlive reads SO_KEEPALIVE of the server side of a connection
// accepted on a listener that listen opened for addr.
func keepAlive(t *testing.T, addr string) int {
	t.Helper()
	l, err := listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	raw, err := sc.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
	}); err != nil || gerr != nil {
		t.Fatalf("getsockopt: %v %v", err, gerr)
	}
	return v
}

func TestListenKeepAliveOnlyOffLoopback(t *testing.T) {
	if v := keepAlive(t, "127.0.0.1:0"); v != 0 {
		t.Errorf("loopback listener: SO_KEEPALIVE %d on a client, want 0", v)
	}
	if v := keepAlive(t, "0.0.0.0:0"); v == 0 {
		t.Errorf("wildcard listener: SO_KEEPALIVE off on a client, want Go's default keepalive")
	}
}
