//go:build !linux

package main

import "errors"

var errNoTmpfs = errors.New("tmpfs mounts are tested on Linux only")

func mountTmpfs(dir, size string) error { return errNoTmpfs }

func unmount(dir string) error { return errNoTmpfs }
