package main

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/exproxy/exproxy/config"
	"github.com/exproxy/exproxy/extensions/contention"
	"github.com/exproxy/exproxy/proxy"
)

// TestAdminPrivateAccess walks the rules of docs/configuration.md: public
// paths are always served; private paths are open on loopback without a
// token, need the token when one is set (whatever the address), and are
// off beyond loopback unless explicitly allowed.
func TestAdminPrivateAccess(t *testing.T) {
	const token = "0123456789abcdef-admin"
	tracker, err := contention.New(contention.DefaultConfig(), contention.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer tracker.Close()
	h := &health{stats: func() proxy.Stats { return proxy.Stats{} }, ping: func(context.Context) error { return nil }}
	h.serving.Store(true)

	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	auths := []struct {
		name, header string
		valid        bool
	}{
		{"no header", "", false},
		{"bearer", "Bearer " + token, true},
		{"bearer lower-case scheme", "bearer " + token, true},
		{"bearer two spaces", "Bearer  " + token, true},
		{"basic, any user", basic("me", token), true},
		{"basic, no user", basic("", token), true},
		{"wrong bearer", "Bearer 0123456789abcdef-wrong", false},
		{"token prefix", "Bearer " + token[:len(token)-1], false},
		{"token plus a byte", "Bearer " + token + "x", false},
		{"empty bearer", "Bearer ", false},
		{"other scheme", "Token " + token, false},
		{"bare token", token, false},
		{"wrong basic", basic("me", "nope"), false},
	}
	public := []string{"/healthz", "/readyz", "/metrics"}
	private := []string{"/contention", "/contention?top=3", "/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/symbol", "/debug/pprof/goroutine?debug=1", "/debug/pprof/heap"}

	tests := []struct {
		name  string
		bound string // the address the listener bound
		token string
		allow bool
		want  privateAccess
	}{
		{"loopback", "127.0.0.1:9380", "", false, privateOpen},
		{"loopback, other 127/8 address", "127.0.0.2:9380", "", false, privateOpen},
		{"loopback IPv6", "[::1]:9380", "", false, privateOpen},
		{"loopback, allow changes nothing", "127.0.0.1:9380", "", true, privateOpen},
		{"wildcard IPv4", "0.0.0.0:9380", "", false, privateOff},
		{"wildcard IPv6", "[::]:9380", "", false, privateOff},
		{"pod address", "10.1.2.3:9380", "", false, privateOff},
		{"pod address, allowed", "10.1.2.3:9380", "", true, privateUnauthenticated},
		{"token on loopback", "127.0.0.1:9380", token, false, privateToken},
		{"token on wildcard", "0.0.0.0:9380", token, false, privateToken},
		{"token wins over allow", "0.0.0.0:9380", token, true, privateToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Admin.Listen, cfg.Admin.Pprof, cfg.Admin.Token, cfg.Admin.AllowUnauthenticated = tt.bound, true, tt.token, tt.allow
			o := newAdminOptions(cfg, tt.bound)
			if o.access != tt.want {
				t.Fatalf("access %v, want %v", o.access, tt.want)
			}
			mux := adminMux(h, tracker.Handler(), o)
			for _, a := range auths {
				get := func(path string) *httptest.ResponseRecorder {
					req := httptest.NewRequest("GET", path, nil)
					if a.header != "" {
						req.Header.Set("Authorization", a.header)
					}
					rec := httptest.NewRecorder()
					mux.ServeHTTP(rec, req)
					return rec
				}
				for _, p := range public {
					if rec := get(p); rec.Code != 200 {
						t.Errorf("%s, %s: %d, want 200 (public)", p, a.name, rec.Code)
					}
				}
				for _, p := range private {
					rec := get(p)
					switch {
					case tt.want == privateOpen || tt.want == privateUnauthenticated:
						if rec.Code != 200 {
							t.Errorf("%s, %s: %d, want 200", p, a.name, rec.Code)
						}
					case tt.want == privateOff:
						if rec.Code != 403 || !strings.Contains(rec.Body.String(), "admin.token") || !strings.Contains(rec.Body.String(), tt.bound) {
							t.Errorf("%s, %s: %d %q, want 403 naming admin.token and the address", p, a.name, rec.Code, rec.Body.String())
						}
					case a.valid:
						if rec.Code != 200 {
							t.Errorf("%s, %s: %d, want 200", p, a.name, rec.Code)
						}
					default:
						if rec.Code != 401 || len(rec.Header().Values("WWW-Authenticate")) != 2 {
							t.Errorf("%s, %s: %d %v, want 401 with Bearer and Basic challenges", p, a.name, rec.Code, rec.Header())
						}
					}
					if strings.Contains(rec.Body.String(), token) {
						t.Errorf("%s, %s: the body shows the token", p, a.name)
					}
					if rec.Header().Get("X-Content-Type-Options") != "nosniff" || rec.Header().Get("Cache-Control") != "no-store" {
						t.Errorf("%s: headers %v", p, rec.Header())
					}
				}
			}
		})
	}
}

// TestAdminPprofOff: with admin.pprof off (the default) /debug/pprof/ is
// not there at all, whatever the access.
func TestAdminPprofOff(t *testing.T) {
	if config.Default().Admin.Pprof {
		t.Fatal("admin.pprof is on by default")
	}
	h := &health{stats: func() proxy.Stats { return proxy.Stats{} }}
	o := newAdminOptions(config.Default(), "127.0.0.1:9380")
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap"} {
		rec := httptest.NewRecorder()
		adminMux(h, nil, o).ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code != 404 {
			t.Errorf("%s with pprof off: %d, want 404", p, rec.Code)
		}
	}
}

// TestAdminJudgesBoundAddress: the access rule follows the address the
// listener got, so "localhost" counts as loopback only because it bound
// 127.0.0.1, and ":0" (every interface) is not loopback.
func TestAdminJudgesBoundAddress(t *testing.T) {
	for _, tt := range []struct {
		listen string
		want   privateAccess
	}{
		{"127.0.0.1:0", privateOpen},
		{"localhost:0", privateOpen},
		{":0", privateOff},
		{"0.0.0.0:0", privateOff},
	} {
		cfg := config.Default()
		cfg.Admin.Listen = tt.listen
		h := &health{stats: func() proxy.Stats { return proxy.Stats{} }}
		a, err := startAdmin(cfg, h, nil, zap.NewNop())
		if err != nil {
			t.Fatalf("%s: %v", tt.listen, err)
		}
		if a.opts.access != tt.want {
			t.Errorf("%s (bound %s): access %v, want %v", tt.listen, a.addr(), a.opts.access, tt.want)
		}
		a.shutdown()
	}
}

func TestRedactArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		secrets []string
		want    []string
	}{
		{"secret flag, next argument",
			[]string{"exproxy", "--upstream-password", "pw1", "--listen", "x"}, nil,
			[]string{"exproxy", "--upstream-password", "xxxxx", "--listen", "x"}},
		{"secret flag with =, one dash",
			[]string{"exproxy", "-upstream-password=pw1", "-admin-token=tok"}, nil,
			[]string{"exproxy", "-upstream-password=xxxxx", "-admin-token=xxxxx"}},
		{"URL as the next argument",
			[]string{"exproxy", "serve", "--upstream", "redis://u:pw%40x@h:1/0"}, nil,
			[]string{"exproxy", "serve", "--upstream", "redis://u:xxxxx@h:1/0"}},
		{"URL with =",
			[]string{"exproxy", "--upstream=rediss://:pw@h"}, nil,
			[]string{"exproxy", "--upstream=rediss://:xxxxx@h"}},
		{"secret flag last, no value", []string{"exproxy", "--admin-token"}, nil, []string{"exproxy", "--admin-token"}},
		{"known secret in another form",
			[]string{"exproxy", "--upstream-username", "user-hunter2", "--log-file=/tmp/hunter2.log"}, []string{"hunter2"},
			[]string{"exproxy", "--upstream-username", "user-xxxxx", "--log-file=/tmp/xxxxx.log"}},
		{"longer secret first", []string{"x", "abcdef"}, []string{"abc", "abcdef"}, []string{"x", "xxxxx"}},
		{"nothing secret", []string{"exproxy", "--listen", "127.0.0.1:1", "-", "--"}, []string{""}, []string{"exproxy", "--listen", "127.0.0.1:1", "-", "--"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]string(nil), tt.args...)
			if got := redactArgs(tt.args, tt.secrets); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
			if !reflect.DeepEqual(in, tt.args) {
				t.Error("redactArgs changed its input")
			}
		})
	}
}

// TestCmdlineHandler: /debug/pprof/cmdline keeps pprof's format (NUL
// between arguments) and masks credentials.
func TestCmdlineHandler(t *testing.T) {
	defer func(a []string) { os.Args = a }(os.Args)
	os.Args = []string{"/bin/exproxy", "--upstream-password", "s3cret-pw", "--upstream=redis://u:other-pw@h:1", "--listen", "x"}
	rec := httptest.NewRecorder()
	cmdlineHandler([]string{"s3cret-pw"}).ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/cmdline", nil))
	want := "/bin/exproxy\x00--upstream-password\x00xxxxx\x00--upstream=redis://u:xxxxx@h:1\x00--listen\x00x"
	if rec.Code != http.StatusOK || rec.Body.String() != want {
		t.Errorf("got %d %q, want %q", rec.Code, rec.Body.String(), want)
	}
}
