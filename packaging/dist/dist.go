// Package dist makes bm-agent's release: the three binaries built for every
// platform with CGO_ENABLED=0 and the version stamped in (internal/buildinfo),
// an archive per platform (bm-agent_<version>_<os>_<arch>.tar.gz, .zip for
// Windows), deb and rpm packages through nfpm (goreleaser/nfpm, as a
// library) holding the binaries, packaging's units and desktop entries, the
// tray's icon and shell completions, a Homebrew formula for the macOS
// archives, and a SHA-256 checksums file over all of it. cmd/bm-dist (make
// dist) drives it; its test installs the .deb with dpkg.
package dist

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/basicmachines-co/bm-agent/internal/buildinfo"
)

// Project is the name of the release: archives, packages, the formula.
const Project = "bm-agent"

// Target is one platform of the release.
type Target struct{ OS, Arch string }

func (t Target) String() string { return t.OS + "/" + t.Arch }

// exe is the file name of binary name on t.
func (t Target) exe(name string) string {
	if t.OS == "windows" {
		return name + ".exe"
	}
	return name
}

// Matrix is every platform bm-agent releases for.
var Matrix = []Target{
	{"linux", "amd64"}, {"linux", "arm64"},
	{"darwin", "amd64"}, {"darwin", "arm64"},
	{"windows", "amd64"}, {"windows", "arm64"},
}

// ParseTargets reads "linux/amd64,darwin/arm64"; "" or "all" is Matrix,
// "host" the machine's own platform.
func ParseTargets(s string) ([]Target, error) {
	if s == "" || s == "all" {
		return Matrix, nil
	}
	var out []Target
	for _, f := range strings.Split(s, ",") {
		if f == "host" {
			out = append(out, Target{runtime.GOOS, runtime.GOARCH})
			continue
		}
		os, arch, ok := strings.Cut(strings.TrimSpace(f), "/")
		if !ok || os == "" || arch == "" {
			return nil, fmt.Errorf("dist: bad target %q, want os/arch", f)
		}
		out = append(out, Target{os, arch})
	}
	return out, nil
}

// Binaries are the commands a release holds, by main package.
var Binaries = []string{"bm-agent", "bm-server", "bm-tray"}

// TrayReason says why bm-tray is left out of t's build, or "" when it is
// built. fyne.io/systray needs cgo (and so the macOS SDK) on darwin; every
// other platform builds with CGO_ENABLED=0.
func TrayReason(t Target) string {
	if t.OS != "darwin" {
		return ""
	}
	if runtime.GOOS == "darwin" {
		return "" // the native toolchain builds it with cgo
	}
	return "bm-tray needs cgo on macOS (fyne.io/systray calls AppKit) and so a macOS SDK, which this machine lacks: build it on a Mac with CGO_ENABLED=1 go build ./cmd/bm-tray"
}

// Config is one release build.
type Config struct {
	// Root is the module's root (where go.mod is); Out where the release goes.
	Root, Out string
	// Version, Commit, Date are stamped into the binaries (see FromGit).
	Version, Commit, Date string
	// Targets to build; archives are made for each, packages for linux ones.
	Targets []Target
	// Archives, Packages, Formula: what to make of the builds.
	Archives bool
	Packages []string // "deb", "rpm"
	Formula  bool
	// FormulaURL is the base URL the formula downloads the archives from.
	FormulaURL string
	// Log gets one line per step, with its duration.
	Log io.Writer
}

// Artifact is one file of the release.
type Artifact struct {
	Path   string // in Out
	Kind   string // "archive", "deb", "rpm", "formula", "checksums"
	Target Target
	SHA256 string
}

// Release is what Build made.
type Release struct {
	Artifacts []Artifact
	// Bins is where each target's binaries are (Out/build/<os>_<arch>).
	Bins map[Target]string
	// Skipped says which binaries a target's build left out, and why.
	Skipped map[Target]string
}

// Build makes the release cfg describes.
func Build(ctx context.Context, cfg Config) (*Release, error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Version == "" || cfg.Date == "" {
		return nil, fmt.Errorf("dist: version and date must be set")
	}
	date, err := time.Parse(time.RFC3339, cfg.Date)
	if err != nil {
		return nil, fmt.Errorf("dist: date: %w", err)
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, fmt.Errorf("dist: %w", err)
	}
	rel := &Release{Bins: map[Target]string{}, Skipped: map[Target]string{}}
	for _, t := range cfg.Targets {
		dir := filepath.Join(cfg.Out, "build", t.OS+"_"+t.Arch)
		bins := Binaries
		if r := TrayReason(t); r != "" {
			bins = []string{"bm-agent", "bm-server"}
			rel.Skipped[t] = r
		}
		if err := step(cfg.Log, "build "+t.String()+" ("+strings.Join(bins, ", ")+")", func() error {
			return goBuild(ctx, cfg, t, dir, bins)
		}); err != nil {
			return nil, err
		}
		rel.Bins[t] = dir
	}
	var comp string
	needComp := cfg.Archives || len(cfg.Packages) > 0
	if needComp {
		comp = filepath.Join(cfg.Out, "build", "completions")
		if err := step(cfg.Log, "completions", func() error { return completions(ctx, cfg, rel, comp) }); err != nil {
			return nil, err
		}
	}
	if cfg.Archives {
		for _, t := range cfg.Targets {
			var a Artifact
			if err := step(cfg.Log, "archive "+t.String(), func() (err error) {
				a, err = archive(cfg, t, rel.Bins[t], comp, rel.Skipped[t], date)
				return err
			}); err != nil {
				return nil, err
			}
			rel.Artifacts = append(rel.Artifacts, a)
		}
	}
	for _, format := range cfg.Packages {
		for _, t := range cfg.Targets {
			if t.OS != "linux" {
				continue
			}
			var a Artifact
			if err := step(cfg.Log, format+" "+t.String(), func() (err error) {
				a, err = pkg(cfg, format, t, rel.Bins[t], comp, date)
				return err
			}); err != nil {
				return nil, err
			}
			rel.Artifacts = append(rel.Artifacts, a)
		}
	}
	for i := range rel.Artifacts {
		sum, err := sha256File(rel.Artifacts[i].Path)
		if err != nil {
			return nil, err
		}
		rel.Artifacts[i].SHA256 = sum
	}
	if cfg.Formula {
		a, err := formula(cfg, rel.Artifacts)
		if err != nil {
			return nil, err
		}
		if a != nil {
			rel.Artifacts = append(rel.Artifacts, *a)
		}
	}
	if len(rel.Artifacts) > 0 {
		a, err := checksums(cfg, rel.Artifacts)
		if err != nil {
			return nil, err
		}
		rel.Artifacts = append(rel.Artifacts, a)
	}
	return rel, nil
}

// step runs fn, logging what it was and how long it took.
func step(w io.Writer, what string, fn func() error) error {
	start := time.Now()
	err := fn()
	if err != nil {
		fmt.Fprintf(w, "dist: %s: failed after %s\n", what, time.Since(start).Round(10*time.Millisecond))
		return fmt.Errorf("dist: %s: %w", what, err)
	}
	fmt.Fprintf(w, "dist: %s: %s\n", what, time.Since(start).Round(10*time.Millisecond))
	return nil
}

// goBuild builds bins for t into dir: trimmed paths, stripped, stamped.
func goBuild(ctx context.Context, cfg Config, t Target, dir string, bins []string) error {
	ldflags := append([]string{"-s", "-w"}, buildinfo.LDFlags(cfg.Version, cfg.Commit, cfg.Date)...)
	args := []string{"build", "-trimpath", "-ldflags", strings.Join(ldflags, " "), "-o", dir + string(filepath.Separator)}
	for _, b := range bins {
		args = append(args, "./cmd/"+b)
	}
	cmd := exec.CommandContext(ctx, goTool(), args...)
	cmd.Dir = cfg.Root
	cgo := "0"
	if t.OS == "darwin" && runtime.GOOS == "darwin" {
		cgo = "1" // bm-tray's systray; the other two do not use cgo at all
	}
	cmd.Env = append(os.Environ(), "GOOS="+t.OS, "GOARCH="+t.Arch, "CGO_ENABLED="+cgo)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// goTool is the go command: $GOROOT/bin/go when go run or go test set
// GOROOT, else go on PATH.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// completions writes the shell completions of bm-agent and bm-server,
// generated by their cobra command trees: a build for this machine runs
// them (the release's own when it has one, else one built here).
func completions(ctx context.Context, cfg Config, rel *Release, dir string) error {
	host := Target{runtime.GOOS, runtime.GOARCH}
	bins, ok := rel.Bins[host]
	if !ok {
		bins = filepath.Join(cfg.Out, "build", "host")
		if err := goBuild(ctx, cfg, host, bins, []string{"bm-agent", "bm-server"}); err != nil {
			return err
		}
	}
	for _, name := range []string{"bm-agent", "bm-server"} {
		for _, sh := range []string{"bash", "zsh", "fish"} {
			out, err := exec.CommandContext(ctx, filepath.Join(bins, host.exe(name)), "completion", sh).Output()
			if err != nil {
				return fmt.Errorf("%s completion %s: %w", name, sh, err)
			}
			if err := os.MkdirAll(filepath.Join(dir, sh), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, sh, completionFile(name, sh)), out, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// completionFile is the file name each shell looks up name's completion by.
func completionFile(name, sh string) string {
	switch sh {
	case "zsh":
		return "_" + name
	case "fish":
		return name + ".fish"
	}
	return name
}
