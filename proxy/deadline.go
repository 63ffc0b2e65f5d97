package proxy

import (
	"net"
	"time"
)

// lazyDeadline is a read or write deadline that is refreshed only when
// less than half of its life is left: a busy connection then pays for a
// clock read per use, not a timer update, and the deadline still catches
// a peer that stops moving within one to one and a half lives.
type lazyDeadline struct {
	at    time.Time
	write bool // a write deadline; else a read deadline
}

// refresh makes sure at least life/2 is left before the deadline on c.
func (d *lazyDeadline) refresh(c net.Conn, life time.Duration) {
	now := time.Now()
	if d.at.Sub(now) >= life/2 {
		return
	}
	d.at = now.Add(life)
	d.set(c)
}

// clear removes the deadline, if one is set.
func (d *lazyDeadline) clear(c net.Conn) {
	if d.at.IsZero() {
		return
	}
	d.at = time.Time{}
	d.set(c)
}

func (d *lazyDeadline) set(c net.Conn) {
	if d.write {
		_ = c.SetWriteDeadline(d.at)
	} else {
		_ = c.SetReadDeadline(d.at)
	}
}
