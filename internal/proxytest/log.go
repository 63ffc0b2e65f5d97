package proxytest

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// LogSink receives a test logger's lines: it writes them to t.Log and keeps
// them for assertions. It stays safe after the test ends, because a session
// goroutine that logs late must not panic the test binary.
type LogSink struct {
	mu    sync.Mutex
	tb    testing.TB
	done  bool
	late  int
	lines []string
}

// maxKeptLines bounds what a sink keeps; a test asserting on logs looks
// at the first lines about a failure, not at a flood.
const maxKeptLines = 20000

// Write implements zapcore.WriteSyncer.
func (s *LogSink) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		s.late++
		return len(p), nil
	}
	if len(s.lines) < maxKeptLines {
		s.lines = append(s.lines, line)
	}
	s.tb.Log(line)
	return len(p), nil
}

// Sync implements zapcore.WriteSyncer.
func (s *LogSink) Sync() error { return nil }

// Text returns the kept lines, one per line.
func (s *LogSink) Text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

// NewLogger returns a console-format zap logger at level that writes to
// tb.Log and keeps its lines in the returned sink.
func NewLogger(tb testing.TB, level zapcore.Level) (*zap.Logger, *LogSink) {
	sink := &LogSink{tb: tb}
	// Registered first, so it runs last (cleanups are LIFO).
	tb.Cleanup(func() {
		sink.mu.Lock()
		sink.done = true
		sink.mu.Unlock()
	})
	enc := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	core := zapcore.NewCore(enc, zapcore.AddSync(sink), level)
	return zap.New(core), sink
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers, usable as a
// zapcore.WriteSyncer for a logger whose exact output a test parses.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// Sync implements zapcore.WriteSyncer.
func (s *SyncBuffer) Sync() error { return nil }

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
