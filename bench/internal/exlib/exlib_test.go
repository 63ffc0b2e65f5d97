package exlib

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/extensions/exstring"
	"github.com/exproxy/exproxy/internal/redistest"
)

func TestParse(t *testing.T) {
	lib, err := Parse(exstring.Library())
	if err != nil {
		t.Fatal(err)
	}
	if lib.Name != exstring.LibraryName() || lib.Version != exstring.Version() {
		t.Fatalf("parsed %q version %q, want %q %q", lib.Name, lib.Version, exstring.LibraryName(), exstring.Version())
	}
	if got, want := lib.Func("excas"), exstring.FunctionName("excas"); got != want {
		t.Fatalf("Func = %q, want %q", got, want)
	}
	if _, err := Parse("#!lua name=other\nreturn 1\n"); err == nil {
		t.Fatal("parsed a library that is not exstring")
	}
}

// Loading twice (a proxy in front of the same Redis loaded it first) is
// success, and the functions answer FCALL.
func TestLoad(t *testing.T) {
	srv := redistest.Start(t)
	lib, err := Parse(exstring.Library())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := lib.Load(ctx, srv.Addr, ""); err != nil {
			t.Fatalf("load %d: %v", i, err)
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, Protocol: 2})
	defer rdb.Close()
	v, err := rdb.Do(ctx, "FCALL", lib.Func("exset"), 1, "k", "v", "WITHVERSION").Int64()
	if err != nil || v != 1 {
		t.Fatalf("FCALL exset = %v, %v; want 1", v, err)
	}
}
