package syncer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/basicmachines-co/bm-agent/agent/versions"
)

// Errors of the version routes.
var (
	// ErrNoSuchVersion: no kept version matches (none kept, an unknown
	// ID, or none replaced after the time asked for).
	ErrNoSuchVersion = errors.New("no such version")
	// ErrBadPath: the path is not a note path inside the folder.
	ErrBadPath = errors.New("not a path inside the notes folder")
)

// CleanPath turns a relative note path as a person types it (slash or OS
// separators, "./" or "a/../" parts) into the engine's form:
// slash-separated, never escaping the folder, never the version store.
func CleanPath(p string) (string, error) {
	p = strings.TrimSpace(filepath.ToSlash(p))
	if p == "" || path.IsAbs(p) || filepath.IsAbs(p) {
		return "", fmt.Errorf("%w: %q (give it relative to the folder)", ErrBadPath, p)
	}
	c := path.Clean(p)
	if c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%w: %q", ErrBadPath, p)
	}
	if versions.IsVersionKey(c) || versions.IsVersionKey(c+"/") {
		return "", fmt.Errorf("%w: %q is the bucket's version store", ErrBadPath, p)
	}
	return c, nil
}

// VersionsOf lists the kept versions of the note p on both sides, newest
// first.
func (e *Engine) VersionsOf(ctx context.Context, p string) ([]versions.Version, error) {
	p, err := CleanPath(p)
	if err != nil {
		return nil, fmt.Errorf("syncer: versions: %w", err)
	}
	local, err := e.localVersions.List(p)
	if err != nil {
		return nil, fmt.Errorf("syncer: versions of %s: %w", p, err)
	}
	g := newGuardPass(e, e.log, "")
	cloud, err := e.cloudVersions.List(ctx, g.cloudKey(p))
	if err != nil {
		return nil, fmt.Errorf("syncer: versions of %s: %w", p, err)
	}
	for i := range cloud {
		cloud[i].Path = p
	}
	all := append(local, cloud...)
	versions.SortNewestFirst(all)
	return all, nil
}

// DeletedSince lists, for every note deleted (on either side) since t and
// not in the folder now, its newest deleted version.
func (e *Engine) DeletedSince(ctx context.Context, t time.Time) ([]versions.Version, error) {
	local, err := e.localVersions.All()
	if err != nil {
		return nil, fmt.Errorf("syncer: deleted notes: %w", err)
	}
	cloud, err := e.cloudVersions.All(ctx)
	if err != nil {
		return nil, fmt.Errorf("syncer: deleted notes: %w", err)
	}
	g := newGuardPass(e, e.log, "")
	for i := range cloud {
		cloud[i].Path = g.cloudEnc.ToStandardPath(cloud[i].Path)
	}
	all := append(local, cloud...)
	versions.SortNewestFirst(all)
	seen := map[string]bool{}
	var out []versions.Version
	for _, v := range all {
		if v.Kept.Before(t) {
			break
		}
		if seen[v.Path] {
			continue
		}
		seen[v.Path] = true // the newest version decides: deleted, or replaced since
		if v.Reason != versions.ReasonDeleted {
			continue
		}
		if _, err := os.Lstat(g.localPath(v.Path)); err == nil {
			continue // back already
		}
		out = append(out, v)
	}
	return out, nil
}

// Restore brings a kept version of the note p back into the notes folder
// (the next pass takes it to the bucket): version id, or with id "" the
// version the note had at time at (the first one replaced after it), or
// with neither the newest kept version. The note there now is kept as a
// version first. It returns the version restored.
func (e *Engine) Restore(ctx context.Context, p, id string, at time.Time) (versions.Version, error) {
	p, err := CleanPath(p)
	if err != nil {
		return versions.Version{}, fmt.Errorf("syncer: restore: %w", err)
	}
	vs, err := e.VersionsOf(ctx, p)
	if err != nil {
		return versions.Version{}, fmt.Errorf("syncer: restore: %w", err)
	}
	v, err := pickVersion(vs, p, id, at)
	if err != nil {
		return versions.Version{}, fmt.Errorf("syncer: restore: %w", err)
	}
	passMu.Lock()
	defer passMu.Unlock()
	if err := e.restoreLocked(ctx, v); err != nil {
		return versions.Version{}, fmt.Errorf("syncer: restore %s: %w", p, err)
	}
	return v, nil
}

// pickVersion chooses the version Restore brings back.
func pickVersion(vs []versions.Version, p, id string, at time.Time) (versions.Version, error) {
	if len(vs) == 0 {
		return versions.Version{}, fmt.Errorf("%w: no version of %s is kept", ErrNoSuchVersion, p)
	}
	switch {
	case id != "":
		for _, v := range vs {
			if v.ID == id {
				return v, nil
			}
		}
		return versions.Version{}, fmt.Errorf("%w: %s has no version %s (`bm-agent versions %s` lists them)", ErrNoSuchVersion, p, id, p)
	case !at.IsZero():
		// vs is newest first: the last one kept after at was the note then.
		var pick *versions.Version
		for i := range vs {
			if vs[i].Kept.After(at) {
				pick = &vs[i]
			}
		}
		if pick == nil {
			return versions.Version{}, fmt.Errorf("%w: %s was not replaced or deleted since %s, so the note in the folder is the one it had then",
				ErrNoSuchVersion, p, at.Local().Format(time.DateTime))
		}
		return *pick, nil
	}
	return vs[0], nil
}

// RestoreDeleted brings back every note deleted since t (DeletedSince).
func (e *Engine) RestoreDeleted(ctx context.Context, t time.Time) ([]versions.Version, error) {
	vs, err := e.DeletedSince(ctx, t)
	if err != nil {
		return nil, err
	}
	passMu.Lock()
	defer passMu.Unlock()
	var done []versions.Version
	for _, v := range vs {
		if err := e.restoreLocked(ctx, v); err != nil {
			return done, fmt.Errorf("syncer: restore %s: %w", v.Path, err)
		}
		done = append(done, v)
	}
	return done, nil
}

// restoreLocked writes version v into the folder (passMu held).
func (e *Engine) restoreLocked(ctx context.Context, v versions.Version) error {
	var r io.ReadCloser
	var err error
	g := newGuardPass(e, e.log, "")
	if v.Side == versions.SideLocal {
		r, _, err = e.localVersions.Open(v.ID)
	} else {
		r, _, err = e.cloudVersions.Open(ctx, g.cloudKey(v.Path), v.ID)
	}
	if err != nil {
		return err
	}
	defer r.Close()
	dst := g.localPath(v.Path)
	if st, err := os.Lstat(dst); err == nil {
		if st.IsDir() {
			return fmt.Errorf("%s is a folder here: move it away first", v.Path)
		}
		if _, err := e.localVersions.KeepFile(dst, v.Path, versions.ReasonRestored); err != nil {
			return fmt.Errorf("keep the note there now: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".bm-restore-"+hex.EncodeToString(b))
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	e.log.Info("restored a version of a note", "file", v.Path, "version", v.ID, "side", v.Side, "kept", v.Kept, "reason", v.Reason)
	return nil
}

// PruneVersions prunes both version stores (see versions.Local.Prune),
// and logs what went.
func (e *Engine) PruneVersions(ctx context.Context, maxAge time.Duration, maxBytes int64) (local, cloud versions.PruneResult, err error) {
	local, lerr := e.localVersions.Prune(maxAge, maxBytes)
	cloud, cerr := e.cloudVersions.Prune(ctx, maxAge, maxBytes)
	if local.Removed+cloud.Removed > 0 {
		e.log.Info("pruned kept versions", "max_age", maxAge, "max_bytes", maxBytes,
			"local_removed", local.Removed, "local_removed_bytes", local.RemovedBytes, "local_kept", local.Kept,
			"cloud_removed", cloud.Removed, "cloud_removed_bytes", cloud.RemovedBytes, "cloud_kept", cloud.Kept)
	}
	return local, cloud, errors.Join(lerr, cerr)
}
