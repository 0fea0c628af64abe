//go:build unix

package limit

import "syscall"

// openFilesLimit is the process's soft limit of open files (Go raises it
// to the hard limit at start), or 0 if unknown.
func openFilesLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Cur
}
