//go:build !linux

package e2e

import "errors"

var errNoTmpfs = errors.New("tmpfs mounts are tested on Linux only")

func mountTmpfs(dir, size string) error { return errNoTmpfs }

func unmount(dir string) error { return errNoTmpfs }
