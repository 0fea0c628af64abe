package pgtest

import "syscall"

// bindToParent: a test binary that dies does not leave postgres behind.
func bindToParent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGQUIT }
