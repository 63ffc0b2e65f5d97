package rcost

import (
	"fmt"
	"strconv"
	"strings"
)

// BenchLibrary holds the reference functions: a no-op, for what FCALL
// itself costs, and the read-modify-write increment the optimistic-locking
// workloads use as the one-round-trip reference (GET, +1, SET).
const BenchLibrary = `#!lua name=exbench
redis.register_function('exbench_noop', function(keys, args) return 1 end)
redis.register_function('exbench_incr', function(keys, args)
  local v = tonumber(redis.call('GET', keys[1]) or '0') + 1
  redis.call('SET', keys[1], v)
  return v
end)
`

// value is the 64-byte value every writing op stores, as the passthrough
// workloads' redis-benchmark -d 64 does.
var value = strings.Repeat("v", 64)

func kind(want byte) func(*Client, Reply) error {
	return func(_ *Client, r Reply) error {
		if r.Kind != want {
			return fmt.Errorf("reply %s, want type %q", r, want)
		}
		return nil
	}
}

// PlainOps are the references: Redis's own GET and SET, and the two
// functions of BenchLibrary (which must be loaded).
func PlainOps() []Op {
	return []Op{
		{Name: "GET", Top: "get",
			Setup: func(k string) [][]string { return [][]string{{"SET", k, value}} },
			Cmd:   func(c *Client) []string { return []string{"GET", c.Key} }, Check: kind('$')},
		{Name: "SET", Top: "set",
			Cmd: func(c *Client) []string { return []string{"SET", c.Key, value} }, Check: kind('+')},
		{Name: "FCALL noop (return 1)", Top: "fcall",
			Cmd: func(c *Client) []string { return []string{"FCALL", "exbench_noop", "1", c.Key} }, Check: kind(':')},
		{Name: "FCALL incr (GET, +1, SET)", Top: "fcall",
			Setup: func(k string) [][]string { return [][]string{{"SET", k, "0"}} },
			Cmd:   func(c *Client) []string { return []string{"FCALL", "exbench_incr", "1", c.Key} }, Check: kind(':')},
	}
}

// ExOps are the versioned-string handlers of a library whose functions
// fn names (handler -> function), called directly with FCALL. label
// tells two libraries apart in one run.
func ExOps(fn func(handler string) string, label string) []Op {
	name := func(s string) string {
		if label != "" {
			return s + " [" + label + "]"
		}
		return s
	}
	fcall := func(h, key string, args ...string) []string {
		return append([]string{"FCALL", fn(h), "1", key}, args...)
	}
	create := func(k string) [][]string { return [][]string{fcall("exset", k, value)} }
	return []Op{
		{Name: name("exget"), Top: "fcall", Setup: create,
			Cmd: func(c *Client) []string { return fcall("exget", c.Key) }, Check: kind('*')},
		{Name: name("exset"), Top: "fcall", Setup: create,
			Cmd: func(c *Client) []string { return fcall("exset", c.Key, value) }, Check: kind('+')},
		{Name: name("exincrby 1"), Top: "fcall",
			Setup: func(k string) [][]string { return [][]string{fcall("exset", k, "0")} },
			Cmd:   func(c *Client) []string { return fcall("exincrby", c.Key, "1") }, Check: kind(':')},
		{Name: name("excas (version matches)"), Top: "fcall",
			Setup: func(k string) [][]string { return [][]string{fcall("exset", k, value, "WITHVERSION")} },
			Seed: func(c *Client, r Reply) error {
				if r.Kind != ':' {
					return fmt.Errorf("EXSET WITHVERSION = %s", r)
				}
				c.Ver = r.Int
				return nil
			},
			Cmd: func(c *Client) []string {
				return fcall("excas", c.Key, value, strconv.FormatInt(c.Ver, 10))
			},
			Check: func(c *Client, r Reply) error {
				if r.Kind != '*' || len(r.Elems) != 3 || r.Elems[0].Str != "OK" || r.Elems[2].Kind != ':' {
					return fmt.Errorf("EXCAS = %s, want [OK \"\" version]", r)
				}
				c.Ver = r.Elems[2].Int
				return nil
			}},
		{Name: name("excas (stale: CAS_FAILED)"), Top: "fcall", Setup: create,
			// Versions start at 1, so 0 never matches.
			Cmd: func(c *Client) []string { return fcall("excas", c.Key, value, "0") },
			Check: func(c *Client, r Reply) error {
				if r.Kind != '*' || len(r.Elems) != 3 || r.Elems[0].Str != "CAS_FAILED" {
					return fmt.Errorf("EXCAS = %s, want CAS_FAILED", r)
				}
				return nil
			}},
	}
}
