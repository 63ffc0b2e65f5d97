package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
	"github.com/exproxy/exproxy/proxy"
)

func TestE2ESelect(t *testing.T) {
	h := proxytest.Start(t)
	script := []proxytest.Step{
		c("SET", "k", "db0"), c("SELECT", "3"), c("GET", "k"), c("SET", "k", "db3"), c("SELECT", "0"), c("GET", "k"),
		c("SELECT", "3"), c("GET", "k"), c("SELECT", "99"), c("SELECT", "x"), c("MOVE", "k", "5"), c("SWAPDB", "0", "5"),
		c("GET", "k"), c("DBSIZE"),
	}
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("raw_RESP%d", proto), func(t *testing.T) {
			h.SameAsRedis(t, proto, script)
		})
		t.Run(fmt.Sprintf("goredis_RESP%d", proto), func(t *testing.T) {
			ctx := context.Background()
			h.ResetRedis(t)
			cl := h.Client(t, proto, func(o *redis.Options) { o.DB = 7 })
			if err := cl.Set(ctx, "sel", "seven", 0).Err(); err != nil {
				t.Fatal(err)
			}
			d7 := h.Direct(t, 2, func(o *redis.Options) { o.DB = 7 })
			if v, err := d7.Get(ctx, "sel").Result(); err != nil || v != "seven" {
				t.Fatalf("direct db 7 GET = %q, %v", v, err)
			}
			if n, err := h.Direct(t, 2).Exists(ctx, "sel").Result(); err != nil || n != 0 {
				t.Fatalf("key leaked into db 0: %d, %v", n, err)
			}
		})
	}
}

func TestE2EAuthRequirepass(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithRedis(redistest.WithConfig("requirepass", "s3cret")))
	h.Password = "s3cret"
	script := []proxytest.Step{
		c("PING"), c("GET", "k"), c("AUTH", "wrong"), c("AUTH", "default", "wrong"), c("PING"),
		c("AUTH", "s3cret"), c("PING"), c("SET", "k", "v"), c("GET", "k"), c("AUTH", "default", "s3cret"), c("ACL", "WHOAMI"),
	}
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("raw_RESP%d", proto), func(t *testing.T) {
			// proto 3 needs HELLO 3 with AUTH, so the raw script runs in
			// RESP2 and HELLO is covered below.
			h.SameAsRedisPrelude(t, 2, []string{"ECHO", "unauthenticated"}, script)
		})
		t.Run(fmt.Sprintf("goredis_RESP%d", proto), func(t *testing.T) {
			ctx := context.Background()
			bad := h.Client(t, proto)
			if err := bad.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
				t.Errorf("PING without password through proxy: %v, want NOAUTH", err)
			}
			good := h.Client(t, proto, func(o *redis.Options) { o.Password = "s3cret" })
			if err := good.Set(ctx, "gk", "gv", 0).Err(); err != nil {
				t.Fatalf("SET with password through proxy: %v", err)
			}
			if v, err := good.Get(ctx, "gk").Result(); err != nil || v != "gv" {
				t.Fatalf("GET = %q, %v", v, err)
			}
		})
	}
}

func TestE2EAuthACLUsers(t *testing.T) {
	h := proxytest.Start(t)
	admin := h.DirectRaw(t)
	for _, cmd := range [][]string{
		{"ACL", "SETUSER", "alice", "on", ">alicepw", "~*", "&*", "+@all"},
		{"ACL", "SETUSER", "bob", "on", ">bobpw", "~bob:*", "+get", "+set", "+acl|whoami", "+ping"},
	} {
		if got := admin.Do(cmd...); got != "+OK\r\n" {
			t.Fatalf("%v: %q", cmd, got)
		}
	}
	script := []proxytest.Step{
		c("ACL", "WHOAMI"), c("AUTH", "alice", "nope"), c("AUTH", "alice", "alicepw"), c("ACL", "WHOAMI"), c("SET", "x", "1"),
		c("AUTH", "bob", "bobpw"), c("ACL", "WHOAMI"), c("SET", "x", "1"), c("SET", "bob:x", "1"), c("GET", "bob:x"),
		c("DEL", "bob:x"), c("PING"), c("AUTH", "nobody", "pw"), c("ACL", "WHOAMI"),
	}
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("raw_RESP%d", proto), func(t *testing.T) {
			// resetRedis does not drop ACL users, so the script can rerun.
			h.SameAsRedis(t, proto, script)
		})
		t.Run(fmt.Sprintf("goredis_RESP%d", proto), func(t *testing.T) {
			ctx := context.Background()
			cl := h.Client(t, proto, func(o *redis.Options) { o.Username, o.Password = "bob", "bobpw" })
			if v, err := cl.Do(ctx, "ACL", "WHOAMI").Text(); err != nil || v != "bob" {
				t.Fatalf("WHOAMI = %q, %v", v, err)
			}
			if err := cl.Set(ctx, "x", "1", 0).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
				t.Fatalf("SET x as bob: %v, want NOPERM", err)
			}
		})
	}
}

// TestE2EHello: HELLO 2 / HELLO 3 with AUTH and SETNAME. The id field
// differs per connection, so it is masked before comparing.
func TestE2EHello(t *testing.T) {
	h := proxytest.Start(t)
	admin := h.DirectRaw(t)
	admin.Do("ACL", "SETUSER", "carol", "on", ">carolpw", "~*", "&*", "+@all")
	script := []proxytest.Step{
		c("HELLO"), c("HELLO", "3"), c("HELLO", "2"), c("HELLO", "4"), c("HELLO", "3", "AUTH", "carol", "bad"),
		c("HELLO", "3", "AUTH", "carol", "carolpw", "SETNAME", "app-3"), c("CLIENT", "GETNAME"), c("ACL", "WHOAMI"),
		c("HGETALL", "nohash"), c("HELLO", "2", "SETNAME", "app-2"), c("CLIENT", "GETNAME"), c("HGETALL", "nohash"),
		c("HELLO", "3", "SETNAME", "bad name"),
	}
	mask := func(v []string) []string {
		out := make([]string, len(v))
		for i, s := range v {
			out[i] = proxytest.HelloMask(s)
		}
		return out
	}
	h.ResetRedis(t)
	want := mask(proxytest.RunScript(t, h.Redis.Addr, 2, nil, script))
	got := mask(proxytest.RunScript(t, h.Addr, 2, nil, script))
	for i := range script {
		if got[i] != want[i] {
			t.Errorf("step %d %q:\n proxy: %s\ndirect: %s", i, script[i].Args, proxytest.Clip(got[i]), proxytest.Clip(want[i]))
		}
	}

	// Redis sees the proxied connection with the name and user it set.
	r := h.ProxyRaw(t)
	if got := r.Do("HELLO", "3", "AUTH", "carol", "carolpw", "SETNAME", "via-proxy"); !strings.HasPrefix(got, "%7\r\n") {
		t.Fatalf("HELLO 3: %q", got)
	}
	found := false
	for _, l := range h.ClientList(t) {
		if strings.Contains(l, " name=via-proxy ") {
			found = true
			if !strings.Contains(l, " user=carol") || !strings.Contains(l, " resp=3") {
				t.Errorf("CLIENT LIST entry %q: want user=carol resp=3", l)
			}
		}
	}
	if !found {
		t.Errorf("no CLIENT LIST entry named via-proxy: %q", h.ClientList(t))
	}
}

// TestE2EResp3Types: every RESP3 reply type passes through byte for byte.
func TestE2EResp3Types(t *testing.T) {
	h := proxytest.Start(t, proxytest.WithRedis(redistest.WithConfig("enable-debug-command", "yes")))
	script := []proxytest.Step{
		c("HSET", "h", "a", "1", "b", "2"), c("HGETALL", "h"), // map
		c("CONFIG", "GET", "maxmemory-policy"),       // map
		c("SADD", "s", "1", "2"), c("SMEMBERS", "s"), // set
		c("ZADD", "z", "1.5", "m"), c("ZSCORE", "z", "m"), c("ZINCRBY", "z", "1e300", "m"), // double
		c("ZADD", "zi", "inf", "m"), c("ZSCORE", "zi", "m"), // double inf
		c("EVAL", "return true", "0"), c("EVAL", "return {double=3.5}", "0"), // boolean, double from Lua
		c("GET", "nope"), c("HGET", "h", "nope"), // null
		c("DEBUG", "PROTOCOL", "string"), c("DEBUG", "PROTOCOL", "integer"), c("DEBUG", "PROTOCOL", "double"),
		c("DEBUG", "PROTOCOL", "bignum"), c("DEBUG", "PROTOCOL", "null"), c("DEBUG", "PROTOCOL", "array"),
		c("DEBUG", "PROTOCOL", "set"), c("DEBUG", "PROTOCOL", "map"), c("DEBUG", "PROTOCOL", "attrib"),
		c("DEBUG", "PROTOCOL", "verbatim"), c("DEBUG", "PROTOCOL", "true"), c("DEBUG", "PROTOCOL", "false"),
		{Args: []string{"DEBUG", "PROTOCOL", "push"}, N: 2}, // push, then the reply
		c("LOLWUT", "VERSION", "5", "1", "1", "1"),          // verbatim
		c("PING"),
	}
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			steps := script
			if proto == 2 {
				// In RESP2 DEBUG PROTOCOL push has no push: one reply.
				steps = append([]proxytest.Step(nil), script...)
				for i := range steps {
					if steps[i].N == 2 {
						steps[i].N = 1
					}
				}
			}
			h.SameAsRedis(t, proto, steps)
		})
		t.Run(fmt.Sprintf("pipelined_RESP%d", proto), func(t *testing.T) {
			steps := script
			if proto == 2 {
				steps = append([]proxytest.Step(nil), script...)
				for i := range steps {
					if steps[i].N == 2 {
						steps[i].N = 1
					}
				}
			}
			h.SameAsRedisPipelined(t, proto, steps)
		})
	}
	// Protocol switches inside one batch: the replies after each HELLO are
	// in the new protocol.
	t.Run("hello_switches_pipelined", func(t *testing.T) {
		h.SameAsRedisPipelined(t, 2, []proxytest.Step{
			c("HSET", "h", "a", "1"), c("HGETALL", "h"), c("GET", "nope"), c("HELLO", "3"), c("HGETALL", "h"), c("GET", "nope"),
			c("ZADD", "z", "1", "m"), c("ZSCORE", "z", "m"), c("HELLO", "2"), c("HGETALL", "h"), c("ZSCORE", "z", "m"),
			c("HELLO", "3"), c("MULTI"), c("HGETALL", "h"), c("HELLO", "2"), c("HGETALL", "h"), c("EXEC"), c("HGETALL", "h"),
			c("HELLO", "3"), c("RESET"), c("HGETALL", "h"),
		})
	})
	// Spot-check the RESP3 bytes themselves, so a proxy that turned both
	// sides into RESP2 would not pass.
	r := h.ProxyRaw(t)
	r.Do("HELLO", "3")
	for _, tc := range []struct {
		args   []string
		prefix string
	}{
		{[]string{"HGETALL", "h"}, "%"}, {[]string{"SMEMBERS", "s"}, "~"}, {[]string{"ZSCORE", "z", "m"}, ","},
		{[]string{"GET", "nope"}, "_"}, {[]string{"DEBUG", "PROTOCOL", "bignum"}, "("},
		{[]string{"DEBUG", "PROTOCOL", "verbatim"}, "="}, {[]string{"DEBUG", "PROTOCOL", "true"}, "#t"},
		{[]string{"DEBUG", "PROTOCOL", "attrib"}, "|"}, {[]string{"DEBUG", "PROTOCOL", "push"}, ">"},
	} {
		if got := r.Do(tc.args...); !strings.HasPrefix(got, tc.prefix) {
			t.Errorf("%v through proxy in RESP3 = %q, want prefix %q", tc.args, got, tc.prefix)
		}
		if tc.prefix == ">" {
			r.Read() // the reply after the push
		}
	}
}

// TestE2EProxyCredentialsNotUsedForClients: Upstream.Username/Password/DB
// are for the proxy's own connections only; a client that does not
// authenticate is refused as by Redis, and lands in db 0.
func TestE2EProxyCredentialsNotUsedForClients(t *testing.T) {
	h := proxytest.Start(t,
		proxytest.WithRedis(redistest.WithConfig("requirepass", "s3cret")),
		proxytest.WithOptions(func(o *proxy.Options) {
			o.Upstream.Username, o.Upstream.Password, o.Upstream.DB = "default", "s3cret", 3
		}))
	h.Password = "s3cret"
	c := h.ProxyRaw(t)
	if got := c.Do("PING"); !strings.HasPrefix(got, "-NOAUTH") {
		t.Fatalf("PING without AUTH through a proxy that has the password: %q, want -NOAUTH", got)
	}
	if got := c.Do("AUTH", "s3cret"); got != "+OK\r\n" {
		t.Fatalf("AUTH: %q", got)
	}
	c.Do("SET", "where", "db0")
	d := h.DirectRaw(t)
	if got := d.Do("GET", "where"); got != "$3\r\ndb0\r\n" {
		t.Errorf("client's key not in db 0: %q", got)
	}
}
