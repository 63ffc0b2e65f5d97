package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/internal/redistest"
)

// adminPaths is every path the admin endpoint serves with pprof on, plus
// error answers (unknown paths, a wrong method, a bad parameter).
var adminPaths = []struct{ method, path string }{
	{"GET", "/healthz"}, {"GET", "/readyz"}, {"GET", "/metrics"},
	{"GET", "/contention"}, {"GET", "/contention?top=1000"}, {"HEAD", "/contention"},
	{"GET", "/debug/pprof/"}, {"GET", "/debug/pprof/cmdline"}, {"GET", "/debug/pprof/symbol"},
	{"GET", "/debug/pprof/profile?seconds=1"}, {"GET", "/debug/pprof/trace?seconds=1"},
	{"GET", "/debug/pprof/allocs"}, {"GET", "/debug/pprof/allocs?debug=1"}, {"GET", "/debug/pprof/block?debug=1"},
	{"GET", "/debug/pprof/goroutine"}, {"GET", "/debug/pprof/goroutine?debug=1"}, {"GET", "/debug/pprof/goroutine?debug=2"},
	{"GET", "/debug/pprof/heap"}, {"GET", "/debug/pprof/heap?debug=1"}, {"GET", "/debug/pprof/mutex?debug=1"},
	{"GET", "/debug/pprof/threadcreate?debug=1"},
	{"GET", "/nope"}, {"GET", "/debug/pprof/nope"}, {"POST", "/healthz"}, {"POST", "/contention"},
	{"GET", "/contention?top=x"},
}

// TestBinaryAdminRevealsNoSecret runs the proxy with its upstream password
// given by flag, in the URL, by environment variable and in the YAML file
// (and the admin token by each of these too), with the profiler on, debug
// logs, and clients that authenticate, fail to, and contend. It then reads
// every admin path, with and without the token, and looks for every
// credential in each response's status line, headers and body (gunzipped
// profiles included), in the logs, on stderr and in `exproxy config`.
func TestBinaryAdminRevealsNoSecret(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr, Protocol: 2, DisableIdentity: true})
	defer admin.Close()

	type scenario struct {
		name     string
		user     string
		password string // what Redis expects from the proxy's user
		env      map[string]string
		args     []string
		file     string
		token    string // "" = none: the private paths are open on loopback
		secrets  []string
	}
	// Passwords with characters a URL must escape, so the escaped
	// spelling is checked too.
	scenarios := []scenario{
		{name: "flag", user: "u-flag", password: "pw@flag#7Qx2",
			args:  []string{"--upstream-username", "u-flag", "--upstream-password", "pw@flag#7Qx2", "--admin-token", "tok-flag-0123456789"},
			token: "tok-flag-0123456789"},
		{name: "url", user: "u-url", password: "pw@url#8Rz3",
			args: []string{"--upstream", "redis://u-url:" + url.QueryEscape("pw@url#8Rz3") + "@" + srv.Addr}},
		{name: "env", user: "u-env", password: "pw@env#9Sy4",
			env:   map[string]string{"EXPROXY_UPSTREAM_USERNAME": "u-env", "EXPROXY_UPSTREAM_PASSWORD": "pw@env#9Sy4", "EXPROXY_ADMIN_TOKEN": "tok-env-0123456789"},
			token: "tok-env-0123456789"},
		{name: "file", user: "u-file", password: "pw@file#1Tw5",
			file:  "upstream-username: u-file\nupstream-password: \"pw@file#1Tw5\"\nadmin:\n  token: tok-file-0123456789\n",
			token: "tok-file-0123456789"},
		{name: "all four, the flag wins", user: "u-all", password: "pw@allflag#2Uv6",
			args: []string{"--upstream", "redis://u-all:" + url.QueryEscape("pw@allurl#3Vu7") + "@" + srv.Addr,
				"--upstream-password=pw@allflag#2Uv6", "--admin-token=tok-allflag-0123456789"},
			env:   map[string]string{"EXPROXY_UPSTREAM_PASSWORD": "pw@allenv#4Wt8", "EXPROXY_ADMIN_TOKEN": "tok-allenv-0123456789"},
			file:  "upstream-password: \"pw@allfile#5Xs9\"\nadmin:\n  token: tok-allfile-0123456789\n",
			token: "tok-allflag-0123456789",
			secrets: []string{"pw@allurl#3Vu7", "pw@allenv#4Wt8", "pw@allfile#5Xs9",
				"tok-allenv-0123456789", "tok-allfile-0123456789"}},
	}
	const wrongPassword = "client-wrong-pw-6Yr0"
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			if err := admin.Do(ctx, "ACL", "SETUSER", sc.user, "on", ">"+sc.password, "~*", "&*", "+@all").Err(); err != nil {
				t.Fatal(err)
			}
			secrets := append([]string{sc.password, wrongPassword}, sc.secrets...)
			if sc.token != "" {
				secrets = append(secrets, sc.token)
			}
			for _, s := range append([]string(nil), secrets...) {
				if esc := url.QueryEscape(s); esc != s {
					secrets = append(secrets, esc)
				}
			}

			dir := t.TempDir()
			listen, adminAddr := freeAddr(t), freeAddr(t)
			logFile := filepath.Join(dir, "exproxy.log")
			args := []string{"--listen", listen, "--admin-listen", adminAddr, "--admin-pprof",
				"--log-level", "debug", "--log-file", logFile, "--contention-window", "1h"}
			if !containsArg(sc.args, "--upstream") {
				args = append(args, "--upstream", srv.Addr)
			}
			args = append(args, sc.args...)
			if sc.file != "" {
				file := filepath.Join(dir, "exproxy.yaml")
				if err := os.WriteFile(file, []byte(sc.file), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config", file)
			}
			p := startProxy(t, adminAddr, sc.env, args...)

			// Clients that authenticate (RESP2 AUTH, RESP3 HELLO AUTH),
			// one that fails to, and a WATCH/EXEC aborted by another
			// client, so /contention has keys and clients to show.
			bad := redis.NewClient(&redis.Options{Addr: listen, Username: sc.user, Password: wrongPassword, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
			if err := bad.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
				t.Errorf("a wrong password: %v, want WRONGPASS", err)
			}
			bad.Close()
			a := redis.NewClient(&redis.Options{Addr: listen, Username: sc.user, Password: sc.password, Protocol: 3, DisableIdentity: true, ClientName: "app-a"})
			b := redis.NewClient(&redis.Options{Addr: listen, Username: sc.user, Password: sc.password, Protocol: 2, DisableIdentity: true})
			defer a.Close()
			defer b.Close()
			err := a.Watch(ctx, func(tx *redis.Tx) error {
				if err := b.Set(ctx, "order:1:lock", "1", 0).Err(); err != nil {
					return err
				}
				_, err := tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
					pipe.Set(ctx, "order:1:lock", "2", 0)
					return nil
				})
				return err
			}, "order:1:lock")
			if !errors.Is(err, redis.TxFailedErr) {
				t.Fatalf("EXEC after a concurrent write: %v, want redis.TxFailedErr", err)
			}

			check := func(what string, data []byte) {
				t.Helper()
				for _, s := range secrets {
					if bytes.Contains(bytes.ToLower(data), bytes.ToLower([]byte(s))) {
						t.Errorf("%s shows the secret %q", what, s)
					}
				}
			}
			var cmdline, contention []byte
			for _, withToken := range []bool{false, true} {
				if withToken && sc.token == "" {
					continue
				}
				for _, ap := range adminPaths {
					req, err := http.NewRequest(ap.method, "http://"+adminAddr+ap.path, nil)
					if err != nil {
						t.Fatal(err)
					}
					if withToken {
						req.Header.Set("Authorization", "Bearer "+sc.token)
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatalf("%s %s: %v", ap.method, ap.path, err)
					}
					body, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil {
						t.Fatalf("%s %s: %v", ap.method, ap.path, err)
					}
					what := ap.method + " " + ap.path
					if bytes.HasPrefix(body, []byte{0x1f, 0x8b}) {
						// Profiles are gzipped protobuf: look inside.
						zr, err := gzip.NewReader(bytes.NewReader(body))
						if err != nil {
							t.Fatalf("%s: %v", what, err)
						}
						if body, err = io.ReadAll(zr); err != nil {
							t.Fatalf("%s: %v", what, err)
						}
					}
					check(what+" body", body)
					var head bytes.Buffer
					head.WriteString(resp.Status + "\n")
					_ = resp.Header.Write(&head)
					check(what+" headers", head.Bytes())
					private := strings.HasPrefix(ap.path, "/contention") || strings.HasPrefix(ap.path, "/debug/")
					if private && sc.token != "" && !withToken && resp.StatusCode != http.StatusUnauthorized {
						t.Errorf("%s without the token: %s, want 401", what, resp.Status)
					}
					if ap.method == "GET" && (ap.path == "/readyz" || ap.path == "/metrics") && resp.StatusCode != 200 {
						t.Errorf("%s: %s %q", what, resp.Status, body)
					}
					if resp.StatusCode == 200 && ap.path == "/debug/pprof/cmdline" {
						cmdline = body
					}
					if resp.StatusCode == 200 && ap.method == "GET" && ap.path == "/contention" {
						contention = body
					}
				}
			}
			// The answers checked above are the real ones, not errors.
			if !bytes.Contains(cmdline, []byte("--admin-listen\x00"+adminAddr)) {
				t.Errorf("/debug/pprof/cmdline: %q", cmdline)
			}
			if len(sc.args) > 0 && !bytes.Contains(cmdline, []byte("xxxxx")) {
				t.Errorf("/debug/pprof/cmdline masks nothing: %q", cmdline)
			}
			if !bytes.Contains(contention, []byte(`"order:1:lock"`)) {
				t.Errorf("/contention does not show the aborted key: %s", contention)
			}

			var cfgOut, cfgErr bytes.Buffer
			cfgCmd := exproxyCmd(t, sc.env, append([]string{"config"}, args...)...)
			cfgCmd.Stdout, cfgCmd.Stderr = &cfgOut, &cfgErr
			if err := cfgCmd.Run(); err != nil {
				t.Fatalf("exproxy config: %v: %s", err, cfgErr.String())
			}
			check("exproxy config", append(cfgOut.Bytes(), cfgErr.Bytes()...))

			a.Close()
			b.Close()
			if code := p.stop(t, syscall.SIGTERM); code != 0 {
				t.Errorf("exit %d after SIGTERM\n%s", code, p.stderr.String())
			}
			logs, err := os.ReadFile(logFile)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(logs, []byte(`"level":"debug"`)) {
				t.Errorf("no debug lines logged:\n%s", logs)
			}
			check("the log", logs)
			check("stderr", p.stderr.Bytes())
		})
	}
}

func containsArg(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}
