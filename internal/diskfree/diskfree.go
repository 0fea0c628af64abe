// Package diskfree tells how much space a file system has left for this
// user: statfs where there is one (Linux, macOS, FreeBSD), the volume's
// free space for the caller on Windows.
package diskfree

import "fmt"

// Available returns the bytes this user may still write on the file system
// (the volume, on Windows) that holds path. path must exist. Where the
// platform has no way to tell, the error is errors.ErrUnsupported.
func Available(path string) (uint64, error) {
	n, err := available(path)
	if err != nil {
		return 0, fmt.Errorf("free disk of %s: %w", path, err)
	}
	return n, nil
}
