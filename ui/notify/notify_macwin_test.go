package notify

import (
	"testing"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// The macOS and Windows senders (notify_macwin.go) are compile-checked
// only here (GOOS=darwin and GOOS=windows go vet and go build): CI has
// no macOS or Windows machine to run them on. What they decide is
// tested on every platform.
func TestIsAlert(t *testing.T) {
	for _, tc := range []struct {
		level string
		want  bool
	}{
		{ipc.LevelError, true},
		{ipc.LevelWarning, false},
		{ipc.LevelInfo, false},
		{"", false},
		{"unknown", false},
	} {
		if got := isAlert(tc.level); got != tc.want {
			t.Errorf("isAlert(%q) = %v, want %v", tc.level, got, tc.want)
		}
	}
}
