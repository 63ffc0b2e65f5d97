package proxy

import (
	"bytes"
	"context"

	"go.uber.org/zap"

	"github.com/exproxy/exproxy/proxy/resp"
)

// Inside MULTI the replies of rewritten commands arrive as elements of
// EXEC's reply. The reply side follows MULTI ... EXEC as Redis runs it,
// so that each element can be given to the ReplyHandler of the command
// it answers, as its reply would have been outside MULTI.

type queuedRewrite struct {
	idx int // position in EXEC's reply
	rw  ReplyHandler
}

// trackMulti follows MULTI ... EXEC from the replies: in MULTI, every
// command answered with a status reply (+QUEUED) takes the next element
// of EXEC's reply; errors are not queued.
func (r *replySide) trackMulti(e *entry) {
	if e.cmd != nil {
		switch e.cmd.kind {
		case kindMulti:
			if !r.inMulti {
				r.inMulti, r.queuedN, r.queuedRw = true, 0, r.queuedRw[:0]
			}
			return
		case kindExec, kindDiscard, kindReset:
			r.inMulti, r.queuedN, r.queuedRw = false, 0, r.queuedRw[:0]
			return
		}
	}
	if !r.inMulti || r.kind != '+' {
		return
	}
	if e.rw != nil {
		r.queuedRw = append(r.queuedRw, queuedRewrite{idx: r.queuedN, rw: e.rw})
	}
	r.queuedN++
}

// fixExec gives each element of an EXEC reply that answers a rewritten
// command to that command's ReplyHandler (e.g. exstring restores integers
// beyond 2^53 that Lua could only return as strings). Retry cannot apply
// inside EXEC: the element keeps Redis's error, and the library is
// reloaded before the reply goes out, so the client's next attempt at the
// transaction succeeds.
func (r *replySide) fixExec(reply []byte) []byte {
	nl := bytes.IndexByte(reply, '\n')
	if nl < 0 {
		return reply
	}
	out := append([]byte(nil), reply[:nl+1]...)
	rest := reply[nl+1:]
	f := resp.Framer{Limits: replyLimits(r.s.srv.opts.Limits)}
	q := r.queuedRw
	var reload ReplyHandler
	for i := 0; len(rest) > 0; i++ {
		f.Reset()
		n, done, err := f.Next(rest)
		if err != nil || !done {
			return reply
		}
		el := rest[:n]
		rest = rest[n:]
		if len(q) > 0 && q[0].idx == i {
			switch act, repl := q[0].rw.Check(el, r.info.Proto); act {
			case Replace:
				el = repl
			case Retry:
				reload = q[0].rw
			}
			q = q[1:]
		}
		out = append(out, el...)
	}
	if reload != nil {
		ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
		load := reload.Reload
		if nr, ok := reload.(NodeReloader); ok && r.node != 0 {
			// In front of a cluster: on the node EXEC ran on.
			addr := r.s.srv.cluster.addr(r.node)
			load = func(ctx context.Context) error { return nr.ReloadNode(ctx, addr) }
		}
		if err := load(ctx); err != nil {
			r.s.log.Warn("reload after EXEC failed", zap.Error(err))
		}
		cancel()
	}
	return out
}
