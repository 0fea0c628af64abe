//go:build !(linux || darwin || freebsd || windows)

package diskfree

import "errors"

func available(string) (uint64, error) { return 0, errors.ErrUnsupported }
