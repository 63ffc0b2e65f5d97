package proxy

import (
	"bytes"
	"time"
)

// learnAuth keeps the server's knowledge of whether Redis requires
// authentication current from what unauthenticated sessions are told:
// NOAUTH says it does; any other answer to a command that needs
// authentication says it does not. first is the reply's first chunk.
func (r *replySide) learnAuth(first []byte) {
	if len(first) == 0 || r.kind == '>' {
		return
	}
	srv := r.s.srv
	if first[0] == '-' {
		if bytes.HasPrefix(first, []byte("-NOAUTH")) && !srv.authRequired.Load() {
			srv.authRequired.Store(true)
		}
		return
	}
	if !srv.authRequired.Load() {
		return
	}
	if e := r.s.q.head(); e != nil && e.cmd != nil {
		switch e.cmd.kind {
		case kindAuth, kindHello, kindReset:
			return // these run without authentication
		}
	}
	srv.authRequired.Store(false)
}

// observeWrite tells the WriteWatchers of a write to keys they watch.
func (r *replySide) observeWrite(e *entry, head []byte) {
	if len(r.wobs) == 0 || len(head) == 0 || head[0] == '-' {
		return // an error wrote nothing
	}
	if r.event == nil {
		r.event = new(Event)
	}
	ev := r.event
	*ev = Event{Name: e.obs.writeName, Reply: head, Kind: r.kind, Sent: e.obs.sent, Done: time.Now(), Info: &r.info, Write: true, Keys: e.obs.writes}
	if r.node != 0 {
		ev.Node = r.s.srv.cluster.addr(r.node)
	}
	for _, o := range r.wobs {
		o.Observe(ev)
	}
}

// observe hands an observed reply to every observer.
func (r *replySide) observe(e *entry, head []byte) {
	if r.event == nil {
		r.event = new(Event) // most sessions never need one
	}
	ev := r.event
	*ev = Event{
		Name:   e.cmd.name,
		Args:   e.obs.args,
		Reply:  head,
		Kind:   r.kind,
		Sent:   e.obs.sent,
		Done:   time.Now(),
		Queued: e.obs.queued,
		Info:   &r.info,
	}
	if r.node != 0 {
		ev.Node = r.s.srv.cluster.addr(r.node)
	}
	if o, ok := e.rw.(Outcomer); ok && len(head) > 0 {
		ev.Outcome = o.Outcome(head)
	}
	for _, o := range r.obs {
		o.Observe(ev)
	}
}
