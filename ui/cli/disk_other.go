//go:build !(linux || darwin || freebsd)

package cli

import "errors"

// freeBytes is not implemented here.
func freeBytes(string) (uint64, error) { return 0, errors.ErrUnsupported }
