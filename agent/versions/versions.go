// Package versions keeps every version of a note that a sync pass replaces
// or deletes, so that nothing a person wrote is lost: the notes folder's
// versions in a content-addressed store under the agent's state dir
// ([Local]: a note kept twice costs once), the bucket's in a prefix of the
// bucket that sync never sees ([Cloud]: every device of the tenant can read
// them). Both stores list a note's versions, open one to restore it, and
// prune by age and by a size cap.
package versions

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sort"
	"time"
)

// Sides of a [Version]: where the version lived when it was kept.
const (
	SideLocal = "local" // the notes folder of the device that kept it
	SideCloud = "cloud" // the bucket
)

// Reasons a version was kept.
const (
	// ReasonOverwritten: a pass replaced it with the other side's version.
	ReasonOverwritten = "overwritten"
	// ReasonDeleted: a pass deleted it, because it was deleted on the
	// other side.
	ReasonDeleted = "deleted"
	// ReasonConflict: it changed while a pass was replacing it (after the
	// pass had listed it); it is also kept as a conflict file.
	ReasonConflict = "conflict"
	// ReasonRestored: a restore replaced it with an older version.
	ReasonRestored = "restored"
	// ReasonResolved: settling a conflict replaced or removed it (the
	// version not chosen).
	ReasonResolved = "resolved"
)

// Reasons lists the reasons a version can be kept for.
func Reasons() []string {
	return []string{ReasonOverwritten, ReasonDeleted, ReasonConflict, ReasonRestored, ReasonResolved}
}

// Errors of the stores.
var (
	// ErrNotFound: no version with that ID (it may have been pruned).
	ErrNotFound = errors.New("no such version")
	// ErrChanged: the file or object is no longer what the caller saw, so
	// the version it meant to keep is not the one there now.
	ErrChanged = errors.New("changed since it was listed")
)

// Version is one kept version of a note.
type Version struct {
	// ID names the version among the note's versions: "l" (local) or "c"
	// (cloud) and 8 hex digits.
	ID string `json:"id"`
	// Path is the note, slash-separated, relative to the folder and the
	// bucket root.
	Path string `json:"path"`
	Side string `json:"side"`
	Size int64  `json:"size"`
	// ModTime is the file's own modification time when it was kept (local
	// versions; zero for the bucket's).
	ModTime time.Time `json:"mtime,omitzero"`
	// Kept is when the version was kept.
	Kept time.Time `json:"kept"`
	// Reason is one of the Reason constants.
	Reason string `json:"reason"`
	// Device is the device that kept it.
	Device string `json:"device,omitempty"`
	// SHA256 is the content's hash (local versions).
	SHA256 string `json:"sha256,omitempty"`

	key string // cloud: the object key
}

// PruneResult says what a prune removed and what is left.
type PruneResult struct {
	Removed      int   // versions removed
	RemovedBytes int64 // their size
	Kept         int   // versions left
	KeptBytes    int64 // the store's size after the prune (local: unique contents)
}

// newID returns a fresh version ID for side.
func newID(side string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	p := "l"
	if side == SideCloud {
		p = "c"
	}
	return p + hex.EncodeToString(b)
}

// SortNewestFirst orders versions by the time they were kept, newest
// first, then by path and ID so the order is stable.
func SortNewestFirst(vs []Version) {
	sort.Slice(vs, func(i, j int) bool {
		if !vs[i].Kept.Equal(vs[j].Kept) {
			return vs[i].Kept.After(vs[j].Kept)
		}
		if vs[i].Path != vs[j].Path {
			return vs[i].Path < vs[j].Path
		}
		return vs[i].ID < vs[j].ID
	})
}

// validReason reports whether r is one of the Reason constants.
func validReason(r string) bool {
	for _, x := range Reasons() {
		if r == x {
			return true
		}
	}
	return false
}
