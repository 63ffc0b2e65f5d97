package proxy

import (
	"os"
	"syscall"
	"unsafe"
)

// rawRead and rawWrite are read(2) and write(2) on a non-blocking
// descriptor, made without telling the Go scheduler: they never block,
// so there is no thread to hand the processor to, and skipping
// entersyscall/exitsyscall also keeps sysmon from taking the processor
// away from a thread that the host merely descheduled mid-call (which
// costs wake-ups on a busy core). Only for descriptors in non-blocking
// mode, as every socket Go's net package opens is.
func rawRead(fd int, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

func rawWrite(fd int, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// rawWriter writes to a non-blocking socket what it takes now, never
// waiting for it to take more. Its callback for RawConn.Write is bound
// once: a closure made per call would be an allocation per write, that
// is, per reply. A connection has one writer at a time (its users see to
// that), so one rawWriter serves it.
type rawWriter struct {
	raw syscall.RawConn
	fn  func(fd uintptr) bool
	b   []byte
	n   int
	err error
}

func (w *rawWriter) init(raw syscall.RawConn) {
	w.raw = raw
	w.fn = w.write
}

func (w *rawWriter) write(fd uintptr) bool {
	for {
		m, e := rawWrite(int(fd), w.b)
		if e == syscall.EINTR {
			continue
		}
		if m > 0 {
			w.n = m
		}
		if e != 0 && e != syscall.EAGAIN {
			w.err = os.NewSyscallError("write", e)
		}
		return true
	}
}

func (w *rawWriter) writeNoWait(b []byte) (int, error) {
	w.b, w.n, w.err = b, 0, nil
	err := w.raw.Write(w.fn)
	n, werr := w.n, w.err
	w.b, w.err = nil, nil
	if err == nil {
		err = werr
	}
	return n, err
}
