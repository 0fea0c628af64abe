//go:build !unix

package syncer

import "os"

// processAlive reports whether a process with this PID exists. Where
// that cannot be told, it says yes and bisync's --max-lock expiry frees
// the lock.
func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	_ = p.Release()
	return true
}
