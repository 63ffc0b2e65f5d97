package proxy

import "syscall"

// syscallEMFILE is what Accept returns when the process is out of file
// descriptors; the accept loop backs off instead of spinning.
var syscallEMFILE = syscall.EMFILE
