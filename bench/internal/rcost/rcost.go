// Package rcost measures what Redis itself spends per call of a command,
// with no proxy in between: plain GET/SET, a minimal Lua function, and the
// versioned-string library called directly with FCALL. Two figures per
// command: redis-server's own CPU time over the run (from /proc, so
// reading, parsing and replying count) divided by the calls, and INFO
// commandstats (execution only, wall-clock, and which commands a script
// ran inside, so a reader sees how many redis.call each handler makes).
package rcost

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/exproxy/exproxy/bench/internal/fixture"
)

// Op is one command measured: each client sends it over and over on its
// own key, so handlers that check versions always take the path named.
type Op struct {
	Name string // row label
	// Top is the command's name in commandstats ("get", "fcall"); the
	// other commands counted during the run ran inside it.
	Top string
	// Setup returns the commands that prepare a client's key before the
	// clock starts; the reply of the last one goes to Seed.
	Setup func(key string) [][]string
	// Seed reads the last setup reply into the client's state (EXCAS: the
	// version to send).
	Seed func(c *Client, r Reply) error
	// Cmd is the command to send next.
	Cmd func(c *Client) []string
	// Check validates a reply and updates the client's state.
	Check func(c *Client, r Reply) error
}

// Client is one connection's state.
type Client struct {
	Key string
	Ver int64 // EXCAS: the version the next call expects

	conn net.Conn
	r    *bufio.Reader
	buf  []byte
}

// Reply is a decoded RESP2 reply.
type Reply struct {
	Kind  byte // '+', '-', ':', '$', '*'
	Str   string
	Int   int64
	Nil   bool
	Elems []Reply
}

func (r Reply) String() string {
	switch r.Kind {
	case ':':
		return ":" + strconv.FormatInt(r.Int, 10)
	case '*':
		parts := make([]string, len(r.Elems))
		for i, e := range r.Elems {
			parts[i] = e.String()
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	if r.Nil {
		return "(nil)"
	}
	return string(r.Kind) + strconv.Quote(r.Str)
}

// Config is one measured run.
type Config struct {
	Addr     string
	Password string
	Clients  int
	Duration time.Duration
	RedisPid int    // whose CPU time is read
	Prefix   string // key prefix, unique per op
}

// CmdStat is one commandstats line's change over the run.
type CmdStat struct {
	Calls int64
	Usec  int64
}

// Result is what one run measured.
type Result struct {
	Calls    int64
	Elapsed  time.Duration
	RedisCPU time.Duration
	Stats    map[string]CmdStat // commandstats of the run, by command name
	top      string
}

// CallsPerSec is the rate the clients achieved.
func (r Result) CallsPerSec() float64 { return float64(r.Calls) / r.Elapsed.Seconds() }

// CPUPerCall is redis-server's CPU time per call, µs.
func (r Result) CPUPerCall() float64 {
	return float64(r.RedisCPU.Nanoseconds()) / 1000 / float64(r.Calls)
}

// ExecPerCall is commandstats' usec per call of the top-level command:
// the command's execution, inner commands included, without the network.
func (r Result) ExecPerCall() float64 {
	s := r.Stats[r.top]
	if s.Calls == 0 {
		return 0
	}
	return float64(s.Usec) / float64(s.Calls)
}

// Inner lists the commands run inside each top-level call, per call, most
// frequent first, e.g. "hlen 1.00, hmget 1.00, hset 1.00".
func (r Result) Inner() (perCall float64, list string) {
	top := r.Stats[r.top].Calls
	if top == 0 {
		return 0, ""
	}
	type kv struct {
		name string
		n    int64
	}
	var all []kv
	var sum int64
	for name, s := range r.Stats {
		if name == r.top || s.Calls == 0 {
			continue
		}
		all = append(all, kv{name, s.Calls})
		sum += s.Calls
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].n != all[j].n {
			return all[i].n > all[j].n
		}
		return all[i].name < all[j].name
	})
	parts := make([]string, len(all))
	for i, e := range all {
		parts[i] = fmt.Sprintf("%s %.2f", e.name, float64(e.n)/float64(top))
	}
	return float64(sum) / float64(top), strings.Join(parts, ", ")
}

// Run measures op: Clients connections each send it at pipeline depth 1
// for Duration.
func Run(ctx context.Context, cfg Config, op Op) (Result, error) {
	ctl, err := dial(cfg.Addr, cfg.Password, "")
	if err != nil {
		return Result{}, err
	}
	defer ctl.conn.Close()
	clients := make([]*Client, cfg.Clients)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.conn.Close()
			}
		}
	}()
	for i := range clients {
		c, err := dial(cfg.Addr, cfg.Password, fmt.Sprintf("%s:%d", cfg.Prefix, i))
		if err != nil {
			return Result{}, err
		}
		clients[i] = c
		if _, err := c.Do("DEL", c.Key); err != nil {
			return Result{}, fmt.Errorf("%s setup: %w", op.Name, err)
		}
		if op.Setup != nil {
			var last Reply
			for _, s := range op.Setup(c.Key) {
				if last, err = c.Do(s...); err != nil {
					return Result{}, fmt.Errorf("%s setup %q: %w", op.Name, s, err)
				}
			}
			if op.Seed != nil {
				if err := op.Seed(c, last); err != nil {
					return Result{}, fmt.Errorf("%s setup: %w", op.Name, err)
				}
			}
		}
	}

	if _, err := ctl.Do("CONFIG", "RESETSTAT"); err != nil {
		return Result{}, err
	}
	cpu0, err := fixture.CPUTime(cfg.RedisPid)
	if err != nil {
		return Result{}, err
	}
	var calls atomic.Int64
	errs := make([]error, len(clients))
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := int64(0)
			for runCtx.Err() == nil {
				r, err := c.Do(op.Cmd(c)...)
				if err == nil {
					err = op.Check(c, r)
				}
				if err != nil {
					errs[i] = fmt.Errorf("%s client %d: %w", op.Name, i, err)
					cancel()
					break
				}
				n++
			}
			calls.Add(n)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, err := fixture.CPUTime(cfg.RedisPid)
	if err != nil {
		return Result{}, err
	}
	if err := errors.Join(errs...); err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	info, err := ctl.Do("INFO", "commandstats")
	if err != nil {
		return Result{}, err
	}
	res := Result{Calls: calls.Load(), Elapsed: elapsed, RedisCPU: cpu1 - cpu0, Stats: parseCommandStats(info.Str), top: op.Top}
	if res.Calls == 0 {
		return res, fmt.Errorf("%s: no call completed in %v", op.Name, cfg.Duration)
	}
	for _, c := range clients {
		_, _ = c.Do("DEL", c.Key)
	}
	return res, nil
}

// parseCommandStats reads "cmdstat_<name>:calls=N,usec=U,..." lines; the
// harness's own control commands (CONFIG, INFO) are left out.
func parseCommandStats(info string) map[string]CmdStat {
	out := map[string]CmdStat{}
	for _, line := range strings.Split(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_")
		if !ok {
			continue
		}
		name, fields, ok := strings.Cut(rest, ":")
		if !ok || name == "info" || strings.HasPrefix(name, "config") {
			continue
		}
		var s CmdStat
		for _, f := range strings.Split(fields, ",") {
			k, v, _ := strings.Cut(f, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "calls":
				s.Calls = n
			case "usec":
				s.Usec = n
			}
		}
		out[name] = s
	}
	return out
}

func dial(addr, password, key string) (*Client, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := &Client{Key: key, conn: conn, r: bufio.NewReaderSize(conn, 16<<10)}
	if password != "" {
		if _, err := c.Do("AUTH", password); err != nil {
			conn.Close()
			return nil, fmt.Errorf("AUTH on %s: %w", addr, err)
		}
	}
	return c, nil
}

// Do sends one command and reads its reply; an error reply is an error.
func (c *Client) Do(args ...string) (Reply, error) {
	b := c.buf[:0]
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	c.buf = b
	_ = c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.conn.Write(b); err != nil {
		return Reply{}, err
	}
	r, err := readReply(c.r)
	if err != nil {
		return Reply{}, err
	}
	if r.Kind == '-' {
		return r, fmt.Errorf("%s: %s", args[0], r.Str)
	}
	return r, nil
}

func readReply(br *bufio.Reader) (Reply, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return Reply{}, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return Reply{}, fmt.Errorf("malformed reply line %q", line)
	}
	kind, body := line[0], string(line[1:len(line)-2])
	switch kind {
	case '+', '-':
		return Reply{Kind: kind, Str: body}, nil
	case ':':
		n, err := strconv.ParseInt(body, 10, 64)
		return Reply{Kind: kind, Int: n}, err
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil {
			return Reply{}, err
		}
		if n < 0 {
			return Reply{Kind: kind, Nil: true}, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return Reply{}, err
		}
		return Reply{Kind: kind, Str: string(buf[:n])}, nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil {
			return Reply{}, err
		}
		if n < 0 {
			return Reply{Kind: kind, Nil: true}, nil
		}
		r := Reply{Kind: kind, Elems: make([]Reply, n)}
		for i := range r.Elems {
			if r.Elems[i], err = readReply(br); err != nil {
				return Reply{}, err
			}
		}
		return r, nil
	}
	return Reply{}, fmt.Errorf("unknown reply type %q", line)
}
