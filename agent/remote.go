package agent

import (
	"context"
	"errors"
	"time"

	"github.com/basicmachines-co/bm-agent/cloudapi"
)

// followRemote follows the tenant's bucket-change events for the session's
// life: a change reported by another device wakes the sync loop (trigger
// "remote", coalesced like the others); so does a reconnection, since
// changes may have been missed meanwhile. Our own changes are ignored.
func (d *Daemon) followRemote(ctx context.Context, s *session) {
	log := d.log.With("component", "events")
	for ctx.Err() == nil {
		err := s.client.FollowEvents(ctx, func(ev cloudapi.ChangeEvent) error {
			if !ev.Reconnected && ev.Device == d.cfg.Device {
				return nil // our own pass, already in step
			}
			log.Debug("bucket changed", "device", ev.Device, "reason", ev.Reason, "keys", len(ev.Keys), "reconnected", ev.Reconnected)
			s.wakePairs(ev.Keys) // none after a reconnection: anything may have changed
			return nil
		}, func(live bool) {
			if s.setPushLive(live) {
				log.Debug("change events", "live", live)
			}
		})
		if ctx.Err() != nil {
			return
		}
		// An answer retrying cannot fix (no events on this server, login
		// required): the interval keeps syncing; try again much later.
		var apiErr *cloudapi.APIError
		if errors.As(err, &apiErr) && apiErr.Status == 404 {
			log.Info("the server sends no change events; syncing on the interval only")
		} else {
			log.Warn("change events stopped", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Minute):
		}
	}
}

// setPushLive records whether the tenant's change events flow (the
// pairs then rest between full passes, pair.canRest, and sync the
// watcher's changes alone, pair.canQuick); when they come up, each pair
// runs a full pass. It reports whether that changed.
func (s *session) setPushLive(live bool) bool {
	if s.pushLive.Swap(live) == live {
		return false
	}
	if live {
		s.pushUp.Add(1)
		// a full pass under the live events, from which on the pairs can
		// sync the watcher's changes alone (pair.canQuick)
		s.wakePairs(nil)
	}
	return true
}

// wakePairs tells each pair the bucket changed, at keys (nil: anywhere):
// its next pass (trigger "remote"; wake-ups coalesce) syncs those keys
// alone when it can (pair.canQuickRemote), and is a full one otherwise.
func (s *session) wakePairs(keys []string) {
	for _, p := range s.pairs {
		p.tellRemote(keys)
	}
}
