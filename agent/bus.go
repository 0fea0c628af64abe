package agent

import (
	"context"
	"encoding/json"
	"time"

	"github.com/rclone/rclone/fs/rc"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// publishEvery is how often the publisher compares the status with the
// last one it published even when nothing marked it dirty;
// progressEvery is how often a pass's progress is published.
var (
	publishEvery  = time.Second
	progressEvery = 500 * time.Millisecond
)

// markDirty asks the publisher to compare the status with the last one it
// published. It never blocks.
func (d *Daemon) markDirty() {
	select {
	case d.dirty <- struct{}{}:
	default:
	}
}

// WatchEvents implements ipc.EventWatcher: a snapshot, then every event.
func (d *Daemon) WatchEvents(ctx context.Context) <-chan ipc.Event {
	st := d.Status(ctx)
	return d.hub.Subscribe(ctx, ipc.Event{Kind: ipc.EventSnapshot, Status: &st, Time: time.Now()})
}

// publish runs until ctx ends: it publishes the status whenever it changed
// ("state"), a login to open ("login") and what the user should be told
// ("notification": conflicts, a hold that needs them, login required).
// Status changes are found by comparing snapshots, so no code path that
// changes the status can forget to publish it.
func (d *Daemon) publish(ctx context.Context) {
	t := time.NewTicker(publishEvery)
	defer t.Stop()
	var last ipc.Status
	var lastJSON []byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.dirty:
		case <-t.C:
		}
		st := d.Status(ctx)
		b, _ := json.Marshal(st)
		if string(b) == string(lastJSON) {
			continue
		}
		now := time.Now()
		if st.LoginURL != "" && st.LoginURL != last.LoginURL {
			d.hub.Publish(ipc.Event{Kind: ipc.EventLogin, Status: &st, Time: now})
		}
		for _, n := range notificationsFor(last, st, lastJSON == nil) {
			d.hub.Publish(ipc.Event{Kind: ipc.EventNotification, Notification: &n, Time: now})
		}
		d.hub.Publish(ipc.Event{Kind: ipc.EventState, Status: &st, Time: now})
		last, lastJSON = st, b
	}
}

// notificationsFor returns what changed from prev to cur that the user
// should be told about.
func notificationsFor(prev, cur ipc.Status, first bool) []ipc.Notification {
	var out []ipc.Notification
	if cur.LastSync != nil && cur.LastSync.Conflicts > 0 && (prev.LastSync == nil || !prev.LastSync.Start.Equal(cur.LastSync.Start)) && !first {
		out = append(out, ipc.Notification{
			Level: ipc.LevelWarning, Title: "Sync conflicts",
			Message: plural(cur.LastSync.Conflicts, "note was", "notes were") + " changed on both sides; both versions are kept (see `bm-agent conflicts`).",
		})
	}
	if cur.Hold != nil && cur.Hold.NeedsForce && (prev.Hold == nil || prev.Hold.Reason != cur.Hold.Reason) {
		out = append(out, ipc.Notification{Level: ipc.LevelError, Title: "Sync on hold", Message: cur.Hold.Message})
	}
	if cur.State == StateLoginRequired && prev.State != StateLoginRequired {
		out = append(out, ipc.Notification{Level: ipc.LevelWarning, Title: "Login required", Message: "Run `bm-agent login` to keep syncing."})
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return itoa(n) + " " + many
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// watchProgress publishes the running pass's progress every progressEvery
// until ctx ends. It reads rclone's accounting summed over its stats
// groups (the daemon runs one pass at a time).
func (d *Daemon) watchProgress(ctx context.Context, trigger string) {
	call := rc.Calls.Get("core/stats")
	if call == nil {
		return
	}
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	var prev ipc.Progress
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		out, err := call.Fn(ctx, rc.Params{})
		if err != nil {
			continue
		}
		p := progressOf(out, trigger)
		if p == prev || (p.BytesTotal == 0 && p.FilesTotal == 0) {
			continue
		}
		prev = p
		d.hub.Publish(ipc.Event{Kind: ipc.EventProgress, Progress: &p, Time: time.Now()})
	}
}

// progressOf reads rclone's core/stats answer.
func progressOf(out rc.Params, trigger string) ipc.Progress {
	num := func(k string) float64 {
		switch v := out[k].(type) {
		case int64:
			return float64(v)
		case int:
			return float64(v)
		case float64:
			return v
		}
		return 0
	}
	p := ipc.Progress{
		Pass:       trigger,
		BytesDone:  int64(num("bytes")),
		BytesTotal: int64(num("totalBytes")),
		FilesDone:  int(num("transfers")),
		FilesTotal: int(num("totalTransfers")),
		Rate:       num("speed"),
	}
	if eta, ok := out["eta"]; ok && eta != nil {
		p.ETA = time.Duration(num("eta") * float64(time.Second))
	}
	return p
}
