package agent

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// WatchEvents implements ipc.EventWatcher: a snapshot, then every event.
func (d *Daemon) WatchEvents(ctx context.Context) <-chan ipc.Event {
	return d.store.Watch(ctx)
}

// notificationsFor returns what changed from prev to cur that the user
// should be told about (the store publishes them with the change).
func notificationsFor(prev, cur ipc.Status) []ipc.Notification {
	var out []ipc.Notification
	if cur.LastSync != nil && cur.LastSync.Conflicts > 0 && (prev.LastSync == nil || !prev.LastSync.Start.Equal(cur.LastSync.Start)) {
		out = append(out, ipc.Notification{
			Kind: ipc.NotifyConflicts, Level: ipc.LevelWarning, Title: "Sync conflicts",
			Message: plural(cur.LastSync.Conflicts, "note was", "notes were") + " changed on both sides; both versions are kept (see `bm-agent conflicts`).",
		})
	}
	if cur.Hold != nil && cur.Hold.NeedsForce && (prev.Hold == nil || prev.Hold.Reason != cur.Hold.Reason) {
		out = append(out, ipc.Notification{Kind: ipc.NotifyHold, Level: ipc.LevelError, Title: "Sync on hold", Message: cur.Hold.Message})
	}
	if n := newFailed(prev.NotSyncing, cur.NotSyncing); n > 0 {
		out = append(out, ipc.Notification{
			Kind: ipc.NotifyNotSyncing, Level: ipc.LevelWarning, Title: "Files that cannot sync",
			Message: plural(n, "file does", "files do") + " not sync for now; everything else does (see `bm-agent status`).",
		})
	}
	if cur.State == ipc.StateLoginRequired && prev.State != ipc.StateLoginRequired {
		out = append(out, ipc.Notification{Kind: ipc.NotifyLoginRequired, Level: ipc.LevelWarning, Title: "Login required", Message: "Run `bm-agent login` to keep syncing."})
	}
	return out
}

// newFailed counts the failed items of cur that prev did not have.
func newFailed(prev, cur []ipc.FailedItem) int {
	n := 0
	for _, c := range cur {
		found := false
		for _, p := range prev {
			if p.Path == c.Path {
				found = true
				break
			}
		}
		if !found {
			n++
		}
	}
	return n
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return itoa(n) + " " + many
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// progressPublisher returns the engine's PassOptions.Progress hook for
// one pass: it publishes each change of the pass's progress on the watch
// stream (the engine reads the pass's own stats group, so a mount's
// transfers never mix in). Calls with nothing to transfer are skipped,
// except the last one, which shows the pass's end.
func (d *Daemon) progressPublisher(trigger string) func(syncer.Progress) {
	var mu sync.Mutex
	var prev ipc.Progress
	return func(sp syncer.Progress) {
		p := ipc.Progress{
			Pass:       trigger,
			BytesDone:  sp.BytesDone,
			BytesTotal: sp.BytesTotal,
			FilesDone:  sp.FilesDone,
			FilesTotal: sp.FilesTotal,
			Rate:       sp.Rate,
			ETA:        sp.ETA,
		}
		mu.Lock()
		defer mu.Unlock()
		if p == prev || (p.BytesTotal == 0 && p.FilesTotal == 0) {
			return
		}
		prev = p
		d.hub.Publish(ipc.Event{Kind: ipc.EventProgress, Progress: &p, Time: time.Now()})
	}
}
