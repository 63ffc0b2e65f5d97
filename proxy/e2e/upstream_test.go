package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
)

// shortScript is a quick same-as-Redis check for other upstream kinds.
var shortScript = []proxytest.Step{
	c("SET", "k", "v\r\n\x00"), c("GET", "k"), c("HSET", "h", "a", "1"), c("HGETALL", "h"), c("ZADD", "z", "2.5", "m"),
	c("ZSCORE", "z", "m"), c("MULTI"), c("INCR", "n"), c("EXEC"), c("NOSUCH"), c("PING"),
}

// TestE2EUnixSocketUpstream: Upstream{Network: "unix"} reaches Redis over
// its unix socket.
func TestE2EUnixSocketUpstream(t *testing.T) {
	sock := filepath.Join(shortTempDir(t), "redis.sock")
	r := redistest.Start(t, redistest.WithConfig("unixsocket", sock), redistest.WithConfig("unixsocketperm", "700"))
	h := proxytest.StartFor(t, r, proxytest.WithOptions(func(o *proxy.Options) {
		o.Upstream = proxy.Upstream{Network: "unix", Addr: sock}
	}))
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) { h.SameAsRedis(t, proto, shortScript) })
	}
	// The connection is Redis's unix socket client.
	c := h.ProxyRaw(t)
	c.Do("CLIENT", "SETNAME", "via-unix")
	for _, line := range h.ClientList(t) {
		if strings.Contains(line, "name=via-unix") && !strings.Contains(line, "flags=U") {
			t.Errorf("proxied connection is not a unix socket client: %q", line)
		}
	}
}

// shortTempDir is a temporary directory with a path short enough for a
// unix socket (t.TempDir paths can pass the 108-byte limit).
func shortTempDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// TestE2ETLSUpstream: Upstream.TLS makes the proxy speak TLS to Redis's
// tls-port while clients speak plain RESP.
func TestE2ETLSUpstream(t *testing.T) {
	dir := t.TempDir()
	pool := writeTestCerts(t, dir)
	tlsPort := redistest.FreePort(t)
	r := redistest.Start(t,
		redistest.WithConfig("tls-port", strconv.Itoa(tlsPort)),
		redistest.WithConfig("tls-cert-file", filepath.Join(dir, "server.crt")),
		redistest.WithConfig("tls-key-file", filepath.Join(dir, "server.key")),
		redistest.WithConfig("tls-ca-cert-file", filepath.Join(dir, "ca.crt")),
		redistest.WithConfig("tls-auth-clients", "no"),
	)
	tlsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))
	p := proxytest.StartProxy(t, tlsAddr, proxytest.WithOptions(func(o *proxy.Options) {
		o.Upstream.TLS = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	}))
	h := &proxytest.Harness{Redis: r, Proxy: p}
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) { h.SameAsRedis(t, proto, shortScript) })
	}
	// A 4 MB value through TLS.
	c := h.ProxyRaw(t)
	val := strings.Repeat("t", 4<<20)
	if got := c.Do("SET", "big", val); got != "+OK\r\n" {
		t.Fatalf("SET 4 MB over TLS: %q", got)
	}
	if got := c.Do("GET", "big"); got != "$4194304\r\n"+val+"\r\n" {
		t.Fatalf("GET 4 MB over TLS: %d bytes", len(got))
	}

	// A TLS upstream with a certificate the proxy does not trust gives a
	// clear error.
	p2 := proxytest.StartProxy(t, tlsAddr, proxytest.WithOptions(func(o *proxy.Options) {
		o.Upstream.TLS = &tls.Config{ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12} // system roots only
		o.DialTimeout = 5 * time.Second
	}))
	c2 := proxytest.Dial(t, p2.Addr)
	c2.Send("PING")
	got, err := c2.ReadE()
	if err != nil || !strings.HasPrefix(got, "-ERR ") || !strings.Contains(got, tlsAddr) {
		t.Errorf("untrusted TLS upstream: %q, %v; want -ERR naming %s", got, err, tlsAddr)
	}
	t.Logf("untrusted TLS upstream: %q", got)
}

// writeTestCerts writes ca.crt, server.crt and server.key (for 127.0.0.1)
// into dir and returns a pool holding the CA.
func writeTestCerts(t *testing.T, dir string) *x509.CertPool {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.crt", "CERTIFICATE", caDER)
	write("server.crt", "CERTIFICATE", srvDER)
	write("server.key", "EC PRIVATE KEY", keyDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool
}

// TestE2EListenAndServeUnix: Options.Listen with a "/" is a unix socket
// path that ListenAndServe serves.
func TestE2EListenAndServeUnix(t *testing.T) {
	r := redistest.Start(t)
	sock := filepath.Join(shortTempDir(t), "exproxy.sock")
	logger, _ := proxytest.NewLogger(t, zapcore.DebugLevel)
	srv, err := proxytest.NewServer(proxy.Options{Listen: sock, Upstream: proxy.Upstream{Network: "tcp", Addr: r.Addr}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()
	var conn net.Conn
	proxytest.Eventually(t, "unix socket listening", func() bool {
		c, err := net.DialTimeout("unix", sock, time.Second)
		if err != nil {
			return false
		}
		conn = c
		return true
	})
	rc := proxytest.NewConn(t, conn)
	defer rc.Close()
	if got := rc.Do("PING"); got != "+PONG\r\n" {
		t.Fatalf("PING over unix socket listener: %q", got)
	}
	rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), proxytest.IOTimeout)
	defer cancel()
	if err := proxytest.CallShutdown(srv, ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	select {
	case err := <-served:
		if !errors.Is(err, proxy.ErrServerClosed) {
			t.Errorf("ListenAndServe = %v, want ErrServerClosed", err)
		}
	case <-time.After(proxytest.IOTimeout):
		t.Fatal("ListenAndServe did not return")
	}
}

// TestE2EStats: the counters follow what happened.
func TestE2EStats(t *testing.T) {
	h := proxytest.Start(t)
	a, b := h.ProxyRaw(t), h.ProxyRaw(t)
	for i := 0; i < 10; i++ {
		a.Do("PING")
	}
	b.Write(append(proxytest.EncodeCommand("SET", "x", "1"), proxytest.EncodeCommand("GET", "x")...))
	b.Read()
	b.Read()
	st := h.Stats()
	if st.ClientsConnected != 2 || st.ClientsTotal != 2 || st.Commands < 12 || st.ProtocolErrors != 0 {
		t.Errorf("Stats = %+v; want 2 connected, 2 total, >= 12 commands, no errors", st)
	}
	a.Close()
	closeExchange(t, h.Addr, "*1\r\n$x\r\n")
	proxytest.Eventually(t, "ClientsConnected back to 1", func() bool { return h.Stats().ClientsConnected == 1 })
	if st := h.Stats(); st.ClientsTotal != 3 || st.ProtocolErrors != 1 {
		t.Errorf("Stats = %+v; want 3 total, 1 protocol error", st)
	}
}

// TestE2ENoCredentialsLogged: AUTH and HELLO AUTH passwords never reach
// the log, at debug level, also when commands fail or the upstream is down.
func TestE2ENoCredentialsLogged(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithRedis(redistest.WithConfig("requirepass", "pw-requirepass-1")))
	h.Password = "pw-requirepass-1"
	admin := h.DirectRaw(t)
	admin.Do("ACL", "SETUSER", "dave", "on", ">pw-dave-2", "~*", "+@all")
	c := h.ProxyRaw(t)
	c.Do("AUTH", "pw-wrong-3")
	c.Do("AUTH", "pw-requirepass-1")
	c.Do("AUTH", "dave", "pw-dave-2")
	c.Do("HELLO", "3", "AUTH", "dave", "pw-dave-2", "SETNAME", "n")
	c.Do("HELLO", "2", "AUTH", "dave", "pw-wrong-4")
	c.Send("AUTH", "dave", "pw-inflight-5")
	c.Read()
	// Commands pending when the upstream is lost, and a failed dial.
	c.Write(append(proxytest.EncodeCommand("BLPOP", "q", "0"), proxytest.EncodeCommand("AUTH", "dave", "pw-pending-6")...))
	h.WaitBlocked(t, 1)
	h.Redis.Stop()
	c.ReadUntilEOF()
	d := h.ProxyRaw(t)
	d.Send("AUTH", "dave", "pw-nodial-7")
	d.ReadE()
	d.Send("HELLO", "3", "AUTH", "dave", "pw-nodial-8")
	d.ReadE()
	// A malformed AUTH.
	closeExchange(t, h.Addr, "*3\r\n$4\r\nAUTH\r\n$4\r\ndave\r\n$x\r\npw-malformed-9\r\n")
	logs := h.Logs.Text()
	for _, pw := range []string{"pw-requirepass-1", "pw-dave-2", "pw-wrong-3", "pw-wrong-4", "pw-inflight-5", "pw-pending-6",
		"pw-nodial-7", "pw-nodial-8", "pw-malformed-9"} {
		if strings.Contains(logs, pw) {
			t.Errorf("password %s appears in the log", pw)
		}
	}
}
