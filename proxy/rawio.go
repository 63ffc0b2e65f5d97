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

// writeNoWait writes to a non-blocking socket what it takes now, never
// waiting for it to take more.
func writeNoWait(raw syscall.RawConn, b []byte) (int, error) {
	var n int
	var werr error
	err := raw.Write(func(fd uintptr) bool {
		for {
			m, e := rawWrite(int(fd), b)
			if e == syscall.EINTR {
				continue
			}
			if m > 0 {
				n = m
			}
			if e != 0 && e != syscall.EAGAIN {
				werr = os.NewSyscallError("write", e)
			}
			return true
		}
	})
	if err == nil {
		err = werr
	}
	return n, err
}
