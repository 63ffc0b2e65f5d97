package rcost

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/extensions/exstring"
	"github.com/exproxy/exproxy/internal/redistest"
)

func TestParseCommandStats(t *testing.T) {
	info := "# Commandstats\r\n" +
		"cmdstat_fcall:calls=10,usec=150,usec_per_call=15.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_hset:calls=10,usec=20,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_config|resetstat:calls=1,usec=5,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_info:calls=3,usec=9,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n"
	got := parseCommandStats(info)
	if len(got) != 2 || got["fcall"] != (CmdStat{10, 150}) || got["hset"] != (CmdStat{10, 20}) {
		t.Fatalf("parseCommandStats = %+v", got)
	}
	r := Result{Stats: got, top: "fcall"}
	if r.ExecPerCall() != 15 {
		t.Errorf("ExecPerCall = %v", r.ExecPerCall())
	}
	if n, list := r.Inner(); n != 1 || list != "hset 1.00" {
		t.Errorf("Inner = %v %q", n, list)
	}
}

// Every op runs against a real Redis with both libraries loaded, takes the
// path its name promises (Check fails otherwise), and commandstats shows
// the commands the Lua runs inside it.
func TestOps(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, Protocol: 2})
	defer rdb.Close()
	if err := rdb.FunctionLoad(ctx, exstring.Library()).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.FunctionLoad(ctx, BenchLibrary).Err(); err != nil {
		t.Fatal(err)
	}
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	pid := 0
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			pid, _ = strconv.Atoi(v)
		}
	}
	for _, op := range append(PlainOps(), ExOps(exstring.FunctionName, "")...) {
		res, err := Run(ctx, Config{Addr: srv.Addr, Clients: 4, Duration: 50 * time.Millisecond,
			RedisPid: pid, Prefix: "t"}, op)
		if err != nil {
			t.Fatalf("%s: %v", op.Name, err)
		}
		if res.Calls == 0 || res.Stats[op.Top].Calls < res.Calls {
			t.Fatalf("%s: %d calls, commandstats %+v", op.Name, res.Calls, res.Stats)
		}
		n, list := res.Inner()
		switch op.Name {
		case "GET", "SET", "FCALL noop (return 1)":
			if n != 0 {
				t.Errorf("%s: %v commands inside (%s), want none", op.Name, n, list)
			}
		case "FCALL incr (GET, +1, SET)":
			if list != "get 1.00, set 1.00" {
				t.Errorf("%s: inside %q", op.Name, list)
			}
		default:
			if n < 1 {
				t.Errorf("%s: %v commands inside, want the Lua's", op.Name, n)
			}
		}
	}
}

// The loop library keeps the handlers' behaviour under new names, and
// Loop reads a positive CPU time per run for every handler run.
func TestLoop(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, Protocol: 2})
	defer rdb.Close()
	// The original library too: the loop library must not clash with it.
	if err := rdb.FunctionLoad(ctx, exstring.Library()).Err(); err != nil {
		t.Fatal(err)
	}
	code := LoopLibrary(exstring.Library(), "exbench_loop_t")
	if err := rdb.FunctionLoad(ctx, code).Err(); err != nil {
		t.Fatalf("FUNCTION LOAD loop library: %v", err)
	}
	if v, err := rdb.Do(ctx, "FCALL", "exset_exbench_loop_t", 1, "k", "v", "WITHVERSION").Int64(); err != nil || v != 1 {
		t.Fatalf("renamed exset = %v, %v", v, err)
	}
	info, _ := rdb.Info(ctx, "server").Result()
	pid := 0
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			pid, _ = strconv.Atoi(v)
		}
	}
	for _, run := range LoopHandlers {
		d, err := Loop(ctx, srv.Addr, "", pid, "exbench_loop_t", run, 200, 2)
		if err != nil {
			t.Fatalf("%s: %v", run, err)
		}
		if d <= 0 {
			t.Errorf("%s: %v per run", run, d)
		}
	}
	// The EXCAS runs check the path they take: a stale run that succeeded,
	// or a matching run that failed, raises.
	if err := rdb.Do(ctx, "FCALL", "exbench_loop_t_loop", 1, "c", "excas_ok", 3).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Do(ctx, "FCALL", "exbench_loop_t_loop", 1, "c", "excas_stale", 3).Err(); err != nil {
		t.Fatal(err)
	}
}
