package contention

import (
	"math/rand/v2"
	"time"

	"go.uber.org/zap"
)

// allowEvent applies the abort-event sampling and rate limit.
func (t *Tracker) allowEvent() bool {
	ac := &t.cfg
	if !ac.AbortEvents {
		return false
	}
	if ac.AbortSampleRate < 1 && rand.Float64() >= ac.AbortSampleRate {
		return false
	}
	t.limMu.Lock()
	defer t.limMu.Unlock()
	now := t.now()
	if !t.limLast.IsZero() {
		t.tokens += now.Sub(t.limLast).Seconds() * ac.AbortRateLimit
		if t.tokens > ac.AbortRateLimit {
			t.tokens = ac.AbortRateLimit
		}
	}
	t.limLast = now
	if t.tokens < 1 {
		t.dropped.Add(1)
		return false
	}
	t.tokens--
	return true
}

// emit queues an event for the background writer; a full queue drops it
// rather than block the session.
func (t *Tracker) emit(ev abortEvent) {
	select {
	case t.aborts <- ev:
	default:
		t.dropped.Add(1)
	}
}

// abortEvent is one sampled abort or refused write.
type abortEvent struct {
	msg      string
	at       time.Time
	command  string // for stale: the command name
	keys     []string
	queued   []string
	client   string
	addr     string
	db       int
	user     string
	watchDur time.Duration
	timed    bool
	attempt  int64  // 1 = first try, 2 = first retry, ...
	node     string // the Redis Cluster node the command ran on; "" for one Redis

	// The write it is attributed to (attribution on): blocker is its
	// writer's label or OutsideLabel; by the write, when through this
	// proxy; byBefore how long before the EXEC or the refused command
	// the write was sent.
	blocker  string
	by       *writeRec
	byKey    string
	byBefore time.Duration
}

func (e *abortEvent) write(log *zap.Logger) {
	fields := []zap.Field{
		zap.String("at", e.at.UTC().Format(time.RFC3339Nano)),
		zap.Strings("keys", e.keys),
		zap.String("client", e.client),
		zap.String("addr", e.addr),
		zap.Int("db", e.db),
		zap.String("user", e.user),
	}
	if e.node != "" {
		fields = append(fields, zap.String("node", e.node))
	}
	if e.command != "" {
		fields = append(fields, zap.String("command", e.command))
	}
	if e.msg == MsgAbort {
		fields = append(fields, zap.Strings("queued", e.queued), zap.Int64("attempt", e.attempt))
	}
	if e.timed {
		fields = append(fields, zap.Float64("watch_to_exec_ms", float64(e.watchDur.Microseconds())/1000))
	}
	if e.blocker != "" {
		fields = append(fields, zap.String("blocker", e.blocker))
	}
	if b := e.by; b != nil {
		fields = append(fields,
			zap.String("blocker_addr", b.by.addr),
			zap.String("blocker_user", b.by.user),
			zap.Int("blocker_db", b.by.db),
			zap.String("blocker_command", b.command),
			zap.String("blocker_key", e.byKey),
			zap.String("blocker_at", time.Unix(0, b.sent).UTC().Format(time.RFC3339Nano)),
			zap.Float64("blocker_before_ms", float64(e.byBefore.Microseconds())/1000),
		)
	}
	log.Info(e.msg, fields...)
}
