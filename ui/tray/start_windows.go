package tray

import (
	"syscall"

	"golang.org/x/sys/windows"
)

// detached runs the daemon with no console, in its own process group.
func detached() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		CreationFlags: windows.CREATE_NEW_PROCESS_GROUP | windows.DETACHED_PROCESS,
		HideWindow:    true,
	}
}
