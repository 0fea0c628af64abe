package miniotest

import "syscall"

// bindToParent: a test binary that dies does not leave minio behind.
func bindToParent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
