package report

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// maxLine bounds one log line. Contention events are a few kilobytes at
// most; a longer line (a binary file in a log directory, a runaway stack
// trace) is skipped rather than held whole.
const maxLine = 1 << 20

// inputs reads the files, directories and stdin a report covers, each
// file once.
type inputs struct {
	agg   *Aggregator
	stdin io.Reader
	read  []os.FileInfo // files read so far, compared with os.SameFile
}

// add reads one command-line argument: "-" (stdin), a file, or a
// directory walked recursively. It returns what could not be read; the
// rest is read anyway.
func (in *inputs) add(name string) []error {
	if name == "-" {
		if err := in.agg.ReadSource(bufio.NewReaderSize(in.stdin, 64<<10), "stdin"); err != nil {
			return []error{fmt.Errorf("reading stdin: %w", err)}
		}
		return nil
	}
	fi, err := os.Stat(name)
	if err != nil {
		return []error{fmt.Errorf("reading log: %w", err)}
	}
	if !fi.IsDir() {
		if err := in.file(name, fi, sourceName(filepath.Base(name))); err != nil {
			return []error{err}
		}
		return nil
	}
	var errs []error
	walkErr := filepath.WalkDir(name, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			errs = append(errs, fmt.Errorf("reading log directory: %w", err))
			if d != nil && d.IsDir() && path != name {
				return fs.SkipDir
			}
			return nil
		}
		if path != name && strings.HasPrefix(d.Name(), ".") {
			// Editors' and tools' hidden files are not logs.
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		// Stat follows a symlink to a file (Kubernetes' /var/log/containers
		// holds only symlinks); a symlink to a directory is not followed,
		// so no loop is possible.
		fi, err := os.Stat(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("reading log: %w", err))
			return nil
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(name, path)
		if err != nil {
			rel = path
		}
		if err := in.file(path, fi, sourceName(rel)); err != nil {
			errs = append(errs, err)
		}
		return nil
	})
	if walkErr != nil {
		errs = append(errs, fmt.Errorf("reading log directory: %w", walkErr))
	}
	return errs
}

// file reads one file, plain or gzipped (told by its content, so rotated
// files need no particular name), unless it was read already under another
// name (a symlink, or given twice).
func (in *inputs) file(path string, fi os.FileInfo, source string) error {
	for _, seen := range in.read {
		if os.SameFile(seen, fi) {
			return nil
		}
	}
	in.read = append(in.read, fi)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("reading log: %w", err)
	}
	defer f.Close()
	if err := in.agg.ReadSource(bufio.NewReaderSize(f, 64<<10), source); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	return nil
}

// sourceName names the sidecar whose lines name none themselves: the path
// (relative to the directory given) without the suffixes rotation adds,
// so exproxy.log, exproxy.log.1 and exproxy.log.2.gz are one sidecar.
func sourceName(path string) string {
	s := strings.TrimSuffix(filepath.ToSlash(path), ".gz")
	// A rotation number or date: .1, .20261122, .20261122-083000.
	if i := strings.LastIndexByte(s, '.'); i > 0 && i < len(s)-1 && strings.Trim(s[i+1:], "0123456789-") == "" {
		s = s[:i]
	}
	return s
}

// ReadSource consumes the log lines of one source (a file or stdin); lines
// that are not contention window, key, pattern or client events (other log
// output, per-abort events, garbage, over-long lines) are skipped. source
// names the sidecar when the lines name none. Gzipped input is detected.
func (a *Aggregator) ReadSource(r *bufio.Reader, source string) error {
	if magic, _ := r.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return err
		}
		defer zr.Close()
		r = bufio.NewReaderSize(zr, 64<<10)
	}
	var long []byte
	skipping := false
	for {
		chunk, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if !skipping && len(long)+len(chunk) <= maxLine {
				long = append(long, chunk...)
			} else {
				skipping, long = true, long[:0]
			}
			continue
		}
		switch {
		case skipping:
			skipping = false
			a.skipped++
		case len(long) > 0:
			long = append(long, chunk...)
			a.line(long, source)
			long = long[:0]
		case len(chunk) > 0:
			a.line(chunk, source)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Read consumes log lines from one unnamed source (see ReadSource).
func (a *Aggregator) Read(r *bufio.Reader) error { return a.ReadSource(r, "stdin") }
