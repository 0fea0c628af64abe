//go:build !linux

package cli

import (
	"errors"
	"fmt"
)

// daemonPID is not needed here: the service manager (launchd, the Windows
// service manager) stops the daemon it started.
func daemonPID(string) (int, error) {
	return 0, fmt.Errorf("daemon pid: %w", errors.ErrUnsupported)
}
