package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestFormat(t *testing.T) {
	platform := runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	noVCS := func() (string, string) { return "", "" }
	vcs := func() (string, string) { return "0123456789abcdef0123", "2026-01-02T03:04:05Z" }
	tests := []struct {
		name                  string
		version, commit, date string
		vcs                   func() (string, string)
		want                  string
	}{
		{"stamped", "1.2.3", "abcdef0123456789abcdef", "2026-05-06T07:08:09Z", vcs,
			"bm-agent 1.2.3 (commit abcdef012345, 2026-05-06T07:08:09Z, " + platform + ")"},
		{"unstamped, vcs recorded", "dev", "", "", vcs,
			"bm-agent dev (commit 0123456789ab, 2026-01-02T03:04:05Z, " + platform + ")"},
		{"unstamped, nothing recorded", "dev", "", "", noVCS, "bm-agent dev (" + platform + ")"},
		{"short commit kept whole", "0.1.0", "abc", "", noVCS, "bm-agent 0.1.0 (commit abc, " + platform + ")"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := format("bm-agent", tt.version, tt.commit, tt.date, tt.vcs); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestLDFlags(t *testing.T) {
	got := strings.Join(LDFlags("1.2.3", "abc", "2026-01-02T03:04:05Z"), " ")
	want := "-X " + importPath + ".Version=1.2.3 -X " + importPath + ".Commit=abc -X " + importPath + ".Date=2026-01-02T03:04:05Z"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
