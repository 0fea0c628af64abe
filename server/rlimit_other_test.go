//go:build !unix

package server

import "testing"

// raiseFileLimit is a guess where there is no RLIMIT_NOFILE.
func raiseFileLimit(testing.TB) int { return 2048 }
