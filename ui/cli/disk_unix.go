//go:build linux || darwin || freebsd

package cli

import (
	"fmt"
	"syscall"
)

// freeBytes returns the bytes available to this user on path's filesystem.
func freeBytes(path string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
