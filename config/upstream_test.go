package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseUpstream(t *testing.T) {
	tests := []struct {
		in   string
		want Upstream
		err  string
	}{
		{in: "127.0.0.1:6379", want: Upstream{Network: "tcp", Addr: "127.0.0.1:6379"}},
		{in: "redis.internal", want: Upstream{Network: "tcp", Addr: "redis.internal:6379"}},
		{in: "[::1]:7000", want: Upstream{Network: "tcp", Addr: "[::1]:7000"}},
		{in: "::1", want: Upstream{Network: "tcp", Addr: "[::1]:6379"}},
		{in: "redis://h:7000", want: Upstream{Network: "tcp", Addr: "h:7000"}},
		{in: "redis://h", want: Upstream{Network: "tcp", Addr: "h:6379"}},
		{in: "redis://h/", want: Upstream{Network: "tcp", Addr: "h:6379"}},
		{in: "redis://[::1]:7000/3", want: Upstream{Network: "tcp", Addr: "[::1]:7000", DB: 3}},
		{in: "redis://u:p%40ss@h:1/2", want: Upstream{Network: "tcp", Addr: "h:1", Username: "u", Password: "p@ss", DB: 2}},
		{in: "redis://:pw@h:1", want: Upstream{Network: "tcp", Addr: "h:1", Password: "pw"}},
		{in: "redis://h:1?db=4", want: Upstream{Network: "tcp", Addr: "h:1", DB: 4}},
		{in: "REDIS://h:1", want: Upstream{Network: "tcp", Addr: "h:1"}},
		{in: "rediss://u:pw@h:6380/1", want: Upstream{Network: "tcp", Addr: "h:6380", UseTLS: true, Username: "u", Password: "pw", DB: 1}},
		{in: "unix:///run/redis/redis.sock", want: Upstream{Network: "unix", Addr: "/run/redis/redis.sock"}},
		{in: "unix://u:pw@/run/redis.sock?db=5", want: Upstream{Network: "unix", Addr: "/run/redis.sock", Username: "u", Password: "pw", DB: 5}},
		{in: "/run/redis/redis.sock", want: Upstream{Network: "unix", Addr: "/run/redis/redis.sock"}},
		{in: "./redis.sock", want: Upstream{Network: "unix", Addr: "./redis.sock"}},
		{in: "", err: "empty: give host:port, a redis:// URL or a socket path"},
		{in: "h:x", err: `port "x" is not a number from 1 to 65535`},
		{in: "h:70000", err: `port "70000" is not a number from 1 to 65535`},
		{in: ":6379", err: `":6379" has no host`},
		{in: "a b", err: `"a b" is not host:port`},
		{in: "redis://", err: `"redis://" has no host`},
		{in: "redis://h:1/-1", err: `database "-1" is not a number >= 0`},
		{in: "redis://h:1/1/2", err: `database "1/2" is not a number >= 0`},
		{in: "redis://h:1?db=1&db=2", err: `unsupported URL parameter "db" (only db is known)`},
		{in: "unix://", err: `"unix://" has no socket path (use unix:///path/redis.sock)`},
		{in: "//u:secret@h:1", err: `"//u:xxxxx@h:1" looks like a URL without a scheme (use redis://, rediss:// or unix://)`},
		{in: "tcp://h:1", err: `unsupported scheme "tcp" (use redis://, rediss://, unix://, redis+cluster:// or rediss+cluster://)`},
		{in: "redis+cluster://h1:7000,h2:7001", want: Upstream{Network: "tcp", Addr: "h1:7000", Cluster: true, Seeds: []string{"h1:7000", "h2:7001"}}},
		{in: "redis+cluster://h1", want: Upstream{Network: "tcp", Addr: "h1:6379", Cluster: true, Seeds: []string{"h1:6379"}}},
		{in: "REDIS+CLUSTER://h1:1,h1:1,h2:2/", want: Upstream{Network: "tcp", Addr: "h1:1", Cluster: true, Seeds: []string{"h1:1", "h2:2"}}},
		{in: "redis+cluster://u:p%40ss@[::1]:7000,[::1]:7001,10.0.0.3/0", want: Upstream{Network: "tcp", Addr: "[::1]:7000", Cluster: true, Username: "u", Password: "p@ss", Seeds: []string{"[::1]:7000", "[::1]:7001", "10.0.0.3:6379"}}},
		{in: "rediss+cluster://:pw@h1:7000,h2:7001?db=0", want: Upstream{Network: "tcp", Addr: "h1:7000", Cluster: true, UseTLS: true, Password: "pw", Seeds: []string{"h1:7000", "h2:7001"}}},
		{in: "redis+cluster://", err: `"redis+cluster://" has no seed nodes (use redis+cluster://host1:port,host2:port)`},
		{in: "rediss+cluster://u:secret@/", err: `"rediss+cluster://u:xxxxx@/" has no seed nodes (use rediss+cluster://host1:port,host2:port)`},
		{in: "redis+cluster://u:secret@h1:1,,h2:2", err: `"redis+cluster://u:xxxxx@h1:1,,h2:2" has an empty seed node in "h1:1,,h2:2"`},
		{in: "redis+cluster://h1:1,h2:x", err: `port "x" is not a number from 1 to 65535`},
		{in: "redis+cluster://h1:1/1", err: `database 1: Redis Cluster has only database 0`},
		{in: "redis+cluster://h1:1?db=2", err: `database 2: Redis Cluster has only database 0`},
		{in: "redis+cluster://h1:1/x", err: `database "x" is not a number >= 0`},
		{in: "redis+cluster://h1:1?timeout=2", err: `unsupported URL parameter "timeout" (only db is known)`},
		{in: "redis+cluster://u:sec ret@h1:1", err: `not a valid URL "redis+cluster://u:xxxxx@h1:1": net/url: invalid userinfo`},
		{in: "redis://u:sec ret@h:1", err: `not a valid URL "redis://u:xxxxx@h:1": net/url: invalid userinfo`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseUpstream(tt.in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error = %v, want %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if s := got.String(); got.Password != "" && strings.Contains(s, got.Password) {
				t.Errorf("String() shows the password: %s", s)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"127.0.0.1:6379", "127.0.0.1:6379"},
		{"redis://h:1/0", "redis://h:1/0"},
		{"redis://user@h:1", "redis://user@h:1"},
		{"redis://u:secret@h:1/2", "redis://u:xxxxx@h:1/2"},
		{"rediss://:secret@h:1", "rediss://:xxxxx@h:1"},
		{"unix://u:secret@/run/r.sock", "unix://u:xxxxx@/run/r.sock"},
		{"redis://u:sec ret@h:1", "redis://u:xxxxx@h:1"},
		{"redis://u:a:b@h", "redis://u:xxxxx@h"},
		{"/run/redis.sock", "/run/redis.sock"},
		{"//u:secret@h", "//u:xxxxx@h"},
		{"redis+cluster://u:secret@h1:1,h2:2/0", "redis+cluster://u:xxxxx@h1:1,h2:2/0"},
		{"rediss+cluster://:secret@[::1]:1,[::1]:2", "rediss+cluster://:xxxxx@[::1]:1,[::1]:2"},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestResolveUpstream(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := writeCert(t, dir)
	bogus := filepath.Join(dir, "bogus.pem")
	if err := os.WriteFile(bogus, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, u Upstream)
		err   string
	}{
		{
			name: "credentials override the URL",
			args: []string{"--upstream", "redis://a:b@h:1", "--upstream-username", "app"},
			env:  map[string]string{"EXPROXY_UPSTREAM_PASSWORD": "s3"},
			check: func(t *testing.T, u Upstream) {
				if u.Username != "app" || u.Password != "s3" || u.TLS != nil {
					t.Errorf("got %+v", u)
				}
			},
		},
		{
			name: "rediss defaults",
			args: []string{"--upstream", "rediss://redis.internal:6380"},
			check: func(t *testing.T, u Upstream) {
				if u.TLS == nil || u.TLS.ServerName != "redis.internal" || u.TLS.RootCAs != nil || u.TLS.InsecureSkipVerify {
					t.Errorf("got %+v", u.TLS)
				}
			},
		},
		{
			name: "mutual TLS",
			args: []string{"--upstream", "rediss://10.0.0.1:6380", "--tls-ca-file", caFile, "--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-server-name", "redis.internal"},
			check: func(t *testing.T, u Upstream) {
				if u.TLS == nil || u.TLS.ServerName != "redis.internal" || u.TLS.RootCAs == nil || len(u.TLS.Certificates) != 1 {
					t.Errorf("got %+v", u.TLS)
				}
			},
		},
		{
			name: "cluster over TLS: each node's own name",
			args: []string{"--upstream", "rediss+cluster://a:b@h1:7000,h2:7001", "--tls-ca-file", caFile},
			check: func(t *testing.T, u Upstream) {
				if !u.Cluster || u.TLS == nil || u.TLS.ServerName != "" || u.TLS.RootCAs == nil || u.Password != "b" || len(u.Seeds) != 2 {
					t.Errorf("got %+v, TLS %+v", u, u.TLS)
				}
			},
		},
		{
			name: "cluster over TLS with a server name",
			args: []string{"--upstream", "rediss+cluster://h1:7000", "--tls-server-name", "redis.internal"},
			check: func(t *testing.T, u Upstream) {
				if u.TLS == nil || u.TLS.ServerName != "redis.internal" {
					t.Errorf("got %+v", u.TLS)
				}
			},
		},
		{name: "ca not pem", args: []string{"--upstream", "rediss://h:1", "--tls-ca-file", bogus}, err: "invalid --tls-ca-file: no PEM certificates in " + bogus},
		{name: "bad key pair", args: []string{"--upstream", "rediss://h:1", "--tls-cert-file", bogus, "--tls-key-file", keyFile}, err: "invalid --tls-cert-file: cannot load key pair: tls: failed to find any PEM data in certificate input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(t, "", tt.env, tt.args...)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error = %v, want %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			u, err := c.ResolveUpstream()
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, u)
		})
	}
}

// writeCert writes a self-signed certificate that serves as CA and client
// certificate, and its key.
func writeCert(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "exproxy test"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert = filepath.Join(dir, "cert.pem")
	key = filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, cert, key
}
