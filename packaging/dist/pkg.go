package dist

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager

	"github.com/basicmachines-co/bm-agent/packaging"
)

// Where the packages put things.
const (
	BinDir      = "/usr/bin"
	UserUnit    = "/usr/lib/systemd/user/bm-agent.service"
	ServerUnit  = "/usr/lib/systemd/system/bm-server.service"
	TrayApp     = "/usr/share/applications/bm-tray.desktop"
	TrayStartup = "/etc/xdg/autostart/bm-tray.desktop"
	// IconName is the tray's icon in the hicolor theme.
	IconName = "basic-memory"
)

// iconSizes are the tray icon's sizes (ui/tray/icons/png/up-to-date-N.png).
var iconSizes = []string{"22", "24", "32"}

// Description is the packages' description.
const Description = `Keeps your Basic Memory notes folder and your cloud bucket in step
bm-agent is the sync daemon and its CLI, bm-tray the system tray, bm-server
the tenant API. Run 'bm-agent setup' as yourself to start the agent at
login, sign in and sync; bm-server's system unit is installed, not enabled.`

// postScript runs after install and after removal: systemd rereads the
// units where it runs (not in a container without it).
const postScript = `#!/bin/sh
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
`

// PackageFiles are the files a package holds, by destination: the same for
// deb and rpm except where zsh looks for completions.
func PackageFiles(format string) []string {
	out := []string{UserUnit, ServerUnit, TrayApp, TrayStartup}
	for _, b := range Binaries {
		out = append(out, BinDir+"/"+b)
	}
	for _, s := range iconSizes {
		out = append(out, "/usr/share/icons/hicolor/"+s+"x"+s+"/apps/"+IconName+".png")
	}
	for _, b := range []string{"bm-agent", "bm-server"} {
		for _, sh := range []string{"bash", "zsh", "fish"} {
			out = append(out, completionDest(format, sh)+"/"+completionFile(b, sh))
		}
	}
	return append(out, "/usr/share/doc/bm-agent/README.md")
}

func completionDest(format, sh string) string {
	switch sh {
	case "zsh":
		if format == "deb" {
			return "/usr/share/zsh/vendor-completions"
		}
		return "/usr/share/zsh/site-functions"
	case "fish":
		return "/usr/share/fish/vendor_completions.d"
	}
	return "/usr/share/bash-completion/completions"
}

// pkg makes the deb or rpm (format) of t with nfpm: the binaries, the
// units and desktop entries rendered by packaging's templates for
// /usr/bin, the tray's icon and the completions.
func pkg(cfg Config, format string, t Target, bins, comp string, date time.Time) (Artifact, error) {
	gen := filepath.Join(cfg.Out, "build", "pkg")
	if err := os.MkdirAll(gen, 0o755); err != nil {
		return Artifact{}, err
	}
	p := packaging.Params{AgentPath: BinDir + "/bm-agent", TrayPath: BinDir + "/bm-tray", Icon: IconName}
	render := map[string]func() ([]byte, error){
		"bm-agent.service": func() ([]byte, error) { return packaging.SystemdUnit(p) },
		"bm-server.service": func() ([]byte, error) {
			return packaging.ServerUnit(packaging.ServerParams{ServerPath: BinDir + "/bm-server"})
		},
		"bm-tray.desktop": func() ([]byte, error) { return packaging.TrayDesktopEntry(p) },
		"post.sh":         func() ([]byte, error) { return []byte(postScript), nil },
	}
	for name, fn := range render {
		b, err := fn()
		if err != nil {
			return Artifact{}, err
		}
		if err := os.WriteFile(filepath.Join(gen, name), b, 0o644); err != nil {
			return Artifact{}, err
		}
	}
	file := func(src, dst string, mode os.FileMode) *files.Content {
		return &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Mode: mode, MTime: date}}
	}
	contents := files.Contents{
		file(filepath.Join(gen, "bm-agent.service"), UserUnit, 0o644),
		file(filepath.Join(gen, "bm-server.service"), ServerUnit, 0o644),
		file(filepath.Join(gen, "bm-tray.desktop"), TrayApp, 0o644),
		file(filepath.Join(gen, "bm-tray.desktop"), TrayStartup, 0o644),
		file(filepath.Join(cfg.Root, "README.md"), "/usr/share/doc/bm-agent/README.md", 0o644),
	}
	for _, b := range Binaries {
		contents = append(contents, file(filepath.Join(bins, b), BinDir+"/"+b, 0o755))
	}
	for _, s := range iconSizes {
		contents = append(contents, file(filepath.Join(cfg.Root, "ui", "tray", "icons", "png", "up-to-date-"+s+".png"),
			"/usr/share/icons/hicolor/"+s+"x"+s+"/apps/"+IconName+".png", 0o644))
	}
	for _, b := range []string{"bm-agent", "bm-server"} {
		for _, sh := range []string{"bash", "zsh", "fish"} {
			f := completionFile(b, sh)
			contents = append(contents, file(filepath.Join(comp, sh, f), completionDest(format, sh)+"/"+f, 0o644))
		}
	}
	info := nfpm.WithDefaults(&nfpm.Info{
		Name:        Project,
		Arch:        t.Arch,
		Platform:    "linux",
		Version:     cfg.Version,
		Section:     "net",
		Priority:    "optional",
		Maintainer:  "Basic Machines",
		Vendor:      "Basic Machines",
		Homepage:    "https://basicmemory.com",
		Description: Description,
		MTime:       date,
		Overridables: nfpm.Overridables{
			Contents:   contents,
			Recommends: []string{"systemd"},
			Suggests:   []string{"gnome-keyring"},
			// nfpm's default is level 9: 4 times the time for 1 % less.
			Deb: nfpm.Deb{Compression: "gzip:6"},
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(gen, "post.sh"),
				PostRemove:  filepath.Join(gen, "post.sh"),
			},
		},
	})
	if err := nfpm.Validate(info); err != nil {
		return Artifact{}, fmt.Errorf("nfpm: %w", err)
	}
	packager, err := nfpm.Get(format)
	if err != nil {
		return Artifact{}, fmt.Errorf("nfpm: %w", err)
	}
	path := filepath.Join(cfg.Out, packager.ConventionalFileName(info))
	f, err := os.Create(path)
	if err != nil {
		return Artifact{}, err
	}
	defer f.Close()
	info.Target = path
	if err := packager.Package(info, f); err != nil {
		os.Remove(path)
		return Artifact{}, fmt.Errorf("nfpm %s: %w", format, err)
	}
	if err := f.Close(); err != nil {
		return Artifact{}, err
	}
	return Artifact{Path: path, Kind: format, Target: t}, nil
}
