package agent

import (
	"errors"
	"fmt"
	"testing"

	"github.com/basicmachines-co/bm-agent/agent/mount"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// TestMountErrorsSayItOnce: the mount manager's errors reach the client
// with their own words (no "unmount: not mounted: unmount: not mounted")
// and with ipc's sentinel, so the client can tell them apart.
func TestMountErrorsSayItOnce(t *testing.T) {
	tests := []struct {
		err      error // as the mount manager returns it
		sentinel error
	}{
		{fmt.Errorf("unmount: %w", mount.ErrNotMounted), ipc.ErrNotMounted},
		{fmt.Errorf("mount: %w at %s", mount.ErrAlreadyMounted, "/m"), ipc.ErrAlreadyMounted},
		{fmt.Errorf("mount: %w: /n and /n (mount elsewhere, or stop syncing that folder)", mount.ErrOverlap), ipc.ErrMountOverlap},
		{fmt.Errorf("mount: %w", mount.ErrNotSupported), ipc.ErrMountUnsupported},
		{errors.New("mount: create cache dir: permission denied"), nil},
	}
	for _, tt := range tests {
		got := mountError(tt.err)
		if got.Error() != tt.err.Error() {
			t.Errorf("mountError(%q) says %q", tt.err, got)
		}
		if tt.sentinel != nil && (!errors.Is(got, tt.sentinel) || !errors.Is(got, tt.err)) {
			t.Errorf("mountError(%q) is not %v and the manager's error", tt.err, tt.sentinel)
		}
	}
}
