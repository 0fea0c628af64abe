package versions

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/basicmachines-co/bm-agent/internal/atomicfile"
	"github.com/basicmachines-co/bm-agent/internal/jsonl"
)

// Local is the version store of a notes folder, in a directory of the
// agent's state dir:
//
//	blobs/ab/abcdef...   the contents, named by their SHA-256 (read-only)
//	index.jsonl          one Version a line, appended; rewritten by Prune
//	tmp/ID, tmp/ID.json  captures in progress, and what they are
//
// A version is captured before the pass replaces or deletes the file (a
// hard link to the file where the store shares its file system, so the
// capture is the very bytes that go; a copy elsewhere) and committed into
// the store after. A capture that a crash left behind is committed when
// the store is next opened, so a kill between the two steps loses nothing.
type Local struct {
	dir    string
	device string
	log    *slog.Logger
	now    func() time.Time

	mu sync.Mutex
}

const (
	indexName = "index.jsonl"
	blobsDir  = "blobs"
	tmpDir    = "tmp"
)

// OpenLocal opens (creating it if needed) the store in dir for device,
// and commits any capture a crash left behind.
func OpenLocal(dir, device string, logger *slog.Logger) (*Local, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{dir, filepath.Join(dir, blobsDir), filepath.Join(dir, tmpDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("versions: open %s: %w", dir, err)
		}
	}
	s := &Local{dir: dir, device: device, log: logger, now: time.Now}
	if err := s.recover(); err != nil {
		return nil, fmt.Errorf("versions: open %s: %w", dir, err)
	}
	return s, nil
}

// Dir is the store's directory.
func (s *Local) Dir() string { return s.dir }

// captureMeta is what a capture is, written next to it before it starts.
type captureMeta struct {
	Path    string    `json:"path"`
	Reason  string    `json:"reason"`
	Orig    string    `json:"orig"` // the file it captures (OS path)
	ModTime time.Time `json:"mtime"`
	// Aside is where Take put the file on its way into the store when
	// the store is on another file system (a crash may leave it there).
	Aside string `json:"aside,omitempty"`
	// Taken: the file was moved out of its place (Take), not linked.
	Taken bool `json:"taken,omitempty"`
}

// Capture is a version taken aside and not yet committed: its content is
// in the store's tmp dir. Commit or Abort it.
type Capture struct {
	s       *Local
	id      string
	tmp     string
	meta    captureMeta
	linked  bool
	Size    int64     // the captured version's size
	ModTime time.Time // and modification time
}

// Begin captures the file at osPath, a version of the note rel (slash
// separated), which a pass is about to replace or delete for reason. The
// file itself is left alone. It fails with an error wrapping
// fs.ErrNotExist if there is no such file.
func (s *Local) Begin(osPath, rel, reason string) (*Capture, error) {
	return s.begin(osPath, rel, reason, true)
}

func (s *Local) begin(osPath, rel, reason string, link bool) (*Capture, error) {
	if !validReason(reason) {
		return nil, fmt.Errorf("versions: capture %s: unknown reason %q", rel, reason)
	}
	st, err := os.Lstat(osPath)
	if err != nil {
		return nil, fmt.Errorf("versions: capture %s: %w", rel, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("versions: capture %s: not a regular file", rel)
	}
	c := &Capture{s: s, id: newID(SideLocal), meta: captureMeta{Path: rel, Reason: reason, Orig: osPath, ModTime: st.ModTime()}}
	c.tmp = filepath.Join(s.dir, tmpDir, c.id)
	if err := c.writeMeta(); err != nil {
		return nil, fmt.Errorf("versions: capture %s: %w", rel, err)
	}
	if link && os.Link(osPath, c.tmp) == nil {
		c.linked = true
	} else if err := copyFile(osPath, c.tmp); err != nil {
		_ = os.Remove(c.tmp + ".json")
		return nil, fmt.Errorf("versions: capture %s: %w", rel, err)
	}
	cst, err := os.Stat(c.tmp)
	if err != nil {
		c.Abort()
		return nil, fmt.Errorf("versions: capture %s: %w", rel, err)
	}
	c.Size, c.ModTime = cst.Size(), cst.ModTime()
	c.meta.ModTime = c.ModTime
	return c, nil
}

// Take moves the file at osPath (a version of rel) out of its place and
// into the store: atomically where the store shares its file system, so
// the capture is exactly the version that was there, and no later write
// to osPath can land on it. It fails with an error wrapping
// fs.ErrNotExist if there is no such file. Commit it once the replacement
// is in place, or Restore it.
func (s *Local) Take(osPath, rel, reason string) (*Capture, error) {
	if !validReason(reason) {
		return nil, fmt.Errorf("versions: take %s: unknown reason %q", rel, reason)
	}
	st, err := os.Lstat(osPath)
	if err != nil {
		return nil, fmt.Errorf("versions: take %s: %w", rel, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("versions: take %s: not a regular file", rel)
	}
	c := &Capture{s: s, id: newID(SideLocal), meta: captureMeta{Path: rel, Reason: reason, Orig: osPath, Taken: true}}
	c.tmp = filepath.Join(s.dir, tmpDir, c.id)
	if err := c.writeMeta(); err != nil {
		return nil, fmt.Errorf("versions: take %s: %w", rel, err)
	}
	if err := os.Rename(osPath, c.tmp); err != nil {
		if !errors.Is(err, syscall.EXDEV) {
			_ = os.Remove(c.tmp + ".json")
			return nil, fmt.Errorf("versions: take %s: %w", rel, err)
		}
		// Another file system: aside in the file's own folder (atomic),
		// then copied in.
		c.meta.Aside = filepath.Join(filepath.Dir(osPath), AsidePrefix+c.id)
		if err := c.writeMeta(); err != nil {
			return nil, fmt.Errorf("versions: take %s: %w", rel, err)
		}
		if err := os.Rename(osPath, c.meta.Aside); err != nil {
			_ = os.Remove(c.tmp + ".json")
			return nil, fmt.Errorf("versions: take %s: %w", rel, err)
		}
		if err := copyFile(c.meta.Aside, c.tmp); err != nil {
			return c, fmt.Errorf("versions: take %s: %w (it waits at %s)", rel, err, c.meta.Aside)
		}
		_ = os.Remove(c.meta.Aside)
	}
	cst, err := os.Stat(c.tmp)
	if err != nil {
		return c, fmt.Errorf("versions: take %s: %w", rel, err)
	}
	c.Size, c.ModTime = cst.Size(), cst.ModTime()
	c.meta.ModTime = c.ModTime
	return c, nil
}

// AsidePrefix begins the name of a file Take set aside in its own folder
// on its way into a store on another file system. The engine never syncs
// such names.
const AsidePrefix = ".bm-aside-"

// Restore puts a taken file back at osPath, unless something else is
// there now (fs.ErrExist then: the capture stays, to be committed as a
// version or copied elsewhere).
func (c *Capture) Restore(osPath string) error {
	if err := os.Link(c.tmp, osPath); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("versions: restore %s: %w", c.meta.Path, err)
		}
		// No hard links here (or another file system): a copy.
		if err := copyFileExcl(c.tmp, osPath, 0o644); err != nil {
			return fmt.Errorf("versions: restore %s: %w", c.meta.Path, err)
		}
		_ = os.Chtimes(osPath, c.ModTime, c.ModTime)
	}
	c.Abort()
	return nil
}

func (c *Capture) writeMeta() error {
	mb, _ := json.Marshal(c.meta)
	return atomicfile.WriteFile(c.tmp+".json", mb, 0o600)
}

// KeepFile keeps a copy of the file at osPath, which stays where it is,
// as a version of rel (for example before a restore replaces it).
func (s *Local) KeepFile(osPath, rel, reason string) (Version, error) {
	c, err := s.begin(osPath, rel, reason, false)
	if err != nil {
		return Version{}, err
	}
	return c.Commit()
}

// CopyTo writes the captured content to a new file at dst (which must not
// exist), with the captured modification time: a conflict file.
func (c *Capture) CopyTo(dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("versions: copy capture of %s: %w", c.meta.Path, err)
	}
	if err := copyFileExcl(c.tmp, dst, 0o644); err != nil {
		return fmt.Errorf("versions: copy capture of %s: %w", c.meta.Path, err)
	}
	_ = os.Chtimes(dst, c.ModTime, c.ModTime)
	return nil
}

// SetReason changes why the version is kept (before Commit).
func (c *Capture) SetReason(reason string) {
	if validReason(reason) {
		c.meta.Reason = reason
	}
}

// Abort drops the capture: the version was not replaced after all.
func (c *Capture) Abort() {
	_ = os.Remove(c.tmp)
	_ = os.Remove(c.tmp + ".json")
}

// Commit moves the capture into the store and records it.
func (c *Capture) Commit() (Version, error) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	v, err := c.s.commitLocked(c.id, c.tmp, c.meta, c.linked)
	if err != nil {
		return Version{}, fmt.Errorf("versions: keep %s: %w", c.meta.Path, err)
	}
	return v, nil
}

// commitLocked hashes the captured file tmp, moves it into the blobs
// (unless that content is there already) and appends its index entry.
func (s *Local) commitLocked(id, tmp string, meta captureMeta, linked bool) (Version, error) {
	sum, size, err := hashFile(tmp)
	if err != nil {
		return Version{}, err
	}
	blob := s.blobPath(sum)
	if _, err := os.Stat(blob); err == nil {
		_ = os.Remove(tmp)
	} else {
		if err := os.MkdirAll(filepath.Dir(blob), 0o700); err != nil {
			return Version{}, err
		}
		// A capture that still shares its inode with the note (the pass
		// did not replace it after all) must not become the blob: the
		// next edit of the note would change it.
		if linked && sameFile(tmp, meta.Orig) {
			if err := copyFile(tmp, blob+".tmp"); err != nil {
				return Version{}, err
			}
			_ = os.Remove(tmp)
			tmp = blob + ".tmp"
		}
		if err := os.Rename(tmp, blob); err != nil {
			return Version{}, err
		}
		_ = os.Chmod(blob, 0o400)
	}
	v := Version{
		ID: id, Path: meta.Path, Side: SideLocal, Size: size, ModTime: meta.ModTime,
		Kept: s.now().UTC(), Reason: meta.Reason, Device: s.device, SHA256: sum,
	}
	if err := s.appendIndex(v); err != nil {
		return Version{}, err
	}
	_ = os.Remove(filepath.Join(s.dir, tmpDir, id+".json"))
	return v, nil
}

// recover commits the captures a crash left in tmp.
func (s *Local) recover() error {
	entries, err := os.ReadDir(filepath.Join(s.dir, tmpDir))
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".json") {
			continue
		}
		tmp := filepath.Join(s.dir, tmpDir, name)
		var meta captureMeta
		b, err := os.ReadFile(tmp + ".json")
		if err != nil || json.Unmarshal(b, &meta) != nil || meta.Path == "" {
			// Not one of ours (or its record is lost): keep it under a
			// name that says so rather than drop bytes.
			meta = captureMeta{Path: "recovered/" + name, Reason: ReasonOverwritten}
		}
		if !validReason(meta.Reason) {
			meta.Reason = ReasonOverwritten
		}
		if meta.Taken && meta.Orig != "" {
			if _, err := os.Lstat(meta.Orig); errors.Is(err, fs.ErrNotExist) {
				// Taken out of its place, and the pass stopped before
				// anything took its place: it goes back.
				c := &Capture{s: s, id: name, tmp: tmp, meta: meta}
				if st, err := os.Stat(tmp); err == nil {
					c.ModTime = st.ModTime()
				}
				if err := os.MkdirAll(filepath.Dir(meta.Orig), 0o755); err == nil && c.Restore(meta.Orig) == nil {
					s.log.Info("put back a note an interrupted pass had taken out of its place", "path", meta.Path)
					continue
				}
			}
		}
		if _, err := s.commitLocked(name, tmp, meta, true); err != nil {
			return fmt.Errorf("recover capture %s: %w", name, err)
		}
		s.log.Info("kept a version an interrupted pass had captured", "path", meta.Path, "reason", meta.Reason)
	}
	// Records without a capture: a Take that set its file aside on
	// another file system and was cut short gets it from there; the rest
	// captured nothing.
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		tmp := filepath.Join(s.dir, tmpDir, name)
		if _, err := os.Stat(tmp); !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		var meta captureMeta
		if b, err := os.ReadFile(tmp + ".json"); err == nil && json.Unmarshal(b, &meta) == nil && meta.Aside != "" {
			if _, err := os.Stat(meta.Aside); err == nil {
				if err := copyFile(meta.Aside, tmp); err != nil {
					return fmt.Errorf("recover %s: %w", meta.Aside, err)
				}
				if _, err := s.commitLocked(name, tmp, meta, false); err != nil {
					return fmt.Errorf("recover capture %s: %w", name, err)
				}
				_ = os.Remove(meta.Aside)
				s.log.Info("kept a version an interrupted pass had set aside", "path", meta.Path)
				continue
			}
		}
		_ = os.Remove(tmp + ".json")
	}
	return nil
}

func (s *Local) blobPath(sum string) string {
	return filepath.Join(s.dir, blobsDir, sum[:2], sum)
}

func (s *Local) appendIndex(v Version) error {
	return jsonl.Append(filepath.Join(s.dir, indexName), v, true)
}

// readIndexLocked reads every well-formed entry, oldest first.
func (s *Local) readIndexLocked() ([]Version, error) {
	return jsonl.Read(filepath.Join(s.dir, indexName), func(v Version) bool { return v.ID != "" && v.SHA256 != "" })
}

// All returns every kept version, newest first.
func (s *Local) All() ([]Version, error) {
	s.mu.Lock()
	vs, err := s.readIndexLocked()
	s.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("versions: list: %w", err)
	}
	SortNewestFirst(vs)
	return vs, nil
}

// List returns the kept versions of the note rel, newest first.
func (s *Local) List(rel string) ([]Version, error) {
	all, err := s.All()
	if err != nil {
		return nil, err
	}
	var out []Version
	for _, v := range all {
		if v.Path == rel {
			out = append(out, v)
		}
	}
	return out, nil
}

// Open returns the content of version id.
func (s *Local) Open(id string) (io.ReadCloser, Version, error) {
	all, err := s.All()
	if err != nil {
		return nil, Version{}, err
	}
	for _, v := range all {
		if v.ID == id {
			f, err := os.Open(s.blobPath(v.SHA256))
			if errors.Is(err, fs.ErrNotExist) {
				return nil, Version{}, fmt.Errorf("versions: open %s: %w", id, ErrNotFound)
			}
			if err != nil {
				return nil, Version{}, fmt.Errorf("versions: open %s: %w", id, err)
			}
			return f, v, nil
		}
	}
	return nil, Version{}, fmt.Errorf("versions: open %s: %w", id, ErrNotFound)
}

// Prune removes the versions kept longer ago than maxAge (0: none by age),
// then the oldest ones while the store holds more than maxBytes of
// contents (0: no cap), and the contents no version uses any more.
func (s *Local) Prune(maxAge time.Duration, maxBytes int64) (PruneResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all, err := s.readIndexLocked()
	if err != nil {
		return PruneResult{}, fmt.Errorf("versions: prune: %w", err)
	}
	SortNewestFirst(all)
	cut := s.now().Add(-maxAge)
	var keep []Version
	var res PruneResult
	for _, v := range all {
		if maxAge > 0 && v.Kept.Before(cut) {
			res.Removed++
			res.RemovedBytes += v.Size
			continue
		}
		keep = append(keep, v)
	}
	// The cap counts each content once; drop the oldest versions until
	// what the rest uses fits.
	if maxBytes > 0 {
		used := map[string]int64{}
		var total int64
		for _, v := range keep {
			if _, ok := used[v.SHA256]; !ok {
				used[v.SHA256] = v.Size
				total += v.Size
			}
		}
		refs := map[string]int{}
		for _, v := range keep {
			refs[v.SHA256]++
		}
		for len(keep) > 0 && total > maxBytes {
			v := keep[len(keep)-1]
			keep = keep[:len(keep)-1]
			res.Removed++
			res.RemovedBytes += v.Size
			if refs[v.SHA256]--; refs[v.SHA256] == 0 {
				total -= v.Size
			}
		}
	}
	if res.Removed > 0 {
		oldestFirst := make([]Version, 0, len(keep))
		for i := len(keep) - 1; i >= 0; i-- {
			oldestFirst = append(oldestFirst, keep[i])
		}
		if err := jsonl.Write(filepath.Join(s.dir, indexName), oldestFirst); err != nil {
			return PruneResult{}, fmt.Errorf("versions: prune: %w", err)
		}
	}
	inUse := map[string]bool{}
	for _, v := range keep {
		inUse[v.SHA256] = true
	}
	var kept int64
	err = filepath.WalkDir(filepath.Join(s.dir, blobsDir), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if inUse[d.Name()] {
			if info, err := d.Info(); err == nil {
				kept += info.Size()
			}
			return nil
		}
		return os.Remove(p)
	})
	if err != nil {
		return PruneResult{}, fmt.Errorf("versions: prune: %w", err)
	}
	res.Kept, res.KeptBytes = len(keep), kept
	return res, nil
}

// hashFile returns the SHA-256 and size of the file at p.
func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// copyFile copies src to a new dst (replacing a leftover), synced, with
// src's modification time.
func copyFile(src, dst string) error {
	_ = os.Remove(dst)
	if err := copyFileExcl(src, dst, 0o600); err != nil {
		return err
	}
	if st, err := os.Stat(src); err == nil {
		_ = os.Chtimes(dst, st.ModTime(), st.ModTime())
	}
	return nil
}

// copyFileExcl copies src to dst, which must not exist, and syncs it.
func copyFileExcl(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(dst)
	}
	return err
}

// sameFile reports whether a and b are the same file (inode).
func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}
