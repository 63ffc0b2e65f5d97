// Package idle opens many client connections and holds them open without
// traffic: the connection pools of a fleet of application instances, as a
// sidecar sees them.
package idle

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Conns is a set of open, idle connections.
type Conns struct {
	conns []net.Conn
}

// Open dials n connections to addr, parallel at a time. Each one sends a
// PING and waits for +PONG, so that a proxy has surely accepted it and set
// up whatever it keeps per connection (in pinned mode, its upstream connection too), and
// what is measured afterwards is the steady idle state.
func Open(ctx context.Context, addr string, n, parallel int) (*Conns, error) {
	if parallel <= 0 {
		parallel = 64
	}
	c := &Conns{conns: make([]net.Conn, n)}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		failed   int
	)
	next := make(chan int)
	var d net.Dialer
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := bufio.NewReaderSize(nil, 64)
			for i := range next {
				conn, err := dialPing(ctx, &d, addr, r)
				if err != nil {
					mu.Lock()
					failed++
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				c.conns[i] = conn
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		c.Close()
		return nil, fmt.Errorf("open %d idle connections to %s: %d failed, first: %w", n, addr, failed, firstErr)
	}
	return c, nil
}

func dialPing(ctx context.Context, d *net.Dialer, addr string, r *bufio.Reader) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		conn.Close()
		return nil, fmt.Errorf("ping write: %w", err)
	}
	r.Reset(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ping read: %w", err)
	}
	if line != "+PONG\r\n" {
		conn.Close()
		return nil, errors.New("ping answered " + fmt.Sprintf("%q", line))
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// Len is the number of open connections.
func (c *Conns) Len() int { return len(c.conns) }

// Close closes every connection.
func (c *Conns) Close() {
	if c == nil {
		return
	}
	for _, conn := range c.conns {
		if conn != nil {
			conn.Close()
		}
	}
	c.conns = nil
}
