package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/exproxy/exproxy/internal/proxytest"
)

// dataTypeScript exercises the common commands of every data type. Its
// replies are deterministic (explicit stream IDs, no random commands, small
// collections), so direct and proxied runs must match byte for byte.
func dataTypeScript() []proxytest.Step {
	return []proxytest.Step{
		// strings
		c("SET", "s", "hello"), c("GET", "s"), c("SET", "s", "x", "NX"), c("SET", "s", "world", "XX", "GET"),
		c("GETRANGE", "s", "1", "3"), c("SETRANGE", "s", "1", "AB"), c("APPEND", "s", "!!"), c("STRLEN", "s"),
		c("INCR", "n"), c("INCRBY", "n", "41"), c("DECR", "n"), c("DECRBY", "n", "2"), c("INCRBYFLOAT", "f", "1.5"),
		c("INCRBYFLOAT", "f", "0.1"), c("MSET", "a", "1", "b", "2"), c("MGET", "a", "b", "nope"),
		c("MSETNX", "a", "9", "z", "9"), c("GETDEL", "b"), c("GETEX", "a", "PERSIST"), c("SETEX", "t", "100", "v"),
		c("TTL", "t"), c("PERSIST", "t"), c("TTL", "t"), c("LCS", "s", "a"), c("OBJECT", "ENCODING", "n"),
		c("TYPE", "s"), c("EXISTS", "s", "a", "nope"), c("RENAME", "a", "a2"), c("COPY", "a2", "a3"),
		c("DEL", "a2", "a3", "nope"), c("DBSIZE"), c("GET", "nope"), c("INCR", "s"),
		// lists
		c("RPUSH", "l", "a", "b", "c", "d"), c("LPUSH", "l", "z"), c("LRANGE", "l", "0", "-1"), c("LLEN", "l"),
		c("LINDEX", "l", "2"), c("LSET", "l", "0", "y"), c("LINSERT", "l", "BEFORE", "c", "bb"), c("LPOS", "l", "c"),
		c("LREM", "l", "1", "bb"), c("LPOP", "l", "2"), c("RPOP", "l"), c("LMOVE", "l", "l2", "LEFT", "RIGHT"),
		c("RPOPLPUSH", "l", "l2"), c("LMPOP", "1", "l2", "LEFT", "COUNT", "5"), c("RPUSH", "l3", "x"),
		c("BLPOP", "l3", "1"), c("LTRIM", "l", "0", "0"), c("LRANGE", "nolist", "0", "-1"), c("GET", "l3x"),
		// hashes
		c("HSET", "h", "f1", "v1", "f2", "v2", "f3", "3"), c("HGET", "h", "f1"), c("HMGET", "h", "f1", "no", "f2"),
		c("HGETALL", "h"), c("HINCRBY", "h", "f3", "4"), c("HINCRBYFLOAT", "h", "f3", "0.25"), c("HKEYS", "h"),
		c("HVALS", "h"), c("HLEN", "h"), c("HEXISTS", "h", "f2"), c("HDEL", "h", "f2"), c("HSETNX", "h", "f1", "x"),
		c("HSTRLEN", "h", "f1"), c("HGETALL", "nohash"),
		// sets
		c("SADD", "si", "3", "1", "2"), c("SMEMBERS", "si"), c("SADD", "si2", "2", "3", "4"),
		c("SINTER", "si", "si2"), c("SUNION", "si", "si2"), c("SDIFF", "si", "si2"), c("SISMEMBER", "si", "1"),
		c("SMISMEMBER", "si", "1", "7"), c("SCARD", "si"), c("SADD", "ss", "x"), c("SMEMBERS", "ss"),
		c("SREM", "si", "1"), c("SINTERCARD", "2", "si", "si2"), c("SORT", "si2"), c("SMOVE", "si", "si2", "3"),
		// sorted sets
		c("ZADD", "z", "1", "a", "2", "b", "3.5", "c"), c("ZRANGE", "z", "0", "-1", "WITHSCORES"), c("ZSCORE", "z", "c"),
		c("ZINCRBY", "z", "0.25", "a"), c("ZRANK", "z", "b"), c("ZREVRANGE", "z", "0", "1"),
		c("ZRANGEBYSCORE", "z", "(1", "+inf", "WITHSCORES", "LIMIT", "0", "5"), c("ZCOUNT", "z", "-inf", "+inf"),
		c("ZMSCORE", "z", "a", "nope"), c("ZPOPMIN", "z"), c("ZUNIONSTORE", "z2", "1", "z"), c("ZRANGESTORE", "z3", "z", "0", "0"),
		c("ZADD", "zl", "0", "a", "0", "b", "0", "c"), c("ZRANGEBYLEX", "zl", "[b", "+"), c("ZLEXCOUNT", "zl", "-", "+"),
		c("ZRANDMEMBER", "nozset"), c("ZSCORE", "z", "nope"),
		// streams
		c("XADD", "st", "1-1", "f", "v1"), c("XADD", "st", "2-1", "f", "v2", "g", "w"), c("XLEN", "st"),
		c("XRANGE", "st", "-", "+"), c("XREVRANGE", "st", "+", "-", "COUNT", "1"), c("XREAD", "COUNT", "10", "STREAMS", "st", "0"),
		c("XGROUP", "CREATE", "st", "g", "0"), c("XREADGROUP", "GROUP", "g", "c1", "COUNT", "1", "STREAMS", "st", ">"),
		c("XACK", "st", "g", "1-1"), c("XDEL", "st", "2-1"), c("XTRIM", "st", "MAXLEN", "0"), c("XADD", "st", "1-0", "f", "v"),
		c("XREAD", "STREAMS", "nost", "0"),
		// bitmaps
		c("SETBIT", "bm", "7", "1"), c("SETBIT", "bm", "100", "1"), c("GETBIT", "bm", "7"), c("BITCOUNT", "bm"),
		c("BITPOS", "bm", "1"), c("BITOP", "NOT", "bm2", "bm"), c("GET", "bm"), c("GET", "bm2"),
		c("BITFIELD", "bf", "SET", "u8", "0", "255", "GET", "u8", "0", "INCRBY", "i5", "8", "100"),
		// HyperLogLog
		c("PFADD", "hll", "a", "b", "c", "a"), c("PFCOUNT", "hll"), c("PFADD", "hll2", "x"), c("PFMERGE", "hll3", "hll", "hll2"),
		c("PFCOUNT", "hll3"), c("GET", "hll"),
		// geo
		c("GEOADD", "geo", "13.361389", "38.115556", "Palermo", "15.087269", "37.502669", "Catania"),
		c("GEODIST", "geo", "Palermo", "Catania", "km"), c("GEOPOS", "geo", "Palermo", "nope"), c("GEOHASH", "geo", "Catania"),
		c("GEOSEARCH", "geo", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "ASC", "WITHDIST", "WITHCOORD"),
		// generic, binary replies and errors
		c("DUMP", "l"), c("EXPIRE", "h", "1000"), c("TTL", "h"), c("OBJECT", "ENCODING", "h"), c("TYPE", "st"),
		c("GET", "l"), c("NOSUCHCOMMAND", "x"), c("SET", "onlykey"), c("ECHO", ""),
	}
}

func TestE2EDataTypesSameAsRedis(t *testing.T) {
	h := proxytest.Start(t)
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			h.SameAsRedis(t, proto, dataTypeScript())
		})
		t.Run(fmt.Sprintf("pipelined_RESP%d", proto), func(t *testing.T) {
			h.SameAsRedisPipelined(t, proto, dataTypeScript())
		})
	}
}

func TestE2EBinarySafeValues(t *testing.T) {
	h := proxytest.Start(t)
	values := map[string]string{
		"crlf":     "a\r\nb\r\n",
		"nul":      "\x00x\x00\x00",
		"empty":    "",
		"resp":     "*1\r\n$4\r\nPING\r\n",
		"high":     "\xff\xfe\x80\x00\r",
		"lonelyCR": "\r",
	}
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			var steps []proxytest.Step
			for k, v := range values {
				steps = append(steps, c("SET", k, v), c("GET", k), c("STRLEN", k), c("HSET", "h", k, v),
					c("RPUSH", "l", v), c("ECHO", v))
			}
			steps = append(steps, c("LRANGE", "l", "0", "-1"), c("HGETALL", "h"))
			h.SameAsRedis(t, proto, steps)

			// And go-redis sees the same values.
			ctx := context.Background()
			cl := h.Client(t, proto)
			for k, v := range values {
				if err := cl.Set(ctx, "g"+k, v, 0).Err(); err != nil {
					t.Fatalf("SET %s: %v", k, err)
				}
				got, err := cl.Get(ctx, "g"+k).Result()
				if err != nil || got != v {
					t.Errorf("GET %s = %q, %v; want %q", k, got, err, v)
				}
			}
		})
	}
}

// patternPeriod is prime, so the pattern does not line up with any
// buffer size.
const patternPeriod = 4093

// patternTable holds two periods, so any window of up to one period is a
// plain slice.
var patternTable = func() []byte {
	b := make([]byte, 2*patternPeriod)
	for i := range b {
		j := i % patternPeriod
		switch {
		case j%97 == 0:
			b[i] = '\r'
		case j%97 == 1:
			b[i] = '\n'
		case j%89 == 5:
			b[i] = 0
		default:
			b[i] = byte((j*131 + j>>3) % 251)
		}
	}
	return b
}()

// patternReader produces n bytes of the pattern (with CR, LF and NUL in
// it) without holding them.
type patternReader struct {
	off, n int64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	if rem := p.n - p.off; int64(len(b)) > rem {
		b = b[:rem]
	}
	total := 0
	for len(b) > 0 {
		i := int(p.off % patternPeriod)
		n := copy(b, patternTable[i:i+patternPeriod])
		b = b[n:]
		p.off += int64(n)
		total += n
	}
	return total, nil
}

// patternChecker verifies that what is written to it is the pattern.
type patternChecker struct {
	off int64
	bad int64 // first mismatching offset + 1
}

func (p *patternChecker) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := int(p.off % patternPeriod)
		k := min(len(b), patternPeriod)
		if p.bad == 0 && !bytes.Equal(b[:k], patternTable[i:i+k]) {
			for j := 0; j < k; j++ {
				if b[j] != patternTable[i+j] {
					p.bad = p.off + int64(j) + 1
					break
				}
			}
		}
		b = b[k:]
		p.off += int64(k)
	}
	return n, nil
}

// heapPeak samples HeapInuse until stopped and reports the largest value.
type heapPeak struct {
	stop chan struct{}
	done chan uint64
}

func startHeapPeak() *heapPeak {
	p := &heapPeak{stop: make(chan struct{}), done: make(chan uint64, 1)}
	go func() {
		var peak uint64
		var ms runtime.MemStats
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak {
				peak = ms.HeapInuse
			}
			select {
			case <-p.stop:
				p.done <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

func (p *heapPeak) end() uint64 { close(p.stop); return <-p.done }

func settledHeap() runtime.MemStats {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms
}

func TestE2ELargeValues(t *testing.T) {
	h := proxytest.Start(t)
	ctx := context.Background()

	t.Run("1MB_goredis", func(t *testing.T) {
		for _, proto := range proxytest.Protocols {
			cl := h.Client(t, proto)
			v := strings.Repeat("0123456789\r\n\x00abc", (1<<20)/16)
			key := "big1m-" + strconv.Itoa(proto)
			if err := cl.Set(ctx, key, v, 0).Err(); err != nil {
				t.Fatalf("RESP%d SET 1MB: %v", proto, err)
			}
			got, err := cl.Get(ctx, key).Result()
			if err != nil || got != v {
				t.Fatalf("RESP%d GET 1MB: err %v, equal %v (len %d)", proto, err, got == v, len(got))
			}
			d, err := h.Direct(t, 2).Get(ctx, key).Result()
			if err != nil || d != v {
				t.Fatalf("direct GET of value set through proxy: err %v, equal %v", err, d == v)
			}
		}
	})

	for _, size := range []int64{1 << 20, 64 << 20} {
		t.Run(fmt.Sprintf("stream_%dMB", size>>20), func(t *testing.T) {
			streamLargeValue(t, h, size)
		})
	}
}

// streamLargeValue SETs and GETs a value of size bytes through the proxy on
// a raw connection, streaming it from a generator and checking the reply
// without holding it, and requires that the process heap (the proxy is in
// this process) does not grow by anything like the value's size.
func streamLargeValue(t *testing.T, h *proxytest.Harness, size int64) {
	r := h.ProxyRaw(t)
	key := fmt.Sprintf("stream%d", size)
	header := fmt.Sprintf("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n", len(key), key, size)

	base := settledHeap()
	peak := startHeapPeak()

	_ = r.C.SetWriteDeadline(time.Now().Add(5 * proxytest.IOTimeout))
	_ = r.C.SetReadDeadline(time.Now().Add(5 * proxytest.IOTimeout))
	body := io.MultiReader(strings.NewReader(header), &patternReader{n: size}, strings.NewReader("\r\n"))
	if _, err := io.CopyBuffer(r.C, body, make([]byte, 64<<10)); err != nil {
		peak.end()
		t.Fatalf("streaming SET: %v", err)
	}
	if got := r.Read(); got != "+OK\r\n" {
		peak.end()
		t.Fatalf("SET reply %q", got)
	}
	r.Send("GET", key)
	_ = r.C.SetReadDeadline(time.Now().Add(5 * proxytest.IOTimeout))
	line, err := r.BR.ReadString('\n')
	if want := fmt.Sprintf("$%d\r\n", size); err != nil || line != want {
		peak.end()
		t.Fatalf("GET header %q, %v; want %q", line, err, want)
	}
	chk := &patternChecker{}
	n, err := io.CopyN(chk, r.BR, size)
	if err != nil {
		peak.end()
		t.Fatalf("GET body: read %d of %d: %v", n, size, err)
	}
	trailer := make([]byte, 2)
	if _, err := io.ReadFull(r.BR, trailer); err != nil || string(trailer) != "\r\n" {
		t.Errorf("GET trailer %q, %v", trailer, err)
	}
	p := peak.end()
	if chk.bad != 0 {
		t.Errorf("value differs at byte %d", chk.bad-1)
	}
	if got := r.Do("STRLEN", key); got != fmt.Sprintf(":%d\r\n", size) {
		t.Errorf("STRLEN %q", got)
	}
	growth := int64(p) - int64(base.HeapInuse)
	after := settledHeap()
	t.Logf("value %d MB: HeapInuse base %d MB, peak %d MB (growth %d MB); HeapSys %d -> %d MB; TotalAlloc +%d MB",
		size>>20, base.HeapInuse>>20, p>>20, growth>>20, base.HeapSys>>20, after.HeapSys>>20, (after.TotalAlloc-base.TotalAlloc)>>20)
	if size >= 64<<20 && growth > size/4 {
		t.Errorf("heap grew by %d MB while streaming a %d MB value through the proxy: the value is buffered, not streamed",
			growth>>20, size>>20)
	}
}

func TestE2EPipeline10000(t *testing.T) {
	h := proxytest.Start(t)
	const n = 10000
	for _, proto := range proxytest.Protocols {
		t.Run(fmt.Sprintf("raw_RESP%d", proto), func(t *testing.T) {
			r := h.ProxyRaw(t)
			if proto == 3 {
				r.Do("HELLO", "3")
			}
			ctr := fmt.Sprintf("ctr%d", proto)
			var buf bytes.Buffer
			for i := 0; i < n; i++ {
				if i%2 == 0 {
					buf.Write(proxytest.EncodeCommand("INCR", ctr))
				} else {
					buf.Write(proxytest.EncodeCommand("ECHO", "e"+strconv.Itoa(i)))
				}
			}
			// Read concurrently, as a real client does, while writing all
			// 10,000 commands in one Write.
			errc := make(chan error, 1)
			go func() {
				next := 1
				for i := 0; i < n; i++ {
					v, err := r.ReadE()
					if err != nil {
						errc <- fmt.Errorf("reply %d: %v", i, err)
						return
					}
					var want string
					if i%2 == 0 {
						want = fmt.Sprintf(":%d\r\n", next)
						next++
					} else {
						e := "e" + strconv.Itoa(i)
						want = fmt.Sprintf("$%d\r\n%s\r\n", len(e), e)
					}
					if v != want {
						errc <- fmt.Errorf("reply %d = %q, want %q", i, v, want)
						return
					}
				}
				errc <- nil
			}()
			if err := r.WriteE(buf.Bytes()); err != nil {
				t.Fatalf("write pipeline: %v", err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if got := r.Do("PING"); got != "+PONG\r\n" {
				t.Fatalf("PING after pipeline: %q", got)
			}
		})
		t.Run(fmt.Sprintf("goredis_RESP%d", proto), func(t *testing.T) {
			ctx := context.Background()
			cl := h.Client(t, proto)
			pipe := cl.Pipeline()
			key := fmt.Sprintf("gctr%d", proto)
			cmds := make([]interface{ Err() error }, 0, n)
			for i := 0; i < n; i++ {
				cmds = append(cmds, pipe.Incr(ctx, key))
			}
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatalf("pipeline: %v", err)
			}
			for i, cmd := range cmds {
				v, err := cmd.(interface{ Result() (int64, error) }).Result()
				if err != nil || v != int64(i+1) {
					t.Fatalf("reply %d = %d, %v", i, v, err)
				}
			}
		})
	}
}

func TestE2EInlineCommands(t *testing.T) {
	h := proxytest.Start(t)
	cases := []struct {
		name  string
		input string
	}{
		{"ping", "PING\r\n"},
		{"ping_lf_only", "PING\n"},
		{"quoted", "SET a \"b c\"\r\nGET a\r\n"},
		{"single_quoted", "SET a 'x y'\r\nGET a\r\n"},
		{"escapes", "SET a \"\\x41\\r\\n\\t\"\r\nGET a\r\n"},
		{"empty_lines", "\r\n\r\n\n  \r\nPING\r\n"},
		{"mixed_with_multibulk", "PING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nECHO inline\r\n"},
		{"lowercase", "set k v\r\nget k\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := inlineExchange(t, h.Redis.Addr, tc.input)
			got := inlineExchange(t, h.Addr, tc.input)
			if got != want {
				t.Errorf("input %q:\n proxy %q\ndirect %q", tc.input, got, want)
			}
		})
	}
	t.Run("typed_as_in_nc", func(t *testing.T) {
		r := h.ProxyRaw(t)
		r.WriteString("PING\r\n")
		if got := r.Read(); got != "+PONG\r\n" {
			t.Fatalf("PING: %q", got)
		}
		r.WriteString("SET a \"b c\"\r\n")
		if got := r.Read(); got != "+OK\r\n" {
			t.Fatalf("SET: %q", got)
		}
		r.WriteString("GET a\r\n")
		if got := r.Read(); got != "$3\r\nb c\r\n" {
			t.Fatalf("GET: %q", got)
		}
	})
	t.Run("unbalanced_quotes", func(t *testing.T) {
		in := "PING\r\n\"unbalanced\r\n"
		want := closeExchange(t, h.Redis.Addr, in)
		got := closeExchange(t, h.Addr, in)
		if got != want {
			t.Errorf("proxy %q, direct %q", got, want)
		}
		if want != "+PONG\r\n-ERR Protocol error: unbalanced quotes in request\r\n" {
			t.Logf("note: Redis answered %q", want)
		}
	})
}

// inlineExchange sends input then a PING marker and returns all replies
// before the marker's.
func inlineExchange(t *testing.T, addr, input string) string {
	r := proxytest.Dial(t, addr)
	defer r.Close()
	r.WriteString(input)
	r.Send("ECHO", "--marker--")
	var out strings.Builder
	for {
		v := r.Read()
		if v == "$10\r\n--marker--\r\n" {
			return out.String()
		}
		out.WriteString(v)
	}
}

// closeExchange sends input and returns everything until the peer closes.
func closeExchange(t *testing.T, addr, input string) string {
	r := proxytest.Dial(t, addr)
	defer r.Close()
	r.WriteString(input)
	out, err := r.ReadUntilEOF()
	if err != nil {
		t.Errorf("%s: connection not closed after %q: %v (got %q)", addr, input, err, out)
	}
	return out
}
