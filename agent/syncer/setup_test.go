package syncer

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/rclone/rclone/fs"
)

// TestSetupRcloneRoutesLogs: after SetupRclone (twice: the sync engine and
// the mount both call it) rclone's records outside a pass reach
// slog.Default, with rclone's levels mapped and the component named.
func TestSetupRcloneRoutesLogs(t *testing.T) {
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
	SetupRclone()
	SetupRclone()

	for _, tt := range []struct {
		name string
		log  func(format string, args ...any)
		want string
	}{
		{"error", func(f string, a ...any) { fs.Errorf(nil, f, a...) }, "level=ERROR"},
		{"notice", func(f string, a ...any) { fs.Logf(nil, f, a...) }, "level=INFO"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			buf.Reset()
			tt.log("setup test %s", tt.name)
			got := buf.String()
			for _, want := range []string{tt.want, `msg="setup test ` + tt.name + `"`, "component=rclone"} {
				if !strings.Contains(got, want) {
					t.Errorf("log = %q, want %s in it", got, want)
				}
			}
		})
	}
}
