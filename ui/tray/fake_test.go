//go:build linux && !race

package tray_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// fakeDaemon is an ipc.Backend with a watch stream, conflicts, history and
// versions, that records every call and acts on pause, resume, resolve and
// restore like the daemon does, publishing each change.
type fakeDaemon struct {
	hub *ipc.Hub

	mu        sync.Mutex
	status    ipc.Status
	calls     []string
	conflicts []ipc.Conflict
	history   []ipc.PassSummary
	deleted   []ipc.Version
}

func newFakeDaemon(st ipc.Status) *fakeDaemon {
	return &fakeDaemon{hub: ipc.NewHub(0), status: st}
}

func (f *fakeDaemon) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

// count counts the calls named call.
func (f *fakeDaemon) count(call string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == call {
			n++
		}
	}
	return n
}

func (f *fakeDaemon) callList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// setStatus changes the status and publishes it, as the daemon's status
// store does.
func (f *fakeDaemon) setStatus(fn func(*ipc.Status)) {
	f.mu.Lock()
	old := f.status.State
	fn(&f.status)
	st := f.status.Clone()
	f.mu.Unlock()
	ev := ipc.Event{Kind: ipc.EventState, Status: &st, Time: time.Now()}
	if old != st.State {
		ev.Transition = &ipc.Transition{From: old, To: st.State, At: ev.Time}
	}
	f.hub.Publish(ev)
}

func (f *fakeDaemon) progress(p ipc.Progress) {
	f.hub.Publish(ipc.Event{Kind: ipc.EventProgress, Progress: &p, Time: time.Now()})
}

func (f *fakeDaemon) setLists(fn func(f *fakeDaemon)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeDaemon) Status(context.Context) ipc.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status.Clone()
}

func (f *fakeDaemon) WatchEvents(ctx context.Context) <-chan ipc.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.status.Clone()
	return f.hub.Subscribe(ctx, ipc.Event{Kind: ipc.EventSnapshot, Status: &st, Time: time.Now()})
}

func (f *fakeDaemon) Sync(_ context.Context, req ipc.SyncRequest) (ipc.PassSummary, error) {
	if req.Force {
		f.record("sync --force")
		return ipc.PassSummary{Trigger: "manual", Forced: true}, nil
	}
	f.record("sync")
	return ipc.PassSummary{Trigger: "manual"}, nil
}

func (f *fakeDaemon) Login(_ context.Context, opts ipc.LoginOptions) (ipc.LoginStart, error) {
	f.record("login")
	return ipc.LoginStart{URL: "https://example.test/login"}, nil
}

func (f *fakeDaemon) Logout(context.Context) error { f.record("logout"); return nil }

func (f *fakeDaemon) Pause(context.Context) error {
	f.record("pause")
	f.setStatus(func(s *ipc.Status) { s.Paused, s.State, s.PausedUntil = true, ipc.StatePaused, nil })
	return nil
}

func (f *fakeDaemon) PauseFor(_ context.Context, d time.Duration) error {
	f.record("pause for %s", d)
	until := time.Now().Add(d)
	f.setStatus(func(s *ipc.Status) { s.Paused, s.State, s.PausedUntil = true, ipc.StatePaused, &until })
	return nil
}

func (f *fakeDaemon) Resume(context.Context) error {
	f.record("resume")
	f.setStatus(func(s *ipc.Status) { s.Paused, s.State, s.PausedUntil = false, ipc.StateIdle, nil })
	return nil
}

func (f *fakeDaemon) Logs(_ context.Context, req ipc.LogsRequest, fn func(ipc.LogLine) error) error {
	for _, l := range []ipc.LogLine{
		{Time: time.Unix(0, 0), Level: "INFO", Msg: "pass done", Attrs: map[string]any{"uploaded": 3}},
		{Time: time.Unix(1, 0), Level: "WARN", Msg: "conflict kept", Attrs: map[string]any{"path": "a.md"}},
	} {
		if err := fn(l); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeDaemon) History(_ context.Context, limit int) (ipc.History, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return ipc.History{Passes: slices.Clone(f.history)}, nil
}

func (f *fakeDaemon) Conflicts(context.Context) (ipc.Conflicts, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return ipc.Conflicts{Folder: f.status.Folder, Conflicts: slices.Clone(f.conflicts)}, nil
}

func (f *fakeDaemon) Resolve(_ context.Context, req ipc.ResolveRequest) (ipc.ResolveResult, error) {
	f.record("resolve %s %s %s", req.Path, req.Conflict, req.Keep)
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.IndexFunc(f.conflicts, func(c ipc.Conflict) bool { return c.Path == req.Conflict && c.Original == req.Path })
	if i < 0 {
		return ipc.ResolveResult{}, fmt.Errorf("resolve %s: %w", req.Path, ipc.ErrNotFound)
	}
	f.conflicts = slices.Delete(f.conflicts, i, i+1)
	return ipc.ResolveResult{Folder: f.status.Folder, Note: req.Path, Removed: []string{req.Conflict}}, nil
}

func (f *fakeDaemon) Versions(_ context.Context, req ipc.VersionsRequest) (ipc.Versions, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return ipc.Versions{Folder: f.status.Folder, Versions: slices.Clone(f.deleted), DaysKept: 30}, nil
}

func (f *fakeDaemon) Restore(_ context.Context, req ipc.RestoreRequest) (ipc.RestoreResult, error) {
	f.record("restore %s %s", req.Path, req.Version)
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.IndexFunc(f.deleted, func(v ipc.Version) bool { return v.Path == req.Path && v.ID == req.Version })
	if i < 0 {
		return ipc.RestoreResult{}, fmt.Errorf("restore %s: %w", req.Path, ipc.ErrNotFound)
	}
	v := f.deleted[i]
	f.deleted = slices.Delete(f.deleted, i, i+1)
	return ipc.RestoreResult{Folder: f.status.Folder, Restored: []ipc.Version{v}}, nil
}

// daemonProc serves a fakeDaemon on a socket, and can be stopped and
// started again like a daemon that restarts.
type daemonProc struct {
	t    *testing.T
	sock string
	fake *fakeDaemon

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan error
}

func newDaemonProc(t *testing.T, fake *fakeDaemon) *daemonProc {
	dir, err := os.MkdirTemp("", "bmtray") // short: a socket path has a limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &daemonProc{t: t, sock: filepath.Join(dir, "agent.sock"), fake: fake}
	t.Cleanup(p.stop)
	return p
}

// start serves the fake on the socket.
func (p *daemonProc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel != nil {
		return nil
	}
	ln, err := ipc.Listen(p.sock)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan error, 1)
	go func(done chan error) { done <- ipc.NewServer(p.fake, nil).Serve(ctx, ln) }(p.done)
	return nil
}

// stop ends the server, as a daemon that exits.
func (p *daemonProc) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel == nil {
		return
	}
	p.cancel()
	if err := <-p.done; err != nil {
		p.t.Errorf("fake daemon: %v", err)
	}
	p.cancel = nil
}
