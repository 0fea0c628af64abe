package cli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/ipc"
)

func TestParseWhen(t *testing.T) {
	loc := time.FixedZone("here", 3600)
	now := time.Date(2026, 12, 2, 15, 30, 0, 0, loc)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"2h", now.Add(-2 * time.Hour)},
		{"90m", now.Add(-90 * time.Minute)},
		{"3d", now.Add(-72 * time.Hour)},
		{"1.5d", now.Add(-36 * time.Hour)},
		{"1w", now.Add(-7 * 24 * time.Hour)},
		{"2026-12-01 17:00", time.Date(2026, 12, 1, 17, 0, 0, 0, loc)},
		{"2026-12-01 17:00:05", time.Date(2026, 12, 1, 17, 0, 5, 0, loc)},
		{"2026-12-01", time.Date(2026, 12, 1, 0, 0, 0, 0, loc)},
		{"09:15", time.Date(2026, 12, 2, 9, 15, 0, 0, loc)},
		{"2026-12-01T10:00:00Z", time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)},
	} {
		got, err := parseWhen(tc.in, now)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "yesterday", "-2h", "25:00", "2h ago"} {
		if _, err := parseWhen(bad, now); err == nil {
			t.Errorf("parseWhen(%q) accepted", bad)
		}
	}
}

func TestFolderRelative(t *testing.T) {
	folder := t.TempDir()
	t.Chdir(folder)
	if err := os.MkdirAll(filepath.Join(folder, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ arg, want string }{
		{filepath.Join(folder, "sub", "a.md"), "sub/a.md"}, // absolute, inside
		{"sub/a.md", "sub/a.md"},                           // relative to the working dir, inside
		{"./b.md", "b.md"},
	} {
		got, err := folderRelative(folder, tc.arg)
		if err != nil || got != tc.want {
			t.Errorf("folderRelative(%q) = %q, %v; want %q", tc.arg, got, err, tc.want)
		}
	}
	t.Chdir(os.TempDir())
	if got, err := folderRelative(folder, "projects/plan.md"); err != nil || got != "projects/plan.md" {
		t.Errorf("outside the folder, a relative path is the folder's: %q, %v", got, err)
	}
	var ue *UsageError
	if _, err := folderRelative(folder, "/etc/passwd"); !errors.As(err, &ue) {
		t.Errorf("an absolute path outside the folder: %v, want a usage error", err)
	}
}

func TestWriteVersions(t *testing.T) {
	kept := time.Date(2026, 12, 2, 10, 31, 5, 0, time.UTC)
	var b bytes.Buffer
	writeVersions(&b, ipc.Versions{Path: "my notes/a.md", DaysKept: 30, Versions: []ipc.Version{
		{ID: "c0000000a", Path: "my notes/a.md", Side: ipc.VersionSideCloud, Size: 1200, Kept: kept, Reason: ipc.ReasonOverwritten, Device: "desktop"},
		{ID: "l0000000b", Path: "my notes/a.md", Side: ipc.VersionSideLocal, Size: 80, Kept: kept.Add(-time.Hour), Reason: ipc.ReasonConflict, Device: "laptop"},
	}}, time.Time{}, time.UTC)
	out := b.String()
	for _, want := range []string{
		"2 versions kept of my notes/a.md",
		"2026-12-02 10:31:05  bucket       1.2 kB  overwritten  desktop  c0000000a",
		"conflict",
		"bm-agent restore 'my notes/a.md' --version c0000000a",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	writeVersions(&b, ipc.Versions{Path: "x.md", DaysKept: 0}, time.Time{}, time.UTC)
	if !strings.Contains(b.String(), "Versions are off") || !strings.Contains(b.String(), "No versions of x.md") {
		t.Errorf("versions off, none kept:\n%s", b.String())
	}
	b.Reset()
	since := kept.Add(-2 * time.Hour)
	writeVersions(&b, ipc.Versions{DaysKept: 30, Versions: []ipc.Version{{Path: "gone.md", Side: ipc.VersionSideLocal, Kept: kept, Reason: ipc.ReasonDeleted}}}, since, time.UTC)
	if !strings.Contains(b.String(), "1 note deleted since 2026-12-02 08:31:05") || !strings.Contains(b.String(), `bm-agent restore --deleted --since "2026-12-02 08:31:05"`) {
		t.Errorf("deleted notes:\n%s", b.String())
	}
}
