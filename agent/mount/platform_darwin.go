//go:build darwin

package mount

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/moby/sys/mountinfo"
	"github.com/rclone/rclone/cmd/mountlib"
	_ "github.com/rclone/rclone/cmd/nfsmount" // an NFS server on loopback, mounted with mount_nfs: no macFUSE needed
)

func mountFn() (mountlib.MountFn, error) {
	if _, fn := mountlib.ResolveMountMethod("nfsmount"); fn != nil {
		return fn, nil
	}
	return nil, ErrNotSupported
}

// checkPlatform: mount_nfs ships with macOS.
func checkPlatform() error { return nil }

// isMounted reports whether an rclone NFS mount (served from localhost) is
// at mountPoint, reading the kernel's mount list.
func isMounted(mountPoint string) (bool, error) {
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(mountPoint))
	if err != nil {
		return false, fmt.Errorf("read mount table: %w", err)
	}
	for _, info := range infos {
		if strings.HasPrefix(info.FSType, "nfs") && strings.HasPrefix(info.Source, "localhost:") {
			return true, nil
		}
	}
	return false, nil
}

// lazyUnmount forces the NFS mount away; its server is gone or stuck.
func lazyUnmount(ctx context.Context, mountPoint string) error {
	out, err := exec.CommandContext(ctx, "umount", "-f", mountPoint).CombinedOutput()
	if err == nil {
		return nil
	}
	uerr := fmt.Errorf("umount -f: %w: %s", err, strings.TrimSpace(string(out)))
	out, err = exec.CommandContext(ctx, "diskutil", "unmount", "force", mountPoint).CombinedOutput()
	if err != nil {
		return errors.Join(uerr, fmt.Errorf("diskutil unmount force: %w: %s", err, strings.TrimSpace(string(out))))
	}
	return nil
}
