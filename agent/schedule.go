package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// Retry delays after failed passes: exponential from retryInitial, with
// ±retryJitter randomization, up to retryCap (or the interval, if longer).
const (
	retryMultiplier = 2
	retryJitter     = 0.5
	retryCap        = 5 * time.Minute
)

// defaultRetryInitial is the first retry delay (a pair's hooks may
// shorten it).
const defaultRetryInitial = 2 * time.Second

// retry schedules the next attempt after failed passes.
type retry struct {
	bo       *backoff.ExponentialBackOff
	failures int
}

// newRetry returns a retry schedule for a loop whose normal interval is
// interval: delays grow from initial to at most max(interval,
// retryCap), never past it, with jitter so devices don't retry in step.
func newRetry(interval, initial time.Duration) *retry {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = initial
	bo.Multiplier = retryMultiplier
	bo.RandomizationFactor = retryJitter
	bo.MaxInterval = max(interval, retryCap)
	bo.MaxElapsedTime = 0 // a daemon never gives up
	bo.Reset()
	return &retry{bo: bo}
}

// failed records a failure and returns how long to wait before the next
// attempt.
func (r *retry) failed() time.Duration {
	r.failures++
	d := r.bo.NextBackOff()
	if d == backoff.Stop || d <= 0 {
		d = r.bo.MaxInterval
	}
	return d
}

// succeeded resets the schedule.
func (r *retry) succeeded() {
	r.failures = 0
	r.bo.Reset()
}

// isOffline reports whether err means the bucket or the server could not
// be reached (dial refused, unreachable network, unknown host, timeouts),
// as opposed to an answer that said no. Cancellation is not offline. It
// reads typed errors only: the engine turns rclone's untyped ones into
// syncer.ErrOffline.
func isOffline(err error) bool {
	if errors.Is(err, syncer.ErrOffline) {
		return true // the engine's own verdict
	}
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var netErr net.Error
	switch {
	case errors.As(err, &dnsErr), errors.As(err, &opErr):
		return true
	case errors.As(err, &netErr) && netErr.Timeout():
		return true
	case errors.Is(err, context.DeadlineExceeded):
		return true
	}
	for _, errno := range []error{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ETIMEDOUT, syscall.ECONNABORTED} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// holdFor turns one of the engine's typed safety errors into a hold that
// says what happened and what to do; nil for any other error.
func holdFor(err error, folder, profile string, now time.Time) *ipc.Hold {
	h := &ipc.Hold{Since: now}
	switch {
	case errors.Is(err, syncer.ErrMaxDeleteExceeded):
		h.Reason, h.NeedsForce = ipc.HoldMaxDelete, true
		if md := (*syncer.MaxDeleteError)(nil); errors.As(err, &md) {
			h.Deletes, h.Files = md.Deletes, md.Total
			h.Side = ipc.SideLocal
			if md.Side == syncer.SideCloud {
				h.Side = ipc.SideCloud
			}
		}
		where := "on one side"
		switch h.Side {
		case ipc.SideLocal:
			where = "in the notes folder"
		case ipc.SideCloud:
			where = "in the bucket"
		}
		counts := ""
		if h.Files > 0 {
			counts = fmt.Sprintf(" (%d of %d files)", h.Deletes, h.Files)
		}
		h.Message = fmt.Sprintf("sync paused: more files were deleted %s%s than the %s profile allows, and nothing was changed. "+
			"If the deletes are intended, run `bm-agent sync --force`; if not, restore the files and run `bm-agent sync --force`.",
			where, counts, profile)
	case errors.Is(err, syncer.ErrAllFilesChanged):
		h.Reason, h.NeedsForce = ipc.HoldAllFilesChanged, true
		h.Message = "sync paused: every file changed on one side (a clock or time zone jump?), and nothing was changed. " +
			"Check the notes, then run `bm-agent sync --force`."
	case errors.Is(err, syncer.ErrLocalRootMissing):
		h.Reason = ipc.HoldLocalMissing
		h.Message = fmt.Sprintf("the notes folder %s is missing, so nothing was synced or deleted. "+
			"Reconnect the drive or restore the folder; syncing resumes by itself.", folder)
	case errors.Is(err, syncer.ErrLocalRootEmpty):
		h.Reason = ipc.HoldLocalEmpty
		h.Message = fmt.Sprintf("the notes folder %s is empty although the last sync saw files, so nothing was synced or deleted. "+
			"Reconnect the drive or restore the files; syncing resumes by itself. "+
			"To get the bucket's notes back into the empty folder, run `bm-agent sync --resync` (it copies, it never deletes).", folder)
	case errors.Is(err, syncer.ErrResyncRequired):
		h.Reason = ipc.HoldResyncRequired
		h.Message = "the sync baseline is unusable: run `bm-agent sync --resync` (it copies both ways, deletes nothing, keeps both versions of a note that differs)."
	default:
		return nil
	}
	return h
}
