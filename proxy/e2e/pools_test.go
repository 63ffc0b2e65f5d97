package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/internal/proxytest"
	"github.com/exproxy/exproxy/internal/redistest"
)

// Multiplexing behind a password: sessions share connections with the
// sessions that Redis would see the same way — the same user with the
// same accepted password, protocol and database — and AUTH, SELECT and
// HELLO are checked by Redis itself on the way to a pool.

const testPass = "s3cret-pw"

func passwordHarness(t *testing.T) *proxytest.Harness {
	t.Helper()
	h := proxytest.Start(t, proxytest.WithRedis(redistest.WithConfig("requirepass", testPass)))
	h.Password = testPass
	admin := h.DirectRaw(t)
	defer admin.Close()
	if got := admin.Do("ACL", "SETUSER", "alice", "on", ">alice-pw", "~*", "&*", "+@all"); got != "+OK\r\n" {
		t.Fatalf("ACL SETUSER: %q", got)
	}
	return h
}

// TestE2EPasswordClientsShare: go-redis clients with a password (the
// default user and an ACL user, RESP2 and RESP3) all run on shared
// connections: no session takes a connection of its own, and Redis sees
// a handful of the proxy's connections, not one per client.
func TestE2EPasswordClientsShare(t *testing.T) {
	h := passwordHarness(t)
	if !h.Shared() {
		t.Skip("pinned mode gives every client its own connection")
	}
	ctx := context.Background()
	const clients = 24
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			proto := 2 + i%2
			c := h.Client(t, proto, func(o *redis.Options) {
				o.Password = testPass
				if i%3 == 0 {
					o.Username, o.Password = "alice", "alice-pw"
				}
			})
			key := "k" + strconv.Itoa(i)
			for j := 0; j < 20; j++ {
				if err := c.Incr(ctx, key).Err(); err != nil {
					t.Errorf("client %d: INCR: %v", i, err)
					return
				}
			}
			if v, err := c.Get(ctx, key).Int(); err != nil || v != 20 {
				t.Errorf("client %d: GET = %d, %v", i, v, err)
			}
			user, err := c.Do(ctx, "ACL", "WHOAMI").Text()
			if want := map[bool]string{true: "alice", false: "default"}[i%3 == 0]; err != nil || user != want {
				t.Errorf("client %d: ACL WHOAMI = %q, %v; want %q", i, user, err, want)
			}
		}()
	}
	wg.Wait()
	st := h.Stats()
	if st.SessionsPinned != 0 {
		t.Errorf("%d sessions took a connection of their own; want none", st.SessionsPinned)
	}
	// Pools: (default, RESP2), (default, RESP3), (alice, RESP2),
	// (alice, RESP3), and the unauthenticated one go-redis's handshake
	// passes through; a shared connection each and the ready ones (2
	// per pool in use), however many clients.
	if n, pools := h.NumClients(t), int(st.Pools); n > pools*3 || pools > 5 {
		t.Errorf("Redis has %d connections from the proxy in %d pools for %d clients; want at most 3 per pool", n, pools, clients)
	}
}

// TestE2EAuthLikeRedis: a wrong password gets WRONGPASS and leaves the
// session unauthenticated; the right one authenticates it; every reply is
// Redis's own, byte for byte, in both protocols and forms of AUTH.
func TestE2EAuthLikeRedis(t *testing.T) {
	h := passwordHarness(t)
	for _, proto := range proxytest.Protocols {
		h.SameAsRedis(t, proto, []proxytest.Step{
			proxytest.C("GET", "x"),
			proxytest.C("AUTH", "wrong"),
			proxytest.C("GET", "x"),
			proxytest.C("AUTH", "alice", "wrong"),
			proxytest.C("GET", "x"),
			proxytest.C("AUTH", testPass),
			proxytest.C("SET", "x", "1"),
			proxytest.C("ACL", "WHOAMI"),
			proxytest.C("AUTH", "alice", "wrong"), // a failed AUTH keeps the user Redis had
			proxytest.C("ACL", "WHOAMI"),
			proxytest.C("AUTH", "alice", "alice-pw"),
			proxytest.C("ACL", "WHOAMI"),
			proxytest.C("HELLO", strconv.Itoa(proto), "AUTH", "default", "nope"),
			proxytest.C("ACL", "WHOAMI"),
			proxytest.C("SELECT", "4"),
			proxytest.C("SET", "y", "2"),
			proxytest.C("SELECT", "99"),
			proxytest.C("GET", "y"),
			proxytest.C("SELECT", "0"),
			proxytest.C("GET", "y"),
			proxytest.C("RESET"),
			proxytest.C("GET", "x"),
		})
	}
}

// TestE2ESelectMovesToPool: SELECT moves a session to the pool of that
// database instead of giving it a connection of its own; keys land in the
// database Redis says.
func TestE2ESelectMovesToPool(t *testing.T) {
	h := proxytest.Start(t)
	ctx := context.Background()
	pinned := h.Stats().SessionsPinned
	for db := 0; db < 4; db++ {
		c := h.Client(t, 2, func(o *redis.Options) { o.DB = db })
		if err := c.Set(ctx, "where", strconv.Itoa(db), 0).Err(); err != nil {
			t.Fatalf("db %d: SET: %v", db, err)
		}
	}
	d := h.Direct(t, 2)
	for db := 0; db < 4; db++ {
		if err := d.Do(ctx, "SELECT", db).Err(); err != nil {
			t.Fatal(err)
		}
		if v, err := d.Get(ctx, "where").Result(); err != nil || v != strconv.Itoa(db) {
			t.Errorf("db %d holds %q, %v", db, v, err)
		}
	}
	if h.Shared() {
		if st := h.Stats(); st.SessionsPinned != pinned || st.Pools < 4 {
			t.Errorf("after SELECT in 4 databases: %d sessions pinned (was %d), %d pools; want none pinned and a pool per database",
				st.SessionsPinned, pinned, st.Pools)
		}
	}
}

// TestE2EDeletedUserClosesItsClients: ACL DELUSER makes Redis close every
// connection of that user. A client connected to Redis itself finds its
// connection closed; through the proxy, so does a client of that user —
// its pool is not kept alive with credentials Redis no longer accepts —
// while the other users' clients carry on.
func TestE2EDeletedUserClosesItsClients(t *testing.T) {
	h := passwordHarness(t)
	ctx := context.Background()
	alice := h.ProxyRaw(t)
	other := h.ProxyRaw(t)
	if got := alice.Do("AUTH", "alice", "alice-pw"); got != "+OK\r\n" {
		t.Fatalf("AUTH alice: %q", got)
	}
	if got := other.Do("AUTH", testPass); got != "+OK\r\n" {
		t.Fatalf("AUTH: %q", got)
	}
	alice.Do("PING")
	other.Do("PING")
	d := h.Direct(t, 2)
	if err := d.Do(ctx, "ACL", "DELUSER", "alice").Err(); err != nil {
		t.Fatal(err)
	}
	alice.Send("PING")
	if out, err := alice.ReadUntilEOF(); err != nil || out != "" {
		t.Errorf("alice's client after ACL DELUSER alice: %q, %v; want its connection closed", out, err)
	}
	if got := other.Do("PING"); got != "+PONG\r\n" {
		t.Errorf("another user's client after ACL DELUSER alice: %q", got)
	}
	// A new client cannot authenticate as alice any more.
	c := h.ProxyRaw(t)
	if got := c.Do("AUTH", "alice", "alice-pw"); !strings.HasPrefix(got, "-WRONGPASS") {
		t.Errorf("AUTH as the deleted user: %q", got)
	}
}

// TestE2EAuthenticatedTransaction: an authenticated session that runs a
// transaction takes a connection of its own set up as that user (and
// database and protocol), and shares again afterwards.
func TestE2EAuthenticatedTransaction(t *testing.T) {
	h := passwordHarness(t)
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			h.SameAsRedis(t, proto, []proxytest.Step{
				proxytest.C("AUTH", "alice", "alice-pw"),
				proxytest.C("SELECT", "2"),
				proxytest.C("SET", "k", "1"),
				proxytest.C("WATCH", "k"),
				proxytest.C("MULTI"),
				proxytest.C("INCR", "k"),
				proxytest.C("ACL", "WHOAMI"),
				proxytest.C("EXEC"),
				proxytest.C("GET", "k"),
				proxytest.C("ACL", "WHOAMI"),
			})
		})
	}
}
