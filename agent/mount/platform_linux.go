//go:build linux

package mount

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/moby/sys/mountinfo"
	_ "github.com/rclone/rclone/cmd/mount" // FUSE through bazil.org/fuse: pure Go
	"github.com/rclone/rclone/cmd/mountlib"
)

// fusermount is the setuid helper bazil.org/fuse mounts and unmounts with
// (Debian package fuse3).
const fusermount = "fusermount3"

func mountFn() (mountlib.MountFn, error) {
	if _, fn := mountlib.ResolveMountMethod("mount"); fn != nil {
		return fn, nil
	}
	return nil, ErrNotSupported
}

// checkPlatform says what to install when FUSE is missing.
func checkPlatform() error {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("FUSE is not available (/dev/fuse: %w); load the fuse module or run where FUSE is allowed", err)
	}
	if _, err := exec.LookPath(fusermount); err != nil {
		return fmt.Errorf("%s not found: install FUSE 3 (Debian/Ubuntu: apt install fuse3; Fedora: dnf install fuse3): %w", fusermount, err)
	}
	return nil
}

// isMounted reports whether the kernel lists an rclone FUSE mount at
// mountPoint, reading /proc/self/mountinfo (never the mount point itself,
// which may hang or fail when its server is gone).
func isMounted(mountPoint string) (bool, error) {
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(mountPoint))
	if err != nil {
		return false, fmt.Errorf("read mount table: %w", err)
	}
	for _, info := range infos {
		if strings.Contains(info.FSType, "rclone") {
			return true, nil
		}
	}
	return false, nil
}

// lazyUnmount detaches mountPoint now; the kernel drops it once nothing
// uses it any more. fusermount3 works for the user who mounted it; the
// umount2 system call is the fallback when running as root.
func lazyUnmount(ctx context.Context, mountPoint string) error {
	out, err := exec.CommandContext(ctx, fusermount, "-u", "-z", mountPoint).CombinedOutput()
	if err == nil {
		return nil
	}
	ferr := fmt.Errorf("%s -uz: %w: %s", fusermount, err, strings.TrimSpace(string(out)))
	if serr := syscall.Unmount(mountPoint, syscall.MNT_DETACH); serr != nil {
		return errors.Join(ferr, fmt.Errorf("umount2(MNT_DETACH): %w", serr))
	}
	return nil
}
