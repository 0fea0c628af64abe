package syncer

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"slices"

	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/accounting"
	"github.com/rclone/rclone/fs/hash"
	"github.com/rclone/rclone/fs/operations"

	"github.com/basicmachines-co/bm-agent/agent/versions"
)

// A quick pass: a pass that costs what its change costs.
//
// A full pass lists the whole folder and the whole bucket, so one edited
// note costs as much as a tree of them. When the caller knows which paths
// changed, and that nothing else did (the watcher's batch for the local
// side, PassOptions.Paths; the keys of the tenant's change events for the
// bucket, PassOptions.RemotePaths; both only while the events are live),
// the engine first tries to sync just those.
//
// A local path must be a file created or edited here (not deleted, not a
// folder) whose bucket object is still exactly what the last pass left
// there (one listing of that key); it is uploaded through the pass's
// guards (the replaced version kept, the write conditional on that
// object). A bucket key must be an object created or replaced in the
// bucket whose local file is still exactly what the last pass left (or
// there is none, and was none); it is downloaded through the guards (the
// replaced file kept in the version store, and kept as a conflict file
// too if it changed at the last moment). Both listings then get the
// path's entries, as bisync would have written them.
//
// Anything else (a delete on either side, a path that changed on both, a
// name that needs encoding, a path the last pass did not see as it is
// now, more than MaxQuickPaths paths) and the full pass runs instead,
// exactly as without the hint. The full pass stays the safety net on its
// schedule.

// MaxQuickPaths bounds the paths a quick pass takes (PassOptions.Paths
// and RemotePaths together): a pass given more runs in full.
const MaxQuickPaths = 64

// quickUpload is one file a quick pass uploads.
type quickUpload struct {
	path   string
	info   fs.FileInfo
	remote objInfo // the object there now (nil: none)
}

// quickDownload is one object a quick pass downloads.
type quickDownload struct {
	path   string
	info   fs.FileInfo // the local file there now (nil: none)
	remote objInfo     // the object as listed
}

// quickPass syncs the local changes at local and the bucket's at remote
// alone when they are only edits made on one side (see the comment
// above). handled is false when it did nothing and the full pass must
// run; it is true when every path is in step (err then says what failed,
// with the paths that did sync recorded). The bucket paths it wrote go
// to res.CloudWrites.
func (e *Engine) quickPass(ctx context.Context, pc *passCounter, ps passSettings, local, remote []string, res *Result, log *slog.Logger) (handled bool, err error) {
	if len(local)+len(remote) == 0 || len(local)+len(remote) > MaxQuickPaths || ps.dryRun {
		return false, nil
	}
	full := func(why, path string) (bool, error) {
		log.Debug("quick pass: the full pass instead", "why", why, "file", path)
		return false, nil
	}
	g := newGuardPass(e, log, e.passStamp())
	g.ignore = ps.ignore
	want := map[string]bool{}
	for _, p := range local {
		want[p] = true
	}
	var remotePaths []string
	for _, key := range remote {
		if versions.IsVersionKey(key) {
			continue // the version store's, never synced
		}
		p := g.cloudEnc.ToStandardPath(key)
		if g.cloudEnc.FromStandardPath(p) != key || g.localEnc.FromStandardPath(p) != p {
			return full("name needs encoding", key)
		}
		if want[p] {
			return full("changed on both sides", p)
		}
		remotePaths = append(remotePaths, p)
	}
	for _, p := range remotePaths {
		want[p] = true
	}
	prior1, err := listingEntriesOf(e.listing1, want)
	if err != nil {
		return full("no listing", "")
	}
	prior2, err := listingEntriesOf(e.listing2, want)
	if err != nil {
		return full("no listing", "")
	}
	var ups []quickUpload
	for _, p := range local {
		if g.localEnc.ToStandardPath(p) != p {
			// a name rclone's local backend spells another way (bytes that
			// are not UTF-8, say): the listings know it by that spelling
			return full("name needs encoding", p)
		}
		if ps.ignore.ignored(ctx, p, false) || partialSuffix.MatchString(p) {
			continue
		}
		info, err := os.Lstat(g.localPath(p))
		if errors.Is(err, fs.ErrNotExist) {
			if _, synced := prior1[p]; synced {
				return full("deleted here", p) // the full pass, with its checks
			}
			continue // made and gone between passes, or a folder's event
		}
		if err != nil {
			return full("cannot stat: "+err.Error(), p)
		}
		if info.IsDir() {
			continue // a folder's event: its files have their own
		}
		if !info.Mode().IsRegular() {
			return full("not a file", p)
		}
		old, synced := prior1[p]
		if synced && old.size == info.Size() && old.time.Equal(info.ModTime()) {
			continue // as the last pass left it
		}
		ro, err := e.listedObject(ctx, p)
		if err != nil {
			return full("bucket: "+err.Error(), p)
		}
		was, listed := prior2[p]
		same := ro == nil && !listed || ro != nil && listed && ro.Size() == was.size && ro.ModTime(ctx).Equal(was.time)
		if !same {
			return full("changed in the bucket too", p) // the full pass decides
		}
		ups = append(ups, quickUpload{path: p, info: info, remote: ro})
	}
	var downs []quickDownload
	for _, p := range remotePaths {
		if ps.ignore.ignored(ctx, p, false) || partialSuffix.MatchString(p) {
			continue
		}
		ro, err := e.listedObject(ctx, p)
		if err != nil {
			return full("bucket: "+err.Error(), p)
		}
		was, listed := prior2[p]
		if ro == nil {
			if listed {
				return full("deleted in the bucket", p) // the full pass, with its checks
			}
			continue // made and gone between passes
		}
		if listed && ro.Size() == was.size && ro.ModTime(ctx).Equal(was.time) {
			continue // as the last pass left it (our own write, say)
		}
		info, err := os.Lstat(g.localPath(p))
		old, synced := prior1[p]
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if synced {
				return full("deleted here", p)
			}
			info = nil
		case err != nil:
			return full("cannot stat: "+err.Error(), p)
		case !info.Mode().IsRegular():
			return full("not a file here", p)
		case !synced || old.size != info.Size() || !old.time.Equal(info.ModTime()):
			return full("changed here too", p) // the full pass decides
		}
		downs = append(downs, quickDownload{path: p, info: info, remote: ro})
	}
	if len(ups)+len(downs) == 0 {
		log.Debug("quick pass: nothing to sync", "paths", len(local), "keys", len(remote))
		return true, nil
	}

	defer pc.addGuard(g)
	localFs, cloud := g.wrap(ctx)
	cctx, _ := engineConfig(accounting.WithStatsGroup(ctx, pc.group))
	set1, set2 := map[string]*listingEntry{}, map[string]*listingEntry{}
	var failed error
	for _, u := range ups {
		if u.remote != nil {
			// what the pass expects there: the write is conditional on it,
			// and that version is kept before it is replaced
			etag := ""
			if li, ok := u.remote.(listedInfo); ok {
				etag = li.etag
			}
			g.setState(sideC, u.path, pathState{etag: etag, size: u.remote.Size()})
		}
		lo, err := e.local.NewObject(cctx, u.path)
		if err != nil {
			failed = errors.Join(failed, err)
			continue
		}
		if lo.Size() != u.info.Size() || !lo.ModTime(cctx).Equal(u.info.ModTime()) {
			log.Debug("quick pass: changed again", "file", u.path, "size", lo.Size(), "was", u.info.Size(), "mtime", lo.ModTime(cctx), "was_mtime", u.info.ModTime())
			failed = errors.Join(failed, errQuickChanged) // edited again: the next pass takes it
			continue
		}
		if _, err := operations.Copy(cctx, cloud, nil, u.path, lo); err != nil {
			failed = errors.Join(failed, err)
			continue
		}
		now, err := e.listedObject(ctx, u.path)
		if err != nil || now == nil {
			failed = errors.Join(failed, err, errQuickChanged)
			continue
		}
		set1[u.path] = &listingEntry{size: u.info.Size(), time: u.info.ModTime()}
		set2[u.path] = &listingEntry{size: now.Size(), time: now.ModTime(ctx)}
		res.CloudWrites = append(res.CloudWrites, g.cloudKey(u.path))
	}
	for _, d := range downs {
		if err := e.quickGet(cctx, g, localFs, d); err != nil {
			failed = errors.Join(failed, err)
			continue
		}
		lo, err := e.local.NewObject(cctx, d.path)
		if err != nil {
			failed = errors.Join(failed, err)
			continue
		}
		set1[d.path] = &listingEntry{size: lo.Size(), time: lo.ModTime(cctx)}
		set2[d.path] = &listingEntry{size: d.remote.Size(), time: d.remote.ModTime(ctx)}
	}
	if err := setListingEntries(e.listing1, set1); err != nil {
		return true, err
	}
	if err := setListingEntries(e.listing2, set2); err != nil {
		return true, err
	}
	e.clearJournal() // the listings say it all now
	if failed != nil {
		// the rest (and its trouble) to the full pass
		log.Info("quick pass: some files left to the full pass", "synced", len(set1), "of", len(ups), "err", failed)
		return false, nil
	}
	log.Debug("quick pass", "synced", len(set1), "paths", len(local), "keys", len(remote))
	return true, nil
}

// quickGet downloads d's object into the folder through the guarded
// local file system localFs: the file there is expected as d found it
// (its version is kept before it is replaced, and kept as a conflict
// file too if it changed since). The object must still be the listed
// one (its size and MD5 compared with the listing's).
func (e *Engine) quickGet(ctx context.Context, g *guardPass, localFs rfs.Fs, d quickDownload) error {
	if d.info != nil {
		g.setState(sideL, d.path, pathState{size: d.info.Size(), modTime: d.info.ModTime()})
	}
	obj, err := e.remote.NewObject(ctx, d.path)
	if notThere(err) {
		return errQuickChanged
	}
	if err != nil {
		return err
	}
	if obj.Size() != d.remote.Size() {
		return errQuickChanged
	}
	if want, _ := d.remote.Hash(ctx, hash.MD5); want != "" {
		if sum, err := obj.Hash(ctx, hash.MD5); err == nil && sum != "" && sum != want {
			return errQuickChanged
		}
	}
	_, err = operations.Copy(ctx, localFs, nil, d.path, obj)
	return err
}

// errQuickChanged: a file changed again while the quick pass took it.
var errQuickChanged = errors.New("changed again during the pass")

// listingEntriesOf reads the entries of the names in want from a bisync
// listing, parsing only their lines (a missing listing fails).
func listingEntriesOf(path string, want map[string]bool) (map[string]listingEntry, error) {
	return readListingWhere(path, listingNames(slices.Collect(maps.Keys(want))))
}
