//go:build !linux

package miniotest

import "syscall"

// bindToParent does nothing here: only Linux has a parent-death signal,
// and Stop (from the test's cleanup or TestMain) is what ends minio.
func bindToParent(*syscall.SysProcAttr) {}
