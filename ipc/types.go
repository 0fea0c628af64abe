package ipc

import (
	"encoding/json"
	"time"
)

// Login methods of [LoginOptions] and [Status.LoginMethod].
const (
	LoginBrowser = "browser" // authorization code + PKCE on a loopback redirect
	LoginDevice  = "device"  // device authorization grant: a code to type elsewhere
)

// Routes of the local API.
const (
	PathStatus  = "/v0/status"
	PathSync    = "/v0/sync"
	PathLogin   = "/v0/login"
	PathLogout  = "/v0/logout"
	PathPause   = "/v0/pause"
	PathResume  = "/v0/resume"
	PathVersion = "/v0/version"
	PathWatch   = "/v0/watch"
	// PathHistory answers GET with the last passes, newest first
	// (?limit=N, default [DefaultHistoryLimit]).
	PathHistory = "/v0/history"
	// PathConflicts answers GET with the conflict files in the notes folder.
	PathConflicts = "/v0/conflicts"
)

// DefaultHistoryLimit is how many passes GET /v0/history returns by default.
const DefaultHistoryLimit = 20

// Status is the daemon's state as its clients see it (GET /v0/status).
type Status struct {
	// State is what the daemon is doing (see [State]).
	State State `json:"state"`
	// Since is when the daemon entered State.
	Since time.Time `json:"since"`
	// Code says why the daemon is in State, when there is a reason to
	// give (offline, a hold, a failed login, ...); clients key on it,
	// never on Error's text.
	Code Code `json:"code,omitempty"`
	// Error explains State and Code for a person (or the last failure);
	// never a secret.
	Error string `json:"error,omitempty"`
	// OfflineSince is when the daemon last lost the server or the
	// bucket, while it has not reached them again.
	OfflineSince   *time.Time   `json:"offline_since,omitempty"`
	LoggedIn       bool         `json:"logged_in"`
	Account        string       `json:"account,omitempty"`
	TenantID       string       `json:"tenant_id,omitempty"`
	Bucket         string       `json:"bucket,omitempty"`
	Endpoint       string       `json:"endpoint,omitempty"`
	Folder         string       `json:"folder,omitempty"`
	KeyringBackend string       `json:"keyring_backend,omitempty"`
	LastSync       *PassSummary `json:"last_sync,omitempty"`
	NextSync       *time.Time   `json:"next_sync,omitempty"`
	// LoginURL is the URL to open while a login is in progress.
	LoginURL string `json:"login_url,omitempty"`
	// LoginUserCode is the code to enter at LoginURL during a device login.
	LoginUserCode string `json:"login_user_code,omitempty"`
	// LoginMethod is LoginBrowser or LoginDevice while a login is in progress.
	LoginMethod string `json:"login_method,omitempty"`
	// SubscriptionStatus and SubscriptionTier are the account's, from the
	// tenant API (GET /tenant/status); Devices counts its active keys.
	SubscriptionStatus string `json:"subscription_status,omitempty"`
	SubscriptionTier   string `json:"subscription_tier,omitempty"`
	Devices            int    `json:"devices,omitempty"`
	// SubscribeURL is where to subscribe, in state subscription_required.
	SubscribeURL string `json:"subscribe_url,omitempty"`
	Version      string `json:"version,omitempty"`
	Paused       bool   `json:"paused"`
	// PausedUntil is when a `pause --for` ends by itself (nil: until resume).
	PausedUntil *time.Time `json:"paused_until,omitempty"`
	// Profile is the sync profile normal passes use: safe, balanced or fast.
	Profile string `json:"profile,omitempty"`
	// Hold is set while the daemon refuses to sync until the user acts
	// (too many deletes, a missing notes folder, ...).
	Hold *Hold `json:"hold,omitempty"`
	// Watcher is set when file changes cannot be watched (the inotify
	// limit, say): what happened and the fix; passes then run on the
	// interval only.
	Watcher string `json:"watcher,omitempty"`
	// Failures counts the passes that failed in a row; RetryAt is when the
	// next attempt is due (backoff with jitter).
	Failures int        `json:"failures,omitempty"`
	RetryAt  *time.Time `json:"retry_at,omitempty"`
	// NotSyncing are the files (or folders) that cannot sync for now, with
	// why and what to do; everything else syncs.
	NotSyncing []FailedItem `json:"not_syncing,omitempty"`
}

// Reasons of a [FailedItem].
const (
	FailPermission  Code = "permission"        // bm-agent may not read or write it
	FailKindClash   Code = "file_folder_clash" // a folder on one side, a file on the other
	FailNameTooLong Code = "name_too_long"     // a name longer than the file system allows
	FailBadName     Code = "bad_name"          // a name the file system cannot hold
	FailBucketFull  Code = "bucket_full"       // the bucket's quota refused its upload
	FailOther       Code = "other"
)

// FailedItem is a file or folder that cannot sync for now.
type FailedItem struct {
	Path string `json:"path"`
	// Dir: a folder, and everything in it.
	Dir bool `json:"dir,omitempty"`
	// Side is where it fails: "local" (the notes folder) or "cloud".
	Side   string `json:"side"`
	Reason Code   `json:"reason"`
	Error  string `json:"error"`
	// Advice says what to do.
	Advice string    `json:"advice"`
	Since  time.Time `json:"since"`
	// RetryAt is when bm-agent tries it again (`bm-agent sync` tries at once).
	RetryAt time.Time `json:"retry_at"`
}

// Reasons a [Hold] gives.
const (
	HoldMaxDelete       Code = "max_delete"         // more deletes than the profile allows: paused until `sync --force`
	HoldLocalMissing    Code = "local_root_missing" // the notes folder is gone (retried by itself)
	HoldLocalEmpty      Code = "local_root_empty"   // the notes folder is empty but was not (retried by itself)
	HoldResyncRequired  Code = "resync_required"    // bisync wants a resync (`sync --resync`)
	HoldAllFilesChanged Code = "all_files_changed"  // every file changed on one side (`sync --force`)
)

// Hold says why syncing stopped and what the user should do.
type Hold struct {
	Reason  Code      `json:"reason"`
	Message string    `json:"message"`
	Since   time.Time `json:"since"`
	// Deletes and Files are the counts of a max-delete hold when known:
	// Deletes of the Files the last sync saw would have been deleted.
	Deletes int `json:"deletes,omitempty"`
	Files   int `json:"files,omitempty"`
	// Side is where the deletes happened: "local" or "cloud", if known.
	Side string `json:"side,omitempty"`
	// NeedsForce: only `bm-agent sync --force` (or --resync) lifts the hold.
	NeedsForce bool `json:"needs_force,omitempty"`
}

// PassSummary describes one sync pass.
type PassSummary struct {
	Start      time.Time `json:"start"`
	DurationMS int64     `json:"duration_ms"`
	// Trigger says what started the pass: "watch", "interval", "remote",
	// "manual", "startup".
	Trigger       string `json:"trigger,omitempty"`
	Uploaded      int    `json:"uploaded"`
	Downloaded    int    `json:"downloaded"`
	DeletedLocal  int    `json:"deleted_local"`
	DeletedRemote int    `json:"deleted_remote"`
	Conflicts     int    `json:"conflicts"`
	// ConflictsArrived counts the conflict files another device made that
	// the pass brought here (Conflicts counts only the pass's own).
	ConflictsArrived int `json:"conflicts_arrived,omitempty"`
	// Quick: the pass synced the files the watcher saw change alone,
	// listing neither side (the full pass runs on its schedule).
	Quick bool `json:"quick,omitempty"`
	// EditsKept counts notes the pass did not delete because they changed
	// after it listed them (the edit wins; the next pass syncs it).
	EditsKept int `json:"edits_kept,omitempty"`
	// VersionsKept counts the versions the pass kept (see PathVersions)
	// before it replaced or deleted them.
	VersionsKept int    `json:"versions_kept,omitempty"`
	Resync       bool   `json:"resync"`
	Error        string `json:"error,omitempty"`
	// Skipped says why the pass did not run (paused, offline, ...), if so.
	Skipped string `json:"skipped,omitempty"`
	// Profile is the sync profile the pass ran with.
	Profile string `json:"profile,omitempty"`
	DryRun  bool   `json:"dry_run,omitempty"`
	Forced  bool   `json:"forced,omitempty"`
	// Cancelled: the pass was stopped (the daemon shut down); the next
	// pass recovers.
	Cancelled bool `json:"cancelled,omitempty"`
	// Offline: the pass failed because the bucket or the server could not
	// be reached.
	Offline bool `json:"offline,omitempty"`
	// Plan is what a dry run would do.
	Plan *Plan `json:"plan,omitempty"`
	// Changes are the files a real pass changed, at most
	// [MaxPassChanges] of them (the counts above are whole).
	Changes []PlanItem `json:"changes,omitempty"`
}

// MaxPassChanges bounds [PassSummary.Changes].
const MaxPassChanges = 50

// Plan is what a dry-run pass would change, per side.
type Plan struct {
	Items []PlanItem `json:"items"`
}

// Actions and sides of a [PlanItem].
const (
	ActionCopy     = "copy"     // the file is written on Side
	ActionDelete   = "delete"   // the file is deleted on Side
	ActionConflict = "conflict" // both sides changed it; both versions are kept
	ActionRename   = "rename"   // a conflict's version is renamed on Side (Path is the new name)
	ActionKeep     = "keep"     // not deleted on Side: it changed after the pass listed it (the edit wins)
	SideLocal      = "local"    // the notes folder
	SideCloud      = "cloud"    // the bucket
	SideBoth       = "both"     // a conflict: the file changed on both sides
)

// PlanItem is one change a dry run found: Action happens on Side for Path
// (slash-separated, relative to the folder and the bucket root).
type PlanItem struct {
	Action string `json:"action"`
	Side   string `json:"side"`
	Path   string `json:"path"`
}

// History is the answer to GET /v0/history: the last passes, newest first.
type History struct {
	Passes []PassSummary `json:"passes"`
}

// Conflict is one conflict file: a version of Original kept aside because
// both sides changed it.
type Conflict struct {
	// Path is the conflict file, relative to the notes folder.
	Path string `json:"path"`
	// Original is the note it is a version of.
	Original string `json:"original"`
	// Device is the conflict file name's label of whose version it is: a
	// device's, or "cloud" for the bucket's.
	Device string `json:"device"`
	// From names the device that wrote this version, by the name its
	// person gave it (device_name), when the bucket records it or it is
	// this device's own; empty when no one knows (an old upload).
	From string    `json:"from,omitempty"`
	Time time.Time `json:"time"`
	Size int64     `json:"size"`
}

// Conflicts is the answer to GET /v0/conflicts.
type Conflicts struct {
	Folder    string     `json:"folder"`
	Conflicts []Conflict `json:"conflicts"`
}

// PauseRequest is the optional body of POST /v0/pause.
type PauseRequest struct {
	// ForMS pauses for this long, then resumes by itself (also across a
	// restart); zero pauses until resumed.
	ForMS int64 `json:"for_ms,omitempty"`
}

// SyncRequest is the body of POST /v0/sync.
type SyncRequest struct {
	Resync bool `json:"resync"`
	DryRun bool `json:"dry_run"`
	// Force runs the pass past the max-delete (and all-files-changed)
	// safety checks and lifts a hold they caused.
	Force bool `json:"force,omitempty"`
	// Profile overrides the configured profile for this pass: safe,
	// balanced or fast.
	Profile string `json:"profile,omitempty"`
	// Wait makes the request block until the pass finishes and answer with
	// its summary; without it the daemon answers 202 Accepted at once.
	Wait bool `json:"wait"`
}

// LoginOptions is the optional body of POST /v0/login.
type LoginOptions struct {
	// Device asks for the device authorization grant (a code to enter on
	// another device) instead of a browser on this machine.
	Device bool `json:"device,omitempty"`
}

// LoginStart is the answer to POST /v0/login: the URL the user must open
// and, for a device login, the code to enter there.
type LoginStart struct {
	URL string `json:"url"`
	// UserCode is set for a device login.
	UserCode string `json:"user_code,omitempty"`
	// Method is LoginBrowser or LoginDevice.
	Method string `json:"method,omitempty"`
}

// VersionInfo is the answer to GET /v0/version.
type VersionInfo struct {
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
}

// ErrorBody is the body of every error answer.
type ErrorBody struct {
	Error string `json:"error"`
	// Code names a well-known error (see [ErrLoginRequired] and friends) so
	// the client can give back the same sentinel; empty otherwise.
	Code string `json:"code,omitempty"`
}

// More routes of the local API.
const (
	// PathLogs answers GET with the daemon's recent log records as JSON
	// lines (?lines=N, default [DefaultLogLines]; &follow=1 keeps the
	// stream open and sends new records as they are logged).
	PathLogs = "/v0/logs"
	// PathConfig answers GET with the agent's settings and POST (a
	// [ConfigSetRequest]) by changing one of them.
	PathConfig = "/v0/config"
	// PathMount answers GET with the mount's status and POST (a
	// [MountRequest]) by mounting the bucket.
	PathMount = "/v0/mount"
	// PathUnmount answers POST by unmounting the bucket.
	PathUnmount = "/v0/unmount"
	// PathDoctor answers GET with the daemon-side health checks.
	PathDoctor = "/v0/doctor"
)

// DefaultLogLines is how many log records GET /v0/logs returns by default.
const DefaultLogLines = 100

// Kinds of [Event].
const (
	EventSnapshot     = "snapshot"     // the first message of a watch stream: Status is the full status
	EventState        = "state"        // the status changed: Status is the new status
	EventProgress     = "progress"     // a pass is under way: Progress
	EventLogin        = "login"        // a login started: Status.LoginURL is the URL to open
	EventNotification = "notification" // something the user should see: Notification
)

// Event is one message of the watch stream (GET /v0/watch).
type Event struct {
	Kind   string  `json:"kind"`
	Status *Status `json:"status,omitempty"`
	// Transition is set on a "state" event whose State changed.
	Transition   *Transition   `json:"transition,omitempty"`
	Progress     *Progress     `json:"progress,omitempty"`
	Notification *Notification `json:"notification,omitempty"`
	Time         time.Time     `json:"time"`
}

// Progress is how far the running pass has got.
type Progress struct {
	// Pass is what started the pass (its trigger: "watch", "manual", ...).
	Pass       string  `json:"pass,omitempty"`
	BytesDone  int64   `json:"bytes_done"`
	BytesTotal int64   `json:"bytes_total"`
	FilesDone  int     `json:"files_done"`
	FilesTotal int     `json:"files_total"`
	Rate       float64 `json:"rate"` // bytes per second
	// ETA is the estimated time left (zero: unknown); on the wire, eta_ms.
	ETA time.Duration `json:"-"`
}

type progressWire struct {
	progressAlias
	ETAMS int64 `json:"eta_ms,omitempty"`
}

type progressAlias Progress

// MarshalJSON writes ETA as eta_ms.
func (p Progress) MarshalJSON() ([]byte, error) {
	return json.Marshal(progressWire{progressAlias: progressAlias(p), ETAMS: p.ETA.Milliseconds()})
}

// UnmarshalJSON reads ETA from eta_ms.
func (p *Progress) UnmarshalJSON(b []byte) error {
	var w progressWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*p = Progress(w.progressAlias)
	p.ETA = time.Duration(w.ETAMS) * time.Millisecond
	return nil
}

// Notification levels.
const (
	LevelInfo    = "info"
	LevelWarning = "warning"
	LevelError   = "error"
)

// Notification is something the user should be told about (conflicts
// created, a max-delete hold, login required).
type Notification struct {
	// Kind says what it is about (one of the Notify constants; "" for
	// anything else), so a client can act on it without reading Title.
	Kind    string `json:"kind,omitempty"`
	Level   string `json:"level"`
	Title   string `json:"title"`
	Message string `json:"message"`
}

// Kinds of [Notification].
const (
	NotifyConflicts            = "conflicts"             // a pass kept conflict files
	NotifyHold                 = "hold"                  // sync is held until the person acts
	NotifyNotSyncing           = "not_syncing"           // new files that cannot sync
	NotifyLoginRequired        = "login_required"        // the login expired
	NotifySubscriptionRequired = "subscription_required" // the account has no subscription
	NotifyOffline              = "offline"               // offline for a while
)

// LogsRequest asks for the daemon's log records.
type LogsRequest struct {
	// Lines is how many recent records to send first (<= 0: the default).
	Lines int
	// Follow keeps the stream open and sends new records as they come.
	Follow bool
}

// LogLine is one log record of the daemon.
type LogLine struct {
	Time  time.Time      `json:"time"`
	Level string         `json:"level"`
	Msg   string         `json:"msg"`
	Attrs map[string]any `json:"attrs,omitempty"`
}

// ConfigSetRequest is the body of POST /v0/config.
type ConfigSetRequest struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Keys of the config answers besides the settings themselves.
const (
	// ConfigRestartRequired is true when a change only applies after the
	// daemon restarts.
	ConfigRestartRequired = "restart_required"
	// ConfigSources holds each setting's origin: {"source", "name"}.
	ConfigSources = "sources"
	// ConfigOverriddenBy names the origin (a flag, an environment
	// variable) that keeps a saved value from applying.
	ConfigOverriddenBy = "overridden_by"
)

// MountRequest is the body of POST /v0/mount.
type MountRequest struct {
	// Profile is fast, balanced or safe ("" : balanced).
	Profile string `json:"profile,omitempty"`
	// MountPoint is where the bucket appears ("" : ~/basic-memory-{tenant_id}).
	MountPoint string `json:"mount_point,omitempty"`
}

// MountStatus is the answer of the mount routes.
type MountStatus struct {
	Mounted    bool      `json:"mounted"`
	MountPoint string    `json:"mount_point,omitempty"`
	Profile    string    `json:"profile,omitempty"`
	Bucket     string    `json:"bucket,omitempty"`
	Since      time.Time `json:"since,omitzero"`
	// Pending counts files written through the mount not yet uploaded.
	Pending int `json:"pending,omitempty"`
	// Error is why the last mount ended or failed, if it did.
	Error string `json:"error,omitempty"`
}

// DoctorCheck is one health check of the daemon.
type DoctorCheck struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Warn marks a check that passed with a caveat (OK is true).
	Warn   bool   `json:"warn,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Fix says what to do about a failure or a warning.
	Fix string `json:"fix,omitempty"`
}

// DoctorReport is the answer to GET /v0/doctor.
type DoctorReport struct {
	Checks []DoctorCheck `json:"checks"`
}
