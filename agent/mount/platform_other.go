//go:build !linux && !darwin

package mount

import (
	"context"

	"github.com/rclone/rclone/cmd/mountlib"
)

// Windows (WinFsp through cgofuse) and the BSDs are not supported yet.

func mountFn() (mountlib.MountFn, error) { return nil, ErrNotSupported }

func checkPlatform() error { return ErrNotSupported }

func isMounted(string) (bool, error) { return false, nil }

func lazyUnmount(context.Context, string) error { return ErrNotSupported }
