package dist

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// ArchiveName is the archive of t: bm-agent_<version>_<os>_<arch>.tar.gz,
// .zip for Windows.
func ArchiveName(version string, t Target) string {
	ext := ".tar.gz"
	if t.OS == "windows" {
		ext = ".zip"
	}
	return fmt.Sprintf("%s_%s_%s_%s%s", Project, version, t.OS, t.Arch, ext)
}

// entry is one file of an archive.
type entry struct {
	name string // in the archive, under its top folder
	src  string // on disk
	body []byte // or its contents
	mode os.FileMode
}

// archive packs t's binaries, the README, the completions (unix) and a
// note of what was left out into one archive with a top folder of its own
// name; every entry carries the commit's date.
func archive(cfg Config, t Target, bins, comp, skipped string, date time.Time) (Artifact, error) {
	name := ArchiveName(cfg.Version, t)
	top := strings.TrimSuffix(strings.TrimSuffix(name, ".zip"), ".tar.gz")
	var es []entry
	for _, b := range Binaries {
		p := filepath.Join(bins, t.exe(b))
		if _, err := os.Stat(p); err == nil {
			es = append(es, entry{name: t.exe(b), src: p, mode: 0o755})
		}
	}
	es = append(es, entry{name: "README.md", src: filepath.Join(cfg.Root, "README.md"), mode: 0o644})
	if t.OS != "windows" {
		for _, sh := range []string{"bash", "zsh", "fish"} {
			for _, b := range []string{"bm-agent", "bm-server"} {
				f := completionFile(b, sh)
				es = append(es, entry{name: "completions/" + sh + "/" + f, src: filepath.Join(comp, sh, f), mode: 0o644})
			}
		}
	}
	if skipped != "" {
		es = append(es, entry{name: "NOTE-bm-tray.txt", body: []byte(skipped + "\n"), mode: 0o644})
	}
	sort.Slice(es, func(i, j int) bool { return es[i].name < es[j].name })
	path := filepath.Join(cfg.Out, name)
	f, err := os.Create(path)
	if err != nil {
		return Artifact{}, err
	}
	defer f.Close()
	if t.OS == "windows" {
		err = writeZip(f, top, es, date)
	} else {
		err = writeTarGz(f, top, es, date)
	}
	if err != nil {
		return Artifact{}, fmt.Errorf("%s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return Artifact{}, err
	}
	return Artifact{Path: path, Kind: "archive", Target: t}, nil
}

func (e entry) read() ([]byte, error) {
	if e.body != nil {
		return e.body, nil
	}
	return os.ReadFile(e.src)
}

func writeTarGz(w io.Writer, top string, es []entry, date time.Time) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: top + "/", Mode: 0o755, ModTime: date, Format: tar.FormatPAX}); err != nil {
		return err
	}
	dirs := map[string]bool{}
	for _, e := range es {
		var parents []string
		for d := filepath.Dir(e.name); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: top + "/" + d + "/", Mode: 0o755, ModTime: date, Format: tar.FormatPAX}); err != nil {
				return err
			}
		}
		b, err := e.read()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: top + "/" + e.name, Mode: int64(e.mode), Size: int64(len(b)), ModTime: date, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write(b); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func writeZip(w io.Writer, top string, es []entry, date time.Time) error {
	zw := zip.NewWriter(w)
	for _, e := range es {
		b, err := e.read()
		if err != nil {
			return err
		}
		h := &zip.FileHeader{Name: top + "/" + e.name, Method: zip.Deflate, Modified: date}
		h.SetMode(e.mode)
		fw, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		if _, err := fw.Write(b); err != nil {
			return err
		}
	}
	return zw.Close()
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("dist: checksum: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("dist: checksum %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ChecksumsName is the checksums file of a release.
func ChecksumsName(version string) string {
	return fmt.Sprintf("%s_%s_checksums.txt", Project, version)
}

// checksums writes "<sha256>  <file>" per artifact, sorted by name, the
// format `sha256sum -c` reads.
func checksums(cfg Config, as []Artifact) (Artifact, error) {
	var lines []string
	for _, a := range as {
		// named from the checksums file's folder, as sha256sum -c there
		// reads them (the formula is in a folder of its own)
		rel, err := filepath.Rel(cfg.Out, a.Path)
		if err != nil || strings.HasPrefix(rel, "..") {
			return Artifact{}, fmt.Errorf("dist: checksums: %s is outside %s", a.Path, cfg.Out)
		}
		lines = append(lines, a.SHA256+"  "+filepath.ToSlash(rel))
	}
	sort.Slice(lines, func(i, j int) bool { return lines[i][66:] < lines[j][66:] })
	path := filepath.Join(cfg.Out, ChecksumsName(cfg.Version))
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return Artifact{}, fmt.Errorf("dist: %w", err)
	}
	return Artifact{Path: path, Kind: "checksums"}, nil
}
