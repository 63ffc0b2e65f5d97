// Package slowread is the client side of the slow-reader workload: clients
// that ask for large replies (a pipeline of GETs of one big value) and then
// read them fast, slowly, or not at all for a while. The harness watches
// the proxy's memory meanwhile; what a client that does not keep up costs
// the proxy is bounded by client-output-limit, and this is how that bound
// is shown.
package slowread

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// Mode is how a client reads its replies.
type Mode string

const (
	// Fast reads as fast as it can.
	Fast Mode = "fast"
	// Slow reads SlowChunk bytes, then pauses SlowPause, and so on: it
	// makes progress, but far slower than Redis sends.
	Slow Mode = "slow"
	// Stalled reads nothing until Config.Stalled returns, then drains what
	// it can: the backlog a proxy builds for it meanwhile is what
	// client-output-limit bounds.
	Stalled Mode = "stalled"
)

// Config is one run: Clients connections, each sending GETs pipelined
// GETs of Key (whose value is ValueSize bytes) in one write.
type Config struct {
	Addr      string
	Key       string
	ValueSize int
	Clients   int
	GETs      int
	Mode      Mode

	SlowChunk int           // Slow: bytes per read (default 256 KiB)
	SlowPause time.Duration // Slow: pause after each read (default 10 ms)
	// Stalled: called once every client has sent its GETs; the clients
	// read nothing until it returns.
	Stalled func(ctx context.Context)
	// Timeout bounds the whole run (default 2 minutes): a proxy that
	// stops sending must not hang the benchmark.
	Timeout time.Duration
}

// Result is what the clients saw.
type Result struct {
	Want     int64 // reply bytes each client would read if served in full
	Read     int64 // reply bytes read, all clients
	Complete int   // clients that read every reply
	Cut      int   // clients whose connection ended before that (a reset for exceeding the limit)
	Elapsed  time.Duration
}

// ReplySize is the size of one GET reply of a value of n bytes (RESP2
// bulk string).
func ReplySize(n int) int64 {
	return int64(len("$"+strconv.Itoa(n)+"\r\n") + n + 2)
}

// Run runs the clients to the end: every reply read, or the connection
// ended by the server. An error is a failure to connect or send, or the
// timeout; a cut connection is counted, not an error.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.SlowChunk <= 0 {
		cfg.SlowChunk = 256 << 10
	}
	if cfg.SlowPause <= 0 {
		cfg.SlowPause = 10 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	res := Result{Want: int64(cfg.GETs) * ReplySize(cfg.ValueSize)}
	cmd := []byte(fmt.Sprintf("*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(cfg.Key), cfg.Key))
	batch := make([]byte, 0, len(cmd)*cfg.GETs)
	for i := 0; i < cfg.GETs; i++ {
		batch = append(batch, cmd...)
	}

	var d net.Dialer
	conns := make([]net.Conn, 0, cfg.Clients)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < cfg.Clients; i++ {
		c, err := d.DialContext(ctx, "tcp", cfg.Addr)
		if err != nil {
			return res, fmt.Errorf("dial %s: %w", cfg.Addr, err)
		}
		conns = append(conns, c)
	}
	// Closing the connections unblocks every read when the run is over
	// its time.
	stop := context.AfterFunc(ctx, func() {
		for _, c := range conns {
			c.SetDeadline(time.Now())
		}
	})
	defer stop()

	start := time.Now()
	for _, c := range conns {
		if _, err := c.Write(batch); err != nil {
			return res, fmt.Errorf("send GETs: %w", err)
		}
	}
	if cfg.Mode == Stalled && cfg.Stalled != nil {
		cfg.Stalled(ctx)
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for _, c := range conns {
		wg.Add(1)
		go func(c net.Conn) {
			defer wg.Done()
			n, err := drain(c, res.Want, cfg)
			mu.Lock()
			defer mu.Unlock()
			res.Read += n
			switch {
			case n == res.Want:
				res.Complete++
			case err != nil && ctx.Err() == nil:
				res.Cut++
			}
		}(c)
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("slow readers did not finish in %v (%d of %d complete): %w", cfg.Timeout, res.Complete, cfg.Clients, err)
	}
	return res, nil
}

// drain reads up to want bytes from c the way cfg.Mode says; it returns
// what it read and the error that ended it early.
func drain(c net.Conn, want int64, cfg Config) (int64, error) {
	size := 64 << 10
	if cfg.Mode == Slow {
		size = cfg.SlowChunk
	}
	buf := make([]byte, size)
	var got int64
	for got < want {
		n, err := io.ReadAtLeast(c, buf[:min(int64(len(buf)), want-got)], 1)
		got += int64(n)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return got, err
		}
		if cfg.Mode == Slow {
			time.Sleep(cfg.SlowPause)
		}
	}
	return got, nil
}
