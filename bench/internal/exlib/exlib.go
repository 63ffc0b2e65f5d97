// Package exlib loads the versioned-string Lua library into a Redis
// directly, as anyone using it without the proxy would (`exproxy lua`,
// then FUNCTION LOAD), so the benchmark can call it with FCALL and show
// what the proxy costs on top of the library.
package exlib

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Library is the Lua library an exproxy binary ships.
type Library struct {
	Name    string // library name, "exstring_<version>"
	Version string // content hash the function names end with
	Code    string // what FUNCTION LOAD takes
}

var header = regexp.MustCompile(`^#!lua name=(exstring_([0-9a-f]+))\n`)

// FromBinary runs `bin lua` and parses the library it prints.
func FromBinary(ctx context.Context, bin string) (Library, error) {
	cmd := exec.CommandContext(ctx, bin, "lua")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return Library{}, fmt.Errorf("%s lua: %w: %s", bin, err, strings.TrimSpace(errb.String()))
	}
	return Parse(out.String())
}

// Parse reads a library's name and version from its first line.
func Parse(code string) (Library, error) {
	m := header.FindStringSubmatch(code)
	if m == nil {
		first, _, _ := strings.Cut(code, "\n")
		return Library{}, fmt.Errorf("not an exstring library: first line %q", first)
	}
	return Library{Name: m[1], Version: m[2], Code: code}, nil
}

// Func is the function implementing handler ("excas", "exget", ...).
func (l Library) Func(handler string) string { return handler + "_" + l.Version }

// Load loads the library into the Redis at addr. A library of the same
// name is the same code (the name carries a hash of it), so "already
// exists" — a proxy in front of the same Redis loaded it first — is
// success.
func (l Library) Load(ctx context.Context, addr, password string) error {
	rdb := redis.NewClient(&redis.Options{Addr: addr, Password: password, Protocol: 2, DisableIdentity: true,
		MaxRetries: -1, ReadTimeout: 30 * time.Second})
	defer rdb.Close()
	err := rdb.FunctionLoad(ctx, l.Code).Err()
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		return fmt.Errorf("FUNCTION LOAD %s on %s: %w", l.Name, addr, err)
	}
	return nil
}

// LoadReplace loads any function library into the Redis at addr,
// replacing one of the same name (the harness's own reference functions).
func LoadReplace(ctx context.Context, addr, password, code string) error {
	rdb := redis.NewClient(&redis.Options{Addr: addr, Password: password, Protocol: 2, DisableIdentity: true,
		MaxRetries: -1, ReadTimeout: 30 * time.Second})
	defer rdb.Close()
	if err := rdb.FunctionLoadReplace(ctx, code).Err(); err != nil {
		return fmt.Errorf("FUNCTION LOAD REPLACE on %s: %w", addr, err)
	}
	return nil
}
