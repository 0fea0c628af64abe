// Package buildinfo holds the version, commit and build date that release
// builds stamp into every binary (bm-agent, bm-tray, bm-server) through
// -ldflags -X (see LDFlags; make dist does it), and says them for
// --version. An unstamped build (go build, go run) says "dev" and, where
// the Go toolchain recorded it, the commit it was built from.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// The stamped values; a release build sets them with LDFlags.
var (
	// Version is the release version, without a leading v ("1.2.3",
	// "0.0.0-dev.12.gabc1234"); "dev" when not stamped.
	Version = "dev"
	// Commit is the full commit hash the build was made from.
	Commit = ""
	// Date is the commit's date (RFC 3339, UTC): a rebuild of the same
	// commit stamps the same date, so release builds are reproducible.
	Date = ""
)

// importPath is this package's import path, what -X names.
const importPath = "github.com/basicmachines-co/bm-agent/internal/buildinfo"

// LDFlags returns the -X flags that stamp version, commit and date into a
// binary that links this package (join them into -ldflags).
func LDFlags(version, commit, date string) []string {
	return []string{
		"-X", importPath + ".Version=" + version,
		"-X", importPath + ".Commit=" + commit,
		"-X", importPath + ".Date=" + date,
	}
}

// String is the --version line of the named binary: "bm-agent 1.2.3
// (commit abc1234def0, 2026-01-02T03:04:05Z, go1.26.8 linux/amd64)".
func String(name string) string {
	return format(name, Version, Commit, Date, vcsInfo)
}

// vcsInfo is what the Go toolchain recorded of the commit (go build with
// -buildvcs in a git checkout), for unstamped builds.
func vcsInfo() (commit, date string) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "", ""
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.time":
			date = s.Value
		}
	}
	return commit, date
}

func format(name, version, commit, date string, vcs func() (string, string)) string {
	if commit == "" && date == "" {
		commit, date = vcs()
	}
	parts := []string{}
	if commit != "" {
		parts = append(parts, "commit "+short(commit))
	}
	if date != "" {
		parts = append(parts, date)
	}
	parts = append(parts, runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH)
	return fmt.Sprintf("%s %s (%s)", name, version, strings.Join(parts, ", "))
}

// short is a commit hash cut to 12 characters, as git shows it.
func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}
