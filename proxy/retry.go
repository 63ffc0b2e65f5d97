package proxy

import (
	"context"

	"go.uber.org/zap"

	"github.com/exproxy/exproxy/proxy/resp"
)

// Resends after a lost Lua library. When a rewritten command fails
// because the library vanished (FUNCTION FLUSH, a restart, a failover),
// its ReplyHandler asks for a Retry: the command is set aside, the read
// loop is paused, and once every command sent before the pause is
// answered (they ran against the same missing library, so the rewritten
// ones among them fail too), the library is reloaded and all failed
// commands are resent in their original order, before anything the
// client sent later. Replies behind them wait in slots, so the client
// sees every reply in the order it sent the commands.

// retryLater sets e aside to be sent again.
func (r *replySide) retryLater(e *entry) bool {
	// The slot keeps this reply's place in client order: the one decide
	// made if replies are already held back, else a new one.
	sl := r.cur
	if sl == nil {
		sl = &slot{}
		r.reorder = append(r.reorder, sl)
	}
	r.cur = nil
	ne := *e
	ne.slot = sl
	ne.replies = 1
	ne.attempts++
	ne.resolved = true
	r.failed = append(r.failed, ne)
	if r.s.cl != nil {
		r.failedNodes = append(r.failedNodes, r.node)
	}
	if !r.retrying {
		r.retrying = true
		r.fence = r.s.pause()
	}
	r.s.q.pop()
	return r.maybeResend()
}

// maybeResend resends the failed commands once nothing sent before the
// pause is still unanswered. false means they could not be sent.
func (r *replySide) maybeResend() bool {
	if !r.retrying {
		return true
	}
	if h := r.s.q.head(); h != nil && h.seq < r.fence {
		return true
	}
	s := r.s
	failed := r.failed
	r.failed, r.retrying = nil, false
	if s.cl != nil {
		nodes := r.failedNodes
		r.failedNodes = nil
		return r.resendCluster(failed, nodes)
	}
	ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
	err := failed[0].rw.Reload(ctx)
	cancel()
	if err != nil {
		s.log.Warn("reload for resend failed", zap.Error(err))
		msg := resp.AppendError(nil, "ERR exproxy: "+err.Error())
		for _, f := range failed {
			f.slot.data, f.slot.ready = msg, true
		}
		r.releaseSlots()
		s.resume()
		return true
	}
	var data []byte
	for i := range failed {
		data = s.rewriteAgain(data, failed[i].resend, failed[i].cmd)
	}
	// The connection the read loop uses is the one the failed commands
	// ran on: nothing moves a session while it is paused.
	s.sendMu.Lock()
	c := s.conn
	ok := c != nil && c.send(s, failed, len(failed), data) == nil
	s.paused = false
	s.resumed.Broadcast()
	s.sendMu.Unlock()
	return ok
}

// rewriteAgain appends to dst what to send for raw, a command kept for a
// resend, rewriting it as the rewriter now would.
func (s *session) rewriteAgain(dst, raw []byte, cmd *command) []byte {
	p := resp.CommandParser{Limits: s.parser.Limits}
	_, args, _, err := p.Parse(raw, nil)
	if err != nil || len(args) == 0 || cmd == nil || cmd.rewriter == nil {
		return append(dst, raw...)
	}
	rw, ok := cmd.rewriter.Rewrite(args, len(args), &s.rinfo)
	if !ok || rw.Prefix == nil {
		return append(dst, raw...)
	}
	dst = appendRewrite(dst, rw, len(args))
	return append(dst, raw[resp.NameEnd(raw):]...)
}

// releaseSlots writes the leading ready slots to the client.
func (r *replySide) releaseSlots() {
	i := 0
	for ; i < len(r.reorder) && r.reorder[i].ready; i++ {
		r.out.buf = append(r.out.buf, r.reorder[i].data...)
		r.reorder[i] = nil
	}
	r.reorder = r.reorder[i:]
	if len(r.reorder) == 0 {
		r.reorder = nil
	}
}
