//go:build unix && !linux

package pgtest

import "syscall"

// bindToParent does nothing here: only Linux has a parent-death signal,
// and Stop (from TestMain) is what ends postgres.
func bindToParent(*syscall.SysProcAttr) {}
