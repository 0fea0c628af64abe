package e2e

import "syscall"

// mountTmpfs mounts a tmpfs of size (like "2m") on dir; it needs root.
func mountTmpfs(dir, size string) error {
	return syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size)
}

// unmount detaches the file system mounted on dir.
func unmount(dir string) error { return syscall.Unmount(dir, syscall.MNT_DETACH) }
