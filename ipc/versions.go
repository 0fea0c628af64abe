package ipc

import "time"

// Routes of the version store.
const (
	// PathVersions answers GET with the kept versions of one note
	// (?path=P), or with the notes deleted since a time and not back
	// (?deleted=1&since=RFC3339).
	PathVersions = "/v0/versions"
	// PathRestore answers POST (a [RestoreRequest]) by bringing kept
	// versions back into the notes folder.
	PathRestore = "/v0/restore"
)

// Sides and reasons of a [Version].
const (
	VersionSideLocal = "local" // kept from the notes folder of the device that kept it
	VersionSideCloud = "cloud" // kept from the bucket (every device sees these)

	ReasonOverwritten = "overwritten" // a pass replaced it with the other side's version
	ReasonDeleted     = "deleted"     // a pass deleted it, as it was deleted on the other side
	ReasonConflict    = "conflict"    // it changed while a pass replaced it; also kept as a conflict file
	ReasonRestored    = "restored"    // a restore replaced it
	ReasonResolved    = "resolved"    // settling a conflict replaced or removed it (the version not chosen)
)

// Version is one kept version of a note.
type Version struct {
	// ID names the version among the note's versions (for restore).
	ID   string `json:"id"`
	Path string `json:"path"`
	Side string `json:"side"`
	Size int64  `json:"size"`
	// ModTime is the file's modification time when it was kept (local
	// versions only).
	ModTime time.Time `json:"mtime,omitzero"`
	// Kept is when the version was replaced or deleted, and kept.
	Kept   time.Time `json:"kept"`
	Reason string    `json:"reason"`
	Device string    `json:"device,omitempty"`
}

// Versions is the answer to GET /v0/versions.
type Versions struct {
	// Path is the note asked about ("" for the deleted notes).
	Path string `json:"path,omitempty"`
	// Folder is the notes folder the paths are relative to.
	Folder   string    `json:"folder"`
	Versions []Version `json:"versions"`
	// DaysKept is how long versions are kept (0: versions are off).
	DaysKept int `json:"days_kept"`
}

// VersionsRequest asks for the versions of Path, or with Deleted for the
// notes deleted since Since.
type VersionsRequest struct {
	Path    string
	Deleted bool
	Since   time.Time
}

// RestoreRequest is the body of POST /v0/restore: a version of Path (the
// one with ID Version, else the one the note had At, else the newest), or
// with Deleted every note deleted since Since.
type RestoreRequest struct {
	Path    string    `json:"path,omitempty"`
	Version string    `json:"version,omitempty"`
	At      time.Time `json:"at,omitzero"`
	Deleted bool      `json:"deleted,omitempty"`
	Since   time.Time `json:"since,omitzero"`
}

// RestoreResult is the answer to POST /v0/restore: the versions brought
// back (the notes they replaced are kept as versions first). The next
// pass takes them to the bucket.
type RestoreResult struct {
	Folder   string    `json:"folder"`
	Restored []Version `json:"restored"`
}
