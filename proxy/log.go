package proxy

import (
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// sessionLog adds the session's identity to what it logs. Unlike
// zap.Logger.With, it costs nothing per session until something is
// actually written, which matters with thousands of idle connections.
type sessionLog struct {
	base *zap.Logger
	id   uint64
	addr string
}

func (l *sessionLog) write(level zapcore.Level, msg string, fields []zap.Field) {
	if ce := l.base.Check(level, msg); ce != nil {
		ce.Write(append(fields, zap.Uint64("session", l.id), zap.String("client", l.addr))...)
	}
}

func (l *sessionLog) Debug(msg string, fields ...zap.Field) { l.write(zap.DebugLevel, msg, fields) }
func (l *sessionLog) Warn(msg string, fields ...zap.Field)  { l.write(zap.WarnLevel, msg, fields) }
