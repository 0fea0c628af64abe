// Package atomicfile writes files so that a reader, or a crash, sees the
// old content or the new, never a mix: the bytes go to a temporary file on
// the same file system, which is synced (fsync) and then renamed over the
// target (WriteFile, WriteFileVia) or linked to it where it must not exist
// yet (Create); the directory is synced after, so the rename survives a
// crash too. Every whole-file write of state, secrets, listings and
// installed files goes through here.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// WriteFile replaces path with b, with the given mode. The temporary file
// is a hidden file next to path (".name.*"), removed on failure.
func WriteFile(path string, b []byte, mode os.FileMode) error {
	return WriteFileVia(filepath.Dir(path), path, b, mode)
}

// WriteFileVia is WriteFile with the temporary file in tmpDir, which must
// be on path's file system: for a directory whose readers must never meet
// a temporary file, with tmpDir cleaned where the program starts.
func WriteFileVia(tmpDir, path string, b []byte, mode os.FileMode) error {
	tmp, err := writeTemp(tmpDir, path, b, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp) // a no-op after the rename
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	syncDir(filepath.Dir(path))
	return nil
}

// Pending is a file written and synced under a temporary name, not yet
// in its place: Prepare writes it, Commit renames it into place, Abort
// drops it. It lets a caller do the slow part (the write and its sync)
// before it takes a lock, and only the rename under it.
type Pending struct {
	tmp, path string
}

// Prepare writes b to a synced temporary file in tmpDir (on path's file
// system) that Commit will rename to path.
func Prepare(tmpDir, path string, b []byte, mode os.FileMode) (*Pending, error) {
	tmp, err := writeTemp(tmpDir, path, b, mode)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return &Pending{tmp: tmp, path: path}, nil
}

// Commit renames the file into place. It does not sync the directory:
// call SyncDir (outside the lock) before telling anyone it is durable.
func (p *Pending) Commit() error {
	if err := os.Rename(p.tmp, p.path); err != nil {
		return fmt.Errorf("write %s: %w", p.path, err)
	}
	return nil
}

// Abort removes the temporary file (a no-op after Commit).
func (p *Pending) Abort() { _ = os.Remove(p.tmp) }

// SyncDir syncs the directory the file was committed to.
func (p *Pending) SyncDir() { syncDir(filepath.Dir(p.path)) }

// SyncDir syncs the directory of path, so a rename into it is on disk
// (best effort, as for WriteFile).
func SyncDir(path string) { syncDir(filepath.Dir(path)) }

// Create writes b to path, with the given mode, only if path does not
// exist: the complete file is linked into place, so a reader sees all of b
// or no file, and of two writers racing, one wins. It reports whether it
// created path; false with a nil error means path was there already.
func Create(path string, b []byte, mode os.FileMode) (created bool, err error) {
	tmp, err := writeTemp(filepath.Dir(path), path, b, mode)
	if err != nil {
		return false, fmt.Errorf("create %s: %w", path, err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, fmt.Errorf("create %s: %w", path, err)
	}
	syncDir(filepath.Dir(path))
	return true, nil
}

// writeTemp writes b to a new synced file in dir, named after path, and
// returns its name; on failure it removes it.
func writeTemp(dir, path string, b []byte, mode os.FileMode) (name string, err error) {
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(b); err != nil {
		return "", err
	}
	// Windows keeps only a read-only bit, which some file systems refuse.
	if err := f.Chmod(mode); err != nil && runtime.GOOS != "windows" && !errors.Is(err, errors.ErrUnsupported) {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return f.Name(), nil
}

// syncDir syncs dir so a rename or link in it is on disk. It is best
// effort: Windows cannot sync a directory, and some file systems (network,
// FUSE) refuse to, while the file itself is synced already.
func syncDir(dir string) {
	if runtime.GOOS == "windows" {
		return
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
