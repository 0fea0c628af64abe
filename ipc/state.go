package ipc

import "time"

// State is what the daemon is doing, as [Status.State] reports it. It is
// the one vocabulary of the daemon, the CLI and the tray.
type State string

// The daemon's states.
const (
	StateStarting State = "starting"
	StateIdle     State = "idle" // up to date, waiting for changes
	StateSyncing  State = "syncing"
	// StatePaused: paused by the person, or held by a safety check
	// (Status.Hold says which and what to do).
	StatePaused State = "paused"
	// StateOffline: neither the server nor the bucket can be reached (no
	// network).
	StateOffline State = "offline"
	// StateServerUnreachable: the tenant API cannot be reached (the
	// network can: the bucket answers, or nothing needed it yet).
	StateServerUnreachable State = "server_unreachable"
	// StateBucketUnreachable: the bucket (S3) cannot be reached while the
	// server can.
	StateBucketUnreachable State = "bucket_unreachable"
	StateError             State = "error"
	// StateLoginRequired: the stored login expired or was revoked.
	StateLoginRequired State = "login_required"
	StateLoggedOut     State = "logged_out"
	// StateSubscriptionRequired: logged in, but the account has no active
	// subscription ([Status.SubscribeURL] says where to get one).
	StateSubscriptionRequired State = "subscription_required"
)

// Unreachable reports whether s is one of the states that say the server
// or the bucket cannot be reached; the daemon retries by itself in each.
func (s State) Unreachable() bool {
	return s == StateOffline || s == StateServerUnreachable || s == StateBucketUnreachable
}

// Code says why the daemon is in its state ([Status.Code]) or why a
// [Hold] or a [Transition] happened. Clients key on codes, never on text.
type Code string

// Codes of [Status.Code] and [Transition.Reason] (a hold's codes are the
// Hold* ones).
const (
	CodeNone Code = ""
	// CodeOffline, CodeServerUnreachable, CodeBucketUnreachable: as the
	// states of the same names.
	CodeOffline           Code = "offline"
	CodeServerUnreachable Code = "server_unreachable"
	CodeBucketUnreachable Code = "bucket_unreachable"
	// CodeLoginRequired: the login expired or was revoked.
	CodeLoginRequired Code = "login_required"
	// CodeLoginFailed: a login the person started did not complete
	// (Status.Error says why).
	CodeLoginFailed Code = "login_failed"
	// CodeSubscriptionRequired: the account has no active subscription.
	CodeSubscriptionRequired Code = "subscription_required"
	// CodeTenantSuspended: the server's administrator suspended (or
	// deleted) the account's tenant; Status.Error has the server's message.
	CodeTenantSuspended Code = "tenant_suspended"
	// CodeKeyRejected: S3 refused the device's key, and a new one could
	// not be had.
	CodeKeyRejected Code = "key_rejected"
	// CodeDiskFull: the notes folder's disk, or the state dir's, is full.
	CodeDiskFull Code = "disk_full"
	// CodeNotConfigured: no server is configured.
	CodeNotConfigured Code = "not_configured"
	// CodePausedByUser: `bm-agent pause` (or the tray's).
	CodePausedByUser Code = "paused_by_user"
	// CodeSyncFailed: a pass failed for another reason (Status.Error).
	CodeSyncFailed Code = "sync_failed"
)

// Transition is a change of the daemon's state, published on the watch
// stream with the status it led to.
type Transition struct {
	From State `json:"from"`
	To   State `json:"to"`
	// Since is when the daemon entered From (so To-Since is how long it
	// was there).
	Since time.Time `json:"since"`
	// At is when the daemon entered To.
	At     time.Time `json:"at"`
	Reason Code      `json:"reason,omitempty"`
}

// Clone returns a copy of s that shares no memory with it, so a snapshot
// handed out stays as it was when the status changes.
func (s Status) Clone() Status {
	c := s
	c.OfflineSince = clonePtr(s.OfflineSince)
	c.NextSync = clonePtr(s.NextSync)
	c.PausedUntil = clonePtr(s.PausedUntil)
	c.RetryAt = clonePtr(s.RetryAt)
	c.Hold = clonePtr(s.Hold)
	if s.LastSync != nil {
		ls := *s.LastSync
		if ls.Plan != nil {
			ls.Plan = &Plan{Items: append([]PlanItem(nil), ls.Plan.Items...)}
		}
		c.LastSync = &ls
	}
	if s.NotSyncing != nil {
		c.NotSyncing = append([]FailedItem(nil), s.NotSyncing...)
	}
	return c
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}
