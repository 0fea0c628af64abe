package dist

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestVersionOf(t *testing.T) {
	tests := []struct {
		desc     string
		untagged bool
		want     string
	}{
		{"v1.2.3-0-gabc1234", false, "1.2.3"},
		{"v1.2.3-5-gabc1234", false, "1.2.4-dev.5.gabc1234"},
		{"v1.2.3-rc.1-0-gabc1234", false, "1.2.3-rc.1"},
		{"v1.2.3-rc.1-2-gabc1234", false, "1.2.3-rc.1.2.gabc1234"},
		{"v0.0.0-152-gabb6a5a", true, "0.0.0-dev.152.gabb6a5a"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got, err := versionOf(tt.desc, tt.untagged)
			if err != nil || got != tt.want {
				t.Errorf("versionOf(%q) = %q, %v; want %q", tt.desc, got, err, tt.want)
			}
		})
	}
	if _, err := versionOf("release-1", false); err == nil {
		t.Error("a tag that is not vX.Y.Z must be refused")
	}
}

func TestNames(t *testing.T) {
	tests := []struct {
		t    Target
		want string
	}{
		{Target{"linux", "amd64"}, "bm-agent_1.2.3_linux_amd64.tar.gz"},
		{Target{"darwin", "arm64"}, "bm-agent_1.2.3_darwin_arm64.tar.gz"},
		{Target{"windows", "arm64"}, "bm-agent_1.2.3_windows_arm64.zip"},
	}
	for _, tt := range tests {
		if got := ArchiveName("1.2.3", tt.t); got != tt.want {
			t.Errorf("ArchiveName(%v) = %q, want %q", tt.t, got, tt.want)
		}
	}
	if got := ChecksumsName("1.2.3"); got != "bm-agent_1.2.3_checksums.txt" {
		t.Errorf("ChecksumsName = %q", got)
	}
}

func TestParseTargets(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"", "[linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64]", false},
		{"all", "[linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64]", false},
		{"linux/arm64, windows/amd64", "[linux/arm64 windows/amd64]", false},
		{"host", "[" + runtime.GOOS + "/" + runtime.GOARCH + "]", false},
		{"linux", "", true},
	}
	for _, tt := range tests {
		got, err := ParseTargets(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseTargets(%q): err %v", tt.in, err)
			continue
		}
		if !tt.wantErr && fmtTargets(got) != tt.want {
			t.Errorf("ParseTargets(%q) = %s, want %s", tt.in, fmtTargets(got), tt.want)
		}
	}
}

func fmtTargets(ts []Target) string {
	var s []string
	for _, t := range ts {
		s = append(s, t.String())
	}
	return "[" + strings.Join(s, " ") + "]"
}

func TestTrayReason(t *testing.T) {
	for _, tg := range Matrix {
		r := TrayReason(tg)
		if tg.OS == "darwin" && runtime.GOOS != "darwin" {
			if !strings.Contains(r, "cgo") {
				t.Errorf("%v: reason %q, want one naming cgo", tg, r)
			}
		} else if r != "" {
			t.Errorf("%v: bm-tray left out (%s), want built", tg, r)
		}
	}
}

// TestArchivesAndChecksums packs fake builds of a Linux, a macOS (no tray)
// and a Windows target and reads the archives, the checksums file and the
// formula back.
func TestArchivesAndChecksums(t *testing.T) {
	root, out := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "README.md"), []byte("# readme\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	comp := filepath.Join(out, "comp")
	for _, sh := range []string{"bash", "zsh", "fish"} {
		for _, b := range []string{"bm-agent", "bm-server"} {
			writeFile(t, filepath.Join(comp, sh, completionFile(b, sh)), "complete "+b)
		}
	}
	date := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg := Config{Root: root, Out: out, Version: "1.2.3", Date: date.Format(time.RFC3339), FormulaURL: "https://example.com/v{version}/"}
	var as []Artifact
	for _, tg := range []Target{{"linux", "arm64"}, {"darwin", "arm64"}, {"windows", "amd64"}} {
		bins := filepath.Join(out, tg.OS)
		for _, b := range Binaries {
			if tg.OS == "darwin" && b == "bm-tray" {
				continue
			}
			writeFile(t, filepath.Join(bins, tg.exe(b)), "binary "+b)
		}
		a, err := archive(cfg, tg, bins, comp, TrayReason(tg), date)
		if err != nil {
			t.Fatal(err)
		}
		if a.SHA256, err = sha256File(a.Path); err != nil {
			t.Fatal(err)
		}
		as = append(as, a)
	}
	wants := map[string][]string{
		"bm-agent_1.2.3_linux_arm64.tar.gz": {"README.md", "bm-agent", "bm-server", "bm-tray", "completions/", "completions/bash/", "completions/bash/bm-agent",
			"completions/bash/bm-server", "completions/fish/", "completions/fish/bm-agent.fish", "completions/fish/bm-server.fish", "completions/zsh/", "completions/zsh/_bm-agent", "completions/zsh/_bm-server"},
		"bm-agent_1.2.3_windows_amd64.zip": {"README.md", "bm-agent.exe", "bm-server.exe", "bm-tray.exe"},
	}
	for _, a := range as {
		got := archiveNames(t, a.Path)
		want, ok := wants[filepath.Base(a.Path)]
		if !ok {
			// darwin, where this machine is not a Mac: no tray, and a note why.
			if runtime.GOOS != "darwin" && (contains(got, "bm-tray") || !contains(got, "NOTE-bm-tray.txt")) {
				t.Errorf("%s: %v, want no bm-tray and its note", a.Path, got)
			}
			continue
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s:\n got %v\nwant %v", filepath.Base(a.Path), got, want)
		}
	}
	f, err := formula(cfg, as)
	if err != nil || f == nil {
		t.Fatalf("formula: %v", err)
	}
	rb, _ := os.ReadFile(f.Path)
	for _, w := range []string{`version "1.2.3"`, `url "https://example.com/v1.2.3/bm-agent_1.2.3_darwin_arm64.tar.gz"`, `sha256 "` + as[1].SHA256 + `"`,
		"on_macos do", "on_linux do", "on_arm do", `url "https://example.com/v1.2.3/bm-agent_1.2.3_linux_arm64.tar.gz"`, "service do"} {
		if !strings.Contains(string(rb), w) {
			t.Errorf("formula lacks %q:\n%s", w, rb)
		}
	}
	if strings.Contains(string(rb), "windows") {
		t.Errorf("formula names a Windows archive:\n%s", rb)
	}
	sums, err := checksums(cfg, append(as, *f))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(sums.Path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 4 || !sort.SliceIsSorted(lines, func(i, j int) bool { return lines[i][66:] < lines[j][66:] }) {
		t.Fatalf("checksums:\n%s", b)
	}
	for _, a := range append(as, *f) {
		rel, _ := filepath.Rel(cfg.Out, a.Path)
		if !contains(lines, a.SHA256+"  "+filepath.ToSlash(rel)) {
			t.Errorf("checksums lack %s:\n%s", a.Path, b)
		}
	}
	// The README's advice: sha256sum -c in the release's folder.
	if _, err := exec.LookPath("sha256sum"); err == nil {
		cmd := exec.Command("sha256sum", "-c", filepath.Base(sums.Path))
		cmd.Dir = cfg.Out
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("sha256sum -c %s: %v:\n%s", filepath.Base(sums.Path), err, out)
		}
	}
}

// archiveNames lists an archive's entries below its top folder, checking
// the folder is the archive's name and every entry has the commit's date.
func archiveNames(t *testing.T, path string) []string {
	t.Helper()
	top := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(path), ".zip"), ".tar.gz") + "/"
	var names []string
	add := func(name string, mod time.Time) {
		if !strings.HasPrefix(name, top) {
			t.Errorf("%s: entry %s outside %s", path, name, top)
		}
		if !mod.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
			t.Errorf("%s: %s dated %v", path, name, mod)
		}
		if n := strings.TrimPrefix(name, top); n != "" {
			names = append(names, n)
		}
	}
	if strings.HasSuffix(path, ".zip") {
		zr, err := zip.OpenReader(path)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		for _, f := range zr.File {
			add(f.Name, f.Modified.UTC())
		}
		return names
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		add(h.Name, h.ModTime.UTC())
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
