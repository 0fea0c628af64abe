package syncer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/basicmachines-co/bm-agent/agent/versions"
)

// How a conflict is settled (see [Engine.ResolveConflict]).
const (
	KeepMine   = "mine"   // this device's version becomes the note; the other goes
	KeepTheirs = "theirs" // the other version becomes the note; this device's goes
	KeepBoth   = "both"   // the conflict file becomes a plain note next to it
)

// Errors of [Engine.ResolveConflict].
var (
	// ErrNoSuchConflict: the note has no conflict file (or not the one
	// named).
	ErrNoSuchConflict = errors.New("no such conflict")
	// ErrWhichConflict: the note has several conflict files and none was
	// named.
	ErrWhichConflict = errors.New("several conflict files: name one")
	// ErrBadKeep: the choice is not mine, theirs or both, or cannot be
	// made (mine, with no note left to keep).
	ErrBadKeep = errors.New("cannot keep that")
)

// Resolution is what settling a conflict did.
type Resolution struct {
	Note     string // the note the conflict was about (slash-separated, relative)
	Conflict string // the conflict file settled
	// Kept is the plain note the conflict file became (KeepBoth).
	Kept string
	// Removed are the files no longer in the folder (each kept in the
	// version store when versions are on).
	Removed []string
	// Versions are the versions kept in the local version store.
	Versions []versions.Version
}

// ResolveConflict settles the conflict of p (a note, or one of its
// conflict files; conflict names the conflict file when the note has
// several) by keeping keep (KeepMine, KeepTheirs, KeepBoth), between
// passes. This device's version is the note, unless the conflict file is
// this device's own (named after it: its version lost to the bucket's);
// then the note is the other version. Whatever it replaces or removes is
// kept in the local version store when versions are on. The next pass
// takes the result to the bucket.
func (e *Engine) ResolveConflict(ctx context.Context, p, conflict, keep string) (Resolution, error) {
	passMu.Lock()
	defer passMu.Unlock()
	if err := ctx.Err(); err != nil {
		return Resolution{}, fmt.Errorf("syncer: resolve: %w", err)
	}
	var store *versions.Local
	if e.keepVersions.Load() {
		store = e.localVersions
	}
	return ResolveConflictIn(e.cfg.LocalDir, store, e.device, p, conflict, keep, e.log)
}

// ResolveConflictIn is [Engine.ResolveConflict] on the folder root, with
// the version store store (nil: versions are off, nothing is kept), for
// the device self (its conflict-file label). The caller keeps passes out
// while it runs.
func ResolveConflictIn(root string, store *versions.Local, self, p, conflict, keep string, log *slog.Logger) (Resolution, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch keep {
	case KeepMine, KeepTheirs, KeepBoth:
	default:
		return Resolution{}, fmt.Errorf("syncer: resolve: %w: %q (want mine, theirs or both)", ErrBadKeep, keep)
	}
	c, err := findConflict(root, p, conflict)
	if err != nil {
		return Resolution{}, fmt.Errorf("syncer: resolve: %w", err)
	}
	// What to do with the files: the note stays (mine, usually), or the
	// conflict file's version replaces it (theirs, usually).
	action := keep
	if ownConflict(c.Device, self) && keep != KeepBoth {
		action = map[string]string{KeepMine: KeepTheirs, KeepTheirs: KeepMine}[keep]
	}
	r := Resolution{Note: c.Original, Conflict: c.Path}
	noteOS := filepath.Join(root, filepath.FromSlash(c.Original))
	conflictOS := filepath.Join(root, filepath.FromSlash(c.Path))
	_, nerr := os.Lstat(noteOS)
	noteThere := nerr == nil
	switch action {
	case KeepMine:
		if !noteThere {
			return Resolution{}, fmt.Errorf("syncer: resolve %s: %w: the note is not there to keep (keep the conflict file's version, or both, for %s)", c.Original, ErrBadKeep, c.Path)
		}
		v, err := removeKept(store, conflictOS, c.Original)
		if err != nil {
			return Resolution{}, fmt.Errorf("syncer: resolve %s: remove %s: %w", c.Original, c.Path, err)
		}
		r.Versions = v
		r.Removed = []string{c.Path}
	case KeepTheirs:
		var capt *versions.Capture
		if noteThere && store != nil {
			if capt, err = store.Begin(noteOS, c.Original, versions.ReasonResolved); err != nil {
				return Resolution{}, fmt.Errorf("syncer: resolve %s: keep the note: %w", c.Original, err)
			}
		}
		if err := os.Rename(conflictOS, noteOS); err != nil {
			if capt != nil {
				capt.Abort()
			}
			return Resolution{}, fmt.Errorf("syncer: resolve %s: %w", c.Original, err)
		}
		touch(noteOS) // a change for the next pass, whatever the conflict file's time
		if capt != nil {
			v, err := capt.Commit()
			if err != nil {
				return Resolution{}, fmt.Errorf("syncer: resolve %s: keep the note: %w", c.Original, err)
			}
			r.Versions = []versions.Version{v}
		}
		r.Removed = []string{c.Path}
	case KeepBoth:
		kept, err := renameFree(root, c)
		if err != nil {
			return Resolution{}, fmt.Errorf("syncer: resolve %s: keep both: %w", c.Original, err)
		}
		touch(filepath.Join(root, filepath.FromSlash(kept)))
		r.Kept = kept
		r.Removed = []string{}
	}
	log.Info("settled a conflict", "file", r.Note, "conflict", r.Conflict, "keep", keep,
		"kept_as", r.Kept, "versions_kept", len(r.Versions))
	return r, nil
}

// ownConflict reports whether a conflict file labelled device is the
// version of the device labelled self ("laptop", or "laptop-1" when a
// name was taken).
func ownConflict(device, self string) bool {
	if self == "" {
		return false
	}
	if device == self {
		return true
	}
	n, ok := strings.CutPrefix(device, self+"-")
	if !ok || n == "" {
		return false
	}
	for _, r := range n {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// findConflict finds the conflict meant: p is a conflict file, or a note
// whose conflict files are in its folder (conflict, if set, names one).
func findConflict(root, p, conflict string) (Conflict, error) {
	p, err := CleanPath(p)
	if err != nil {
		return Conflict{}, err
	}
	note := p
	if c, ok := parseConflictName(p); ok {
		note = c.Original
		if conflict == "" {
			conflict = p
		}
	}
	if conflict != "" {
		cp, err := CleanPath(conflict)
		if err != nil {
			return Conflict{}, err
		}
		if !strings.Contains(cp, "/") && strings.Contains(note, "/") {
			cp = path.Dir(note) + "/" + cp // a bare file name: next to the note
		}
		c, ok := parseConflictName(cp)
		if !ok || c.Original != note {
			return Conflict{}, fmt.Errorf("%w: %s is not a conflict file of %s", ErrNoSuchConflict, cp, note)
		}
		if st, err := os.Lstat(filepath.Join(root, filepath.FromSlash(cp))); err != nil || !st.Mode().IsRegular() {
			return Conflict{}, fmt.Errorf("%w: %s is not in the folder", ErrNoSuchConflict, cp)
		}
		return c, nil
	}
	found, err := ConflictsOf(root, note)
	if err != nil {
		return Conflict{}, err
	}
	switch len(found) {
	case 0:
		return Conflict{}, fmt.Errorf("%w: %s has no conflict file", ErrNoSuchConflict, note)
	case 1:
		return found[0], nil
	}
	names := make([]string, len(found))
	for i, c := range found {
		names[i] = path.Base(c.Path)
	}
	return Conflict{}, fmt.Errorf("%w: %s has %d: %s", ErrWhichConflict, note, len(found), strings.Join(names, ", "))
}

// ConflictsOf lists the conflict files of the note p (slash-separated,
// relative to root) in its folder, oldest first.
func ConflictsOf(root, p string) ([]Conflict, error) {
	dir := path.Dir(p)
	entries, err := os.ReadDir(filepath.Join(root, filepath.FromSlash(dir)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("conflicts of %s: %w", p, err)
	}
	var out []Conflict
	for _, ent := range entries {
		if !ent.Type().IsRegular() {
			continue
		}
		rel := ent.Name()
		if dir != "." {
			rel = dir + "/" + rel
		}
		if c, ok := parseConflictName(rel); ok && c.Original == p {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].Path < out[j].Path
	})
	return out, nil
}

// removeKept removes the file at osPath, moving it into store as a
// version of the note rel when store is set.
func removeKept(store *versions.Local, osPath, rel string) ([]versions.Version, error) {
	if store == nil {
		return nil, os.Remove(osPath)
	}
	c, err := store.Take(osPath, rel, versions.ReasonResolved)
	if err != nil {
		return nil, err
	}
	v, err := c.Commit()
	if err != nil {
		return nil, err
	}
	return []versions.Version{v}, nil
}

// plainName is the i-th name KeepBoth tries for the conflict file c: the
// note's name with whose version it is, "dir/note (from laptop).md", then
// "dir/note (from laptop 2).md" and so on.
func plainName(c Conflict, i int) string {
	dir, file := path.Split(c.Original)
	ext := path.Ext(file)
	if ext == file {
		ext = ""
	}
	who := c.Device
	if i > 1 {
		who = fmt.Sprintf("%s %d", who, i)
	}
	return dir + strings.TrimSuffix(file, ext) + " (from " + who + ")" + ext
}

// renameFree renames the conflict file c to the first of its plain names
// (plainName) that is free; it never replaces a file. It returns the name
// used.
func renameFree(root string, c Conflict) (string, error) {
	from := filepath.Join(root, filepath.FromSlash(c.Path))
	for i := 1; i < 1000; i++ {
		name := plainName(c, i)
		to := filepath.Join(root, filepath.FromSlash(name))
		err := os.Link(from, to) // fails if taken: nothing is replaced
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			// No hard links here: check, then rename (a writer of that
			// very name in between is the only risk left).
			if _, serr := os.Lstat(to); serr == nil {
				continue
			}
			if err := os.Rename(from, to); err != nil {
				return "", err
			}
			return name, nil
		}
		if err := os.Remove(from); err != nil {
			_ = os.Remove(to)
			return "", err
		}
		return name, nil
	}
	return "", fmt.Errorf("no free name like %s", plainName(c, 1))
}

// touch sets the file's modification time to now, so the next pass sees
// it as changed whatever time it had.
func touch(osPath string) {
	now := time.Now()
	_ = os.Chtimes(osPath, now, now)
}
