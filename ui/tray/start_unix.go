//go:build !windows

package tray

import "syscall"

// detached runs the daemon in its own session: no terminal, and no signal
// sent to the tray's process group reaches it.
func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }
