package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/exproxy/exproxy/internal/proxytest"
)

const testLib = "#!lua name=e2elib\n" +
	"redis.register_function('e2e_echo', function(keys, args) return args[1] end)\n" +
	"redis.register_function('e2e_set', function(keys, args) return redis.call('SET', keys[1], args[1]) end)\n" +
	"redis.register_function{function_name='e2e_ro', callback=function(keys, args) return redis.call('GET', keys[1]) end, flags={'no-writes'}}\n"

func TestE2EScriptingPassthrough(t *testing.T) {
	h := proxytest.Start(t)
	sha := "e0e1f9fabfc9d4800c877a703b823ac0578ff8db" // SHA1 of "return 1"
	script := []proxytest.Step{
		c("EVAL", "return redis.call('SET', KEYS[1], ARGV[1])", "1", "k", "v"),
		c("EVAL", "return {1, 'two', {3}, redis.call('GET', KEYS[1])}", "1", "k"),
		c("EVAL", "return redis.error_reply('MYERR custom')", "0"),
		c("EVAL", "return redis.status_reply('FINE')", "0"),
		c("EVAL", "error('boom')", "0"),
		c("EVAL", "return 3.99", "0"),
		c("EVAL_RO", "return redis.call('GET', KEYS[1])", "1", "k"),
		c("SCRIPT", "LOAD", "return 1"), c("EVALSHA", sha, "0"), c("EVALSHA_RO", sha, "0"),
		c("SCRIPT", "EXISTS", sha, "0000000000000000000000000000000000000000"),
		c("EVALSHA", "0000000000000000000000000000000000000000", "0"),
		c("FUNCTION", "LOAD", testLib), c("FUNCTION", "LOAD", testLib),
		c("FCALL", "e2e_echo", "0", "hi\r\nthere"), c("FCALL", "e2e_set", "1", "fk", "fv"), c("FCALL_RO", "e2e_ro", "1", "fk"),
		c("FCALL", "nosuchfn", "0"), c("FUNCTION", "LIST", "LIBRARYNAME", "e2elib"),
		c("FUNCTION", "DUMP"), c("FUNCTION", "DELETE", "e2elib"), c("FCALL", "e2e_echo", "0", "x"),
		c("SCRIPT", "FLUSH"), c("EVALSHA", sha, "0"),
		// Long status and error lines (beyond the 64 KB inline limit),
		// and newlines in them (Redis turns them into spaces).
		c("EVAL", "return {ok=string.rep('s', 100000)}", "0"), c("EVAL", "return {err=string.rep('e', 100000)}", "0"),
		c("EVAL", "return redis.status_reply(string.rep('t', 1048576))", "0"),
		c("EVAL", "return {err='ERR multi\\r\\nline'}", "0"), c("EVAL", "return {ok='a\\nb'}", "0"),
		c("EVAL", "return {1, {ok=string.rep('n', 70000)}, {err=string.rep('m', 70000)}}", "0"),
		// A transaction around scripts.
		c("MULTI"), c("EVAL", "return 1", "0"), c("FCALL", "nosuchfn", "0"), c("EXEC"),
	}
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			h.SameAsRedis(t, proto, script)
		})
		t.Run(fmt.Sprintf("goredis_RESP%d", proto), func(t *testing.T) {
			ctx := context.Background()
			h.ResetRedis(t)
			cl := h.Client(t, proto)
			s := redisScript()
			if v, err := s.Run(ctx, cl, []string{"gk"}, "gv").Text(); err != nil || v != "gv" {
				t.Fatalf("Script.Run (EVALSHA, falls back to EVAL) = %q, %v", v, err)
			}
			if v, err := cl.FunctionLoad(ctx, testLib).Result(); err != nil || v != "e2elib" {
				t.Fatalf("FUNCTION LOAD = %q, %v", v, err)
			}
			if v, err := cl.FCall(ctx, "e2e_echo", nil, "x").Text(); err != nil || v != "x" {
				t.Fatalf("FCALL = %q, %v", v, err)
			}
			if _, err := cl.FCall(ctx, "nosuchfn", nil).Result(); err == nil || !strings.Contains(err.Error(), "Function not found") {
				t.Fatalf("FCALL nosuchfn: %v", err)
			}
		})
	}
}

func redisScript() *redis.Script {
	return redis.NewScript("redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])")
}
