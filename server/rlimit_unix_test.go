//go:build unix

package server

import (
	"syscall"
	"testing"
)

// raiseFileLimit raises the test's soft limit of open files to its hard
// limit and returns it.
func raiseFileLimit(t testing.TB) int {
	t.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			t.Logf("setrlimit: %v", err)
			_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
		}
	}
	return int(min(rl.Cur, 1<<20))
}
