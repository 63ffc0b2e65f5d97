package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/exproxy/exproxy/config"
)

// newLogger builds the process logger from the log.* settings. JSON lines
// use zap's production encoding, which is what `exproxy contention` reads.
// Nothing is sampled: the contention events must all arrive.
func newLogger(cfg *config.Config, stdout, stderr io.Writer) (*zap.Logger, func(), error) {
	level, err := zapcore.ParseLevel(cfg.Log.Level)
	if err != nil {
		return nil, nil, &config.Error{Key: "log.level", Origin: cfg.Origin("log.level"), Msg: err.Error()}
	}
	var (
		sink  zapcore.WriteSyncer
		close = func() {}
	)
	switch cfg.Log.File {
	case "stderr":
		sink = writeSyncer(stderr)
	case "stdout":
		sink = writeSyncer(stdout)
	default:
		f, err := os.OpenFile(cfg.Log.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, nil, &config.Error{Key: "log.file", Origin: cfg.Origin("log.file"), Msg: fmt.Errorf("cannot open: %w", err).Error()}
		}
		sink = f
		close = func() { _ = f.Sync(); _ = f.Close() }
	}
	var enc zapcore.Encoder
	if cfg.Log.Format == "console" {
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	}
	log := zap.New(zapcore.NewCore(enc, zapcore.Lock(sink), level), zap.ErrorOutput(zapcore.Lock(writeSyncer(stderr))))
	return log, func() { _ = log.Sync(); close() }, nil
}

// writeSyncer adapts a writer; os.File already syncs, and syncing a
// terminal or pipe fails harmlessly, so other writers get a no-op Sync.
func writeSyncer(w io.Writer) zapcore.WriteSyncer {
	if ws, ok := w.(zapcore.WriteSyncer); ok {
		return ws
	}
	return zapcore.AddSync(w)
}

// goRedisLog carries go-redis's own messages (from the clients extensions
// use, e.g. exstring's loader: "failed to dial after 5 attempts ...") into
// the process log, so they are JSON lines like the rest instead of stray
// text on stderr that log shippers cannot parse. go-redis reads its logger
// from a global without synchronisation, so it is installed once, in main
// before anything runs, and points at whichever logger serve built. Its
// messages come at debug level: each one's cause also reaches the caller,
// which logs it in its own words (exstring: "loading the Lua library
// failed; retrying").
type goRedisLog struct{ log atomic.Pointer[zap.Logger] }

var goRedisLogger goRedisLog

func (l *goRedisLog) Printf(_ context.Context, format string, v ...any) {
	if log := l.log.Load(); log != nil {
		log.Debug(fmt.Sprintf(format, v...))
		return
	}
	fmt.Fprintf(os.Stderr, "redis: "+format+"\n", v...)
}
