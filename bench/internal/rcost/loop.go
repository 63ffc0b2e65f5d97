package rcost

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/exproxy/exproxy/bench/internal/fixture"
)

// Loop measures a versioned-string handler's own cost: one FCALL runs the
// handler n times in a Lua loop, and Redis's CPU time over that call,
// divided by n, is what the handler costs — its Lua and the commands it
// runs — without FCALL's dispatch, the network or a reply. A single call
// of many milliseconds, repeated and its least taken, also makes this
// figure steadier than per-call ones on a shared machine (CPU time does not
// count the time Redis waits for its core), though a busy neighbour still
// costs it cache: compare libraries within one run (--lua-baseline).

// LoopHandlers are the handler runs Loop knows, in report order.
var LoopHandlers = []string{"exget", "exset", "exincrby", "excas_ok", "excas_stale"}

// loopSnippets calls the library's handler table H directly; the key is
// prepared by the loop function before the clock starts.
const loopSnippets = `
local V64 = 'vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv'
local loop_ver = '1'
local loop_runs = {
  exget = function(k) H.exget({k}, {}) end,
  exset = function(k) H.exset({k}, {V64}) end,
  exincrby = function(k) H.exincrby({k}, {'1'}) end,
  excas_ok = function(k)
    local r = H.excas({k}, {V64, loop_ver})
    if type(r) ~= 'table' or r[1].ok ~= 'OK' then return error('excas_ok: the version did not match') end
    loop_ver = tostring(r[3])
  end,
  excas_stale = function(k)
    local r = H.excas({k}, {V64, '0'})
    if type(r) ~= 'table' or r[1].ok ~= 'CAS_FAILED' then return error('excas_stale: not CAS_FAILED') end
  end,
}
redis.register_function('FN', function(keys, args)
  local k, f, n = keys[1], loop_runs[args[1]], tonumber(args[2])
  redis.call('DEL', k)
  H.exset({k}, {(args[1] == 'exincrby') and '0' or V64})
  loop_ver = '1'
  for i = 1, n do f(k) end
  redis.call('DEL', k)
  return 1
end)
`

var (
	libName  = regexp.MustCompile(`(?m)^#!lua name=\S+`)
	funcName = regexp.MustCompile(`function_name='([a-z]+)_[0-9a-f]+'`)
)

// LoopLibrary turns an exstring library's code into a library named name
// with the same body, its functions renamed (function names are global in
// Redis, and the original may be loaded too) and one more function,
// name+"_loop", that runs a handler in a loop: FCALL <name>_loop 1 <key>
// <handler run> <n>.
func LoopLibrary(code, name string) string {
	code = libName.ReplaceAllString(code, "#!lua name="+name)
	code = funcName.ReplaceAllString(code, "function_name='${1}_"+name+"'")
	return code + strings.ReplaceAll(loopSnippets, "'FN'", "'"+name+"_loop'")
}

// Loop runs handler run n times inside one FCALL of a library built by
// LoopLibrary (already loaded), reps times, and returns the least CPU
// time per run.
func Loop(ctx context.Context, addr, password string, redisPid int, lib, run string, n, reps int) (time.Duration, error) {
	c, err := dial(addr, password, "exbench:loop:"+lib)
	if err != nil {
		return 0, err
	}
	defer c.conn.Close()
	best := time.Duration(-1)
	for i := 0; i < reps && ctx.Err() == nil; i++ {
		cpu0, err := fixture.CPUTime(redisPid)
		if err != nil {
			return 0, err
		}
		if _, err := c.Do("FCALL", lib+"_loop", "1", c.Key, run, strconv.Itoa(n)); err != nil {
			return 0, fmt.Errorf("loop %s: %w", run, err)
		}
		cpu1, err := fixture.CPUTime(redisPid)
		if err != nil {
			return 0, err
		}
		if d := (cpu1 - cpu0) / time.Duration(n); best < 0 || d < best {
			best = d
		}
	}
	return best, ctx.Err()
}
