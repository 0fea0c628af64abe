package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/agent/watch"
	"github.com/basicmachines-co/bm-agent/cloudapi"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// fakeEngine records passes and answers with the result next gives.
type fakeEngine struct {
	mu     sync.Mutex
	opts   []syncer.PassOptions
	gate   chan struct{} // if set, each pass waits for a value (or ctx)
	next   func(n int) (syncer.Result, error)
	passed chan int // receives the pass count after each pass (never blocks)
}

func (f *fakeEngine) Pass(ctx context.Context, opt syncer.PassOptions) (syncer.Result, error) {
	f.mu.Lock()
	f.opts = append(f.opts, opt)
	n := len(f.opts)
	gate, next := f.gate, f.next
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return syncer.Result{Start: time.Now()}, fmt.Errorf("syncer: pass: %w", ctx.Err())
		}
	}
	res, err := syncer.Result{Start: time.Now(), Uploaded: n}, error(nil)
	if next != nil {
		res, err = next(n)
		res.Start = time.Now()
	}
	select {
	case f.passed <- n:
	default:
	}
	return res, err
}

func (f *fakeEngine) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.opts)
}

func (f *fakeEngine) lastOpt() syncer.PassOptions {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.opts[len(f.opts)-1]
}

// testDaemon is a daemon without a socket or a cloud session, whose loop
// runs a fake engine.
func testDaemon(t *testing.T, home string) *Daemon {
	t.Helper()
	t.Setenv("BM_AGENT_KEYRING", "file")
	d, err := New(Config{
		Home:     home,
		Folder:   filepath.Join(home, "notes"),
		Interval: Duration(time.Hour),
		Debounce: Duration(20 * time.Millisecond),
		MaxWait:  Duration(100 * time.Millisecond),
		Device:   "test",
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(d.cfg.Folder, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

// runLoop runs d's sync loop over eng until the test ends.
func runLoop(t *testing.T, d *Daemon, eng passer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := testSession(d, eng, nil, nil)
	go d.runSession(ctx, s)
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	waitFor(t, "the loop to start", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.session != nil
	})
}

// testSession is a session of d syncing with eng (client and key may be
// nil), as resume makes one.
func testSession(d *Daemon, eng passer, client *cloudapi.Client, key *cloudapi.S3Key) *session {
	s := &session{client: client, key: key, done: make(chan struct{})}
	s.pairs = []*pair{d.newPair(s, eng)}
	return s
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSyncRequestsCoalesce(t *testing.T) {
	d := testDaemon(t, t.TempDir())
	eng := &fakeEngine{gate: make(chan struct{}), passed: make(chan int, 16)}
	runLoop(t, d, eng)
	ctx := context.Background()

	// The startup pass is running (blocked at the gate).
	waitFor(t, "the first pass", func() bool { return eng.count() == 1 })
	type answer struct {
		sum ipc.PassSummary
		err error
	}
	answers := make(chan answer, 3)
	for i := 0; i < 3; i++ {
		go func() {
			sum, err := d.Sync(ctx, ipc.SyncRequest{Wait: true})
			answers <- answer{sum, err}
		}()
	}
	waitFor(t, "three queued requests", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.session.folderPair().syncReq) == 3
	})
	eng.gate <- struct{}{} // finish the startup pass
	eng.gate <- struct{}{} // and the one coalesced pass
	var got []ipc.PassSummary
	for i := 0; i < 3; i++ {
		a := <-answers
		if a.err != nil {
			t.Fatal(a.err)
		}
		got = append(got, a.sum)
	}
	for _, s := range got {
		if s.Uploaded != 2 || s.Trigger != "manual" || !s.Start.Equal(got[0].Start) {
			t.Fatalf("requests were not answered by the one second pass: %+v", got)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n := eng.count(); n != 2 {
		t.Fatalf("%d passes for one startup and three coalesced requests, want 2", n)
	}
	h, err := d.History(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Passes) != 2 || h.Passes[0].Trigger != "manual" || h.Passes[1].Trigger != "startup" {
		t.Fatalf("history = %+v", h.Passes)
	}
}

func TestMergeRequests(t *testing.T) {
	reply := make(chan syncReply, 1)
	tests := []struct {
		name    string
		calls   []syncCall
		want    ipc.SyncRequest
		waiting bool
	}{
		{"none", nil, ipc.SyncRequest{}, false},
		{"wake-up", []syncCall{{}}, ipc.SyncRequest{}, false},
		{"dry runs stay dry", []syncCall{{req: ipc.SyncRequest{DryRun: true}, reply: reply}, {req: ipc.SyncRequest{DryRun: true, Profile: "safe"}}},
			ipc.SyncRequest{DryRun: true, Profile: "safe"}, true},
		{"a real request wins over a dry run", []syncCall{{req: ipc.SyncRequest{DryRun: true}}, {}}, ipc.SyncRequest{}, false},
		{"force and resync are kept", []syncCall{{req: ipc.SyncRequest{Force: true}}, {req: ipc.SyncRequest{Resync: true}, reply: reply}},
			ipc.SyncRequest{Force: true, Resync: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, waiting := mergeRequests(tt.calls)
			if got != tt.want || waiting != tt.waiting {
				t.Errorf("merge = %+v, %v; want %+v, %v", got, waiting, tt.want, tt.waiting)
			}
		})
	}
}

func TestOfflineBacksOffAndComesBack(t *testing.T) {
	d := testDaemon(t, t.TempDir())
	d.pairHooks.retryInitial = 20 * time.Millisecond
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	var mu sync.Mutex
	up := false
	eng := &fakeEngine{passed: make(chan int, 64), next: func(int) (syncer.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		if !up {
			return syncer.Result{}, fmt.Errorf("syncer: pass: list bucket: %w", refused)
		}
		return syncer.Result{}, nil
	}}
	runLoop(t, d, eng)
	ctx := context.Background()

	// Retries come by themselves (the interval is an hour), further and
	// further apart.
	// The count goes up when a pass starts, so read the status between
	// passes: a retry in flight is "syncing", truthfully.
	var st ipc.Status
	waitFor(t, "three failed passes, offline between them", func() bool {
		st = d.Status(ctx)
		return eng.count() >= 3 && st.State == ipc.StateOffline && st.Failures >= 2
	})
	if st.RetryAt == nil {
		t.Fatalf("status while the endpoint is down: state %q failures %d retry %v", st.State, st.Failures, st.RetryAt)
	}
	if st.LastSync == nil || !st.LastSync.Offline {
		t.Fatalf("last pass not marked offline: %+v", st.LastSync)
	}
	mu.Lock()
	up = true
	mu.Unlock()
	waitFor(t, "the daemon back to idle", func() bool {
		st := d.Status(ctx)
		return st.State == ipc.StateIdle && st.Failures == 0 && st.RetryAt == nil
	})
	h, _ := d.History(ctx, 100)
	if len(h.Passes) < 4 || h.Passes[0].Error != "" || !h.Passes[1].Offline || h.Passes[1].Trigger != "retry" {
		t.Fatalf("history = %+v", h.Passes)
	}
}

func TestPlainErrorIsNotOffline(t *testing.T) {
	d := testDaemon(t, t.TempDir())
	eng := &fakeEngine{passed: make(chan int, 8), next: func(int) (syncer.Result, error) {
		return syncer.Result{}, errors.New("AccessDenied: 403")
	}}
	runLoop(t, d, eng)
	waitFor(t, "the failed pass", func() bool { return d.Status(context.Background()).Failures == 1 })
	if st := d.Status(context.Background()); st.State != ipc.StateError || st.Error == "" || st.RetryAt == nil {
		t.Fatalf("status = %+v", st)
	}
}

func TestMaxDeleteHoldsUntilForce(t *testing.T) {
	home := t.TempDir()
	d := testDaemon(t, home)
	var mu sync.Mutex
	deleting := true
	eng := &fakeEngine{passed: make(chan int, 8), next: func(int) (syncer.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		if deleting {
			return syncer.Result{}, fmt.Errorf("syncer: pass: bisync: %w", &syncer.MaxDeleteError{Deletes: 40, Total: 100, Side: syncer.SideCloud, Percent: 25})
		}
		return syncer.Result{DeletedRemote: 40}, nil
	}}
	runLoop(t, d, eng)
	ctx := context.Background()
	waitFor(t, "the hold", func() bool { return d.Status(ctx).Hold != nil })
	st := d.Status(ctx)
	if st.State != ipc.StatePaused || st.Hold.Reason != ipc.HoldMaxDelete || st.Hold.Deletes != 40 || st.Hold.Files != 100 ||
		st.Hold.Side != ipc.SideCloud || !st.Hold.NeedsForce || st.Error == "" {
		t.Fatalf("status after too many deletes: %+v hold %+v", st, st.Hold)
	}
	// It survives a restart.
	saved, err := loadState(home)
	if err != nil || saved.Hold == nil || saved.Hold.Deletes != 40 {
		t.Fatalf("state file: %+v, %v", saved, err)
	}
	// Scheduled passes and plain requests do not run; resume does not lift it.
	if _, err := d.Sync(ctx, ipc.SyncRequest{Wait: true}); err == nil {
		t.Fatal("a plain sync ran past the hold")
	}
	if err := d.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := eng.count(); n != 1 {
		t.Fatalf("%d passes while held, want 1", n)
	}
	if st := d.Status(ctx); st.State != ipc.StatePaused || st.Hold == nil {
		t.Fatalf("resume lifted the hold: %+v", st)
	}
	// sync --force runs the pass with Force and lifts the hold.
	mu.Lock()
	deleting = false
	mu.Unlock()
	sum, err := d.Sync(ctx, ipc.SyncRequest{Wait: true, Force: true})
	if err != nil || sum.Error != "" || !sum.Forced || sum.DeletedRemote != 40 {
		t.Fatalf("forced sync: %+v, %v", sum, err)
	}
	if !eng.lastOpt().Force {
		t.Fatal("the engine did not get Force")
	}
	if st := d.Status(ctx); st.Hold != nil || st.State != ipc.StateIdle {
		t.Fatalf("after --force: %+v", st)
	}
	if saved, _ := loadState(home); saved.Hold != nil {
		t.Fatalf("hold still in the state file: %+v", saved.Hold)
	}
}

func TestSyncPassesProfileAndDryRun(t *testing.T) {
	d := testDaemon(t, t.TempDir())
	eng := &fakeEngine{passed: make(chan int, 8), next: func(int) (syncer.Result, error) {
		return syncer.Result{Plan: []syncer.Change{{Side: syncer.SideCloud, Action: syncer.ActionCopy, Path: "a.md"}}}, nil
	}}
	runLoop(t, d, eng)
	ctx := context.Background()
	waitFor(t, "the startup pass", func() bool { return eng.count() == 1 })
	if p := eng.lastOpt().Profile; p != syncer.ProfileBalanced {
		t.Errorf("startup pass profile %q, want the configured balanced", p)
	}
	before := d.Status(ctx).LastSync
	sum, err := d.Sync(ctx, ipc.SyncRequest{Wait: true, DryRun: true, Profile: "safe"})
	if err != nil {
		t.Fatal(err)
	}
	opt := eng.lastOpt()
	if !opt.DryRun || opt.Profile != syncer.ProfileSafe {
		t.Errorf("engine options %+v", opt)
	}
	if !sum.DryRun || sum.Profile != "safe" || sum.Plan == nil || len(sum.Plan.Items) != 1 || sum.Plan.Items[0] != (ipc.PlanItem{Action: "copy", Side: "cloud", Path: "a.md"}) {
		t.Errorf("dry-run summary %+v plan %+v", sum, sum.Plan)
	}
	if after := d.Status(ctx).LastSync; after != before && (after == nil || after.DryRun) {
		t.Error("a dry run replaced the last real pass in the status")
	}
	if _, err := d.Sync(ctx, ipc.SyncRequest{Profile: "reckless"}); err == nil {
		t.Error("an unknown profile was accepted")
	}
}

func TestPauseForExpiresAndSurvivesRestart(t *testing.T) {
	home := t.TempDir()
	d := testDaemon(t, home)
	ctx := context.Background()

	if err := d.PauseFor(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	st := d.Status(ctx)
	if !st.Paused || st.PausedUntil == nil || st.State != ipc.StatePaused {
		t.Fatalf("after pause --for 1h: %+v", st)
	}
	// A restart keeps the pause and its end.
	d2 := testDaemon(t, home)
	if st2 := d2.Status(ctx); !st2.Paused || st2.PausedUntil == nil || !st2.PausedUntil.Equal(*st.PausedUntil) {
		t.Fatalf("after restart: %+v", st2)
	}
	// A pause whose time passed while the daemon was down is over at start.
	past := time.Now().Add(-time.Minute)
	if err := saveState(home, persisted{Paused: true, PausedUntil: &past}); err != nil {
		t.Fatal(err)
	}
	if st3 := testDaemon(t, home).Status(ctx); st3.Paused {
		t.Fatalf("expired pause still on after restart: %+v", st3)
	}
	// An untimed pause lasts until resume, also across a restart.
	if err := d.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if st4 := testDaemon(t, home).Status(ctx); !st4.Paused || st4.PausedUntil != nil {
		t.Fatalf("untimed pause after restart: %+v", st4)
	}
	if err := d.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if st5 := testDaemon(t, home).Status(ctx); st5.Paused {
		t.Fatalf("resume not saved: %+v", st5)
	}
}

func TestPauseForResumesTheLoop(t *testing.T) {
	d := testDaemon(t, t.TempDir())
	eng := &fakeEngine{passed: make(chan int, 8)}
	ctx := context.Background()
	// Long enough that a loaded machine still checks inside the pause.
	if err := d.PauseFor(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	runLoop(t, d, eng)
	time.Sleep(100 * time.Millisecond)
	if n := eng.count(); n != 0 {
		t.Fatalf("%d passes while paused", n)
	}
	if st := d.Status(ctx); st.State != ipc.StatePaused {
		t.Fatalf("state %q while paused", st.State)
	}
	// The pause ends by itself and the loop runs a pass (the interval is
	// an hour, so only the expiry can start it).
	waitFor(t, "a pass after the pause", func() bool { return eng.count() >= 1 })
	if st := d.Status(ctx); st.Paused || st.PausedUntil != nil {
		t.Fatalf("still paused: %+v", st)
	}
}

func TestCancelledPassIsRecorded(t *testing.T) {
	home := t.TempDir()
	d := testDaemon(t, home)
	eng := &fakeEngine{gate: make(chan struct{}), passed: make(chan int, 8)}
	ctx, cancel := context.WithCancel(context.Background())
	s := testSession(d, eng, nil, nil)
	go d.runSession(ctx, s)
	waitFor(t, "the pass", func() bool { return eng.count() == 1 })
	cancel()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the loop did not stop")
	}
	// A new daemon on the same home sees the cancelled pass.
	h, err := testDaemon(t, home).History(context.Background(), 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Passes) != 1 || !h.Passes[0].Cancelled || h.Passes[0].Error == "" {
		t.Fatalf("history = %+v", h.Passes)
	}
}

// TestAllFilesChangedIsHeld: the engine settles a pass whose files only
// changed their times by itself; what reaches the daemon as "all files
// changed" changed for real, so the daemon holds it for the person (a safe
// resync here would bring back the notes deleted meanwhile) until
// `sync --force`.
func TestAllFilesChangedIsHeld(t *testing.T) {
	d := testDaemon(t, t.TempDir())
	eng := &fakeEngine{passed: make(chan int, 8), next: func(n int) (syncer.Result, error) {
		if n == 1 {
			return syncer.Result{}, fmt.Errorf("syncer: pass: bisync: %w: all files were changed", syncer.ErrAllFilesChanged)
		}
		return syncer.Result{}, nil
	}}
	runLoop(t, d, eng)
	ctx := context.Background()
	waitFor(t, "the hold", func() bool { st := d.Status(ctx); return st.Hold != nil && st.State == ipc.StatePaused })
	time.Sleep(100 * time.Millisecond)
	if n := eng.count(); n != 1 {
		t.Fatalf("%d passes: the daemon ran another pass by itself", n)
	}
	if h := d.Status(ctx).Hold; h.Reason != ipc.HoldAllFilesChanged || !h.NeedsForce || !strings.Contains(h.Message, "--force") {
		t.Fatalf("hold = %+v", h)
	}
	if _, err := d.Sync(ctx, ipc.SyncRequest{Wait: true}); err == nil {
		t.Errorf("a plain sync ran past the hold")
	}
	if _, err := d.Sync(ctx, ipc.SyncRequest{Wait: true, Force: true}); err != nil {
		t.Fatal(err)
	}
	if opt := eng.lastOpt(); !opt.Force || opt.Resync {
		t.Errorf("the forced pass ran with %+v", opt)
	}
	if st := d.Status(ctx); st.Hold != nil {
		t.Errorf("hold after sync --force: %+v", st.Hold)
	}
}

// TestWatchLimitFallsBackToInterval: when the kernel refuses more watches
// (stood in for here: a test cannot lower the real inotify limit without
// disturbing the machine), the status says so with the sysctl fix and
// passes go on at the interval.
func TestWatchLimitFallsBackToInterval(t *testing.T) {
	d := testDaemon(t, t.TempDir())
	d.pairHooks.newWatcher = func(root string, _ watch.Options, _ *slog.Logger) (*watch.Watcher, error) {
		return nil, fmt.Errorf("watch: add %s: %w", root, watch.ErrWatchLimit)
	}
	d.live.interval = 50 * time.Millisecond
	eng := &fakeEngine{passed: make(chan int, 64)}
	runLoop(t, d, eng)
	waitFor(t, "interval passes without a watcher", func() bool { return eng.count() >= 3 })
	st := d.Status(context.Background())
	if !strings.Contains(st.Watcher, "max_user_watches") || !strings.Contains(st.Watcher, "syncing every") {
		t.Errorf("status watcher = %q, want the sysctl fix and the interval", st.Watcher)
	}
}

// A dry run queued with a real request gets a pass of its own: its caller
// gets a plan, never the summary of what the real pass changed.
func TestDryRunIsNotMergedIntoARealPass(t *testing.T) {
	d := testDaemon(t, t.TempDir())
	eng := &fakeEngine{gate: make(chan struct{}), passed: make(chan int, 16)}
	runLoop(t, d, eng)
	ctx := context.Background()
	waitFor(t, "the first pass", func() bool { return eng.count() == 1 })
	type answer struct {
		sum ipc.PassSummary
		err error
	}
	real, dry := make(chan answer, 1), make(chan answer, 1)
	go func() { s, err := d.Sync(ctx, ipc.SyncRequest{Wait: true}); real <- answer{s, err} }()
	waitFor(t, "the real request", func() bool { return len(d.pair().syncReq) == 1 })
	go func() { s, err := d.Sync(ctx, ipc.SyncRequest{Wait: true, DryRun: true}); dry <- answer{s, err} }()
	waitFor(t, "both requests", func() bool { return len(d.pair().syncReq) == 2 })
	for range 3 { // the startup pass, the real one, the dry run
		eng.gate <- struct{}{}
	}
	r, dr := <-real, <-dry
	if r.err != nil || dr.err != nil {
		t.Fatal(r.err, dr.err)
	}
	if r.sum.DryRun || !dr.sum.DryRun || r.sum.Start.Equal(dr.sum.Start) {
		t.Errorf("real pass %+v, dry run %+v: want two passes, the second a dry run", r.sum, dr.sum)
	}
	eng.mu.Lock()
	defer eng.mu.Unlock()
	if len(eng.opts) != 3 || eng.opts[1].DryRun || !eng.opts[2].DryRun {
		t.Errorf("passes: %+v", eng.opts)
	}
}

// A local change that wakes the loop together with a dry-run request is
// still synced: the dry run does not swallow it.
func TestDryRunDoesNotSwallowAChange(t *testing.T) {
	d := testDaemon(t, t.TempDir())
	eng := &fakeEngine{gate: make(chan struct{}), passed: make(chan int, 16)}
	runLoop(t, d, eng)
	waitFor(t, "the first pass", func() bool { return eng.count() == 1 })
	// While the startup pass runs, a dry run is asked for and another
	// device changes the bucket: the loop meets both at once.
	p := d.pair()
	p.syncReq <- syncCall{req: ipc.SyncRequest{DryRun: true}}
	p.remote <- struct{}{}
	for range 3 {
		select {
		case eng.gate <- struct{}{}:
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d passes: the change was not synced", eng.count())
		}
	}
	eng.mu.Lock()
	defer eng.mu.Unlock()
	real := 0
	for _, o := range eng.opts[1:] {
		if !o.DryRun {
			real++
		}
	}
	if len(eng.opts) != 3 || real != 1 {
		t.Errorf("passes after the change: %+v, want a dry run and one real pass", eng.opts[1:])
	}
}

// TestPushLiveRelaxesTheInterval: while the change events flow (and the
// folder is watched), the interval's full pass is only a safety net,
// every 15 minutes; each interval still checks the folder locally, and a
// folder that is not the one the last pass saw (a mount over it, another
// in its place) gets its pass at once. When the events stop, the
// interval's passes are back.
func TestPushLiveRelaxesTheInterval(t *testing.T) {
	d := testDaemon(t, t.TempDir())
	d.live.interval = 100 * time.Millisecond
	eng := &fakeEngine{passed: make(chan int, 64)}
	runLoop(t, d, eng)
	waitFor(t, "interval passes", func() bool { return eng.count() >= 3 })
	d.mu.Lock()
	s := d.session
	d.mu.Unlock()

	if !s.setPushLive(true) || s.setPushLive(true) {
		t.Fatal("setPushLive does not report the change (once)")
	}
	waitFor(t, "the next full pass 15 minutes out", func() bool {
		st := d.Status(t.Context())
		return st.NextSync != nil && time.Until(*st.NextSync) > 14*time.Minute
	})
	n := eng.count()
	time.Sleep(600 * time.Millisecond) // six intervals
	if got := eng.count(); got != n {
		t.Errorf("%d interval passes while the change events were live", got-n)
	}

	// a pass that left news for the other side is followed by one at
	// once, live or not
	first := n + 1
	eng.mu.Lock()
	eng.next = func(k int) (syncer.Result, error) { return syncer.Result{Again: k == first}, nil }
	eng.mu.Unlock()
	if _, err := d.Sync(t.Context(), ipc.SyncRequest{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the follow-up pass", func() bool { return eng.count() >= n+2 })
	time.Sleep(300 * time.Millisecond)
	if got := eng.count(); got != n+2 {
		t.Errorf("%d passes after the one that asked for a follow-up, want just the follow-up", got-n-1)
	}
	n = eng.count()

	// another folder in its place: not the one the last pass saw
	if err := os.Rename(d.cfg.Folder, d.cfg.Folder+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(d.cfg.Folder, 0o700); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a pass for the replaced folder", func() bool { return eng.count() > n })
	waitFor(t, "rest again", func() bool {
		st := d.Status(t.Context())
		return st.NextSync != nil && time.Until(*st.NextSync) > 14*time.Minute
	})

	n = eng.count()
	s.setPushLive(false)
	waitFor(t, "interval passes again", func() bool { return eng.count() >= n+3 })
	if st := d.Status(t.Context()); st.NextSync == nil || time.Until(*st.NextSync) > time.Second {
		t.Errorf("next sync %v after the events stopped, want within the 100 ms interval", st.NextSync)
	}
}

// TestRemoteKeysMakeQuickPasses: while the change events flow, a change
// they announce by its keys gets a pass over those keys alone
// (PassOptions.RemotePaths, coalesced, sorted); a change of unknown
// keys, or one announced while the events were down, gets the full pass,
// and so does every one after it until a full pass ran.
func TestRemoteKeysMakeQuickPasses(t *testing.T) {
	d := testDaemon(t, t.TempDir())
	eng := &fakeEngine{passed: make(chan int, 64)}
	eng.next = func(n int) (syncer.Result, error) {
		eng.mu.Lock()
		defer eng.mu.Unlock()
		return syncer.Result{Quick: eng.opts[n-1].RemotePaths != nil}, nil
	}
	runLoop(t, d, eng)
	waitFor(t, "the first pass", func() bool { return eng.count() == 1 })
	d.mu.Lock()
	s := d.session
	d.mu.Unlock()
	pass := func(what string, wake func()) syncer.PassOptions {
		t.Helper()
		n := eng.count()
		wake()
		waitFor(t, what, func() bool { return eng.count() > n })
		time.Sleep(50 * time.Millisecond) // no second pass for one wake-up
		if got := eng.count(); got != n+1 {
			t.Fatalf("%s: %d passes, want 1", what, got-n)
		}
		return eng.lastOpt()
	}

	// events not live yet: keys or not, the full pass
	if o := pass("a change before the events are live", func() { s.wakePairs([]string{"a.md"}) }); o.RemotePaths != nil {
		t.Errorf("pass while the events were down got RemotePaths %q", o.RemotePaths)
	}
	if o := pass("the events coming up", func() { s.setPushLive(true) }); o.RemotePaths != nil || o.Trigger != "remote" {
		t.Errorf("pass when the events came up = %+v, want a full one (trigger remote)", o)
	}
	// live: two announcements before the loop takes them, one quick pass
	p := d.pair()
	o := pass("announced keys", func() {
		p.tellRemote([]string{"b/c.md", "a.md"})
		p.tellRemote([]string{"a.md"})
	})
	if !slices.Equal(o.RemotePaths, []string{"a.md", "b/c.md"}) || o.Paths != nil {
		t.Errorf("pass over announced keys: RemotePaths %q Paths %q, want [a.md b/c.md]", o.RemotePaths, o.Paths)
	}
	// a change of unknown keys among them: the full pass
	o = pass("unknown keys", func() {
		p.tellRemote([]string{"a.md"})
		p.tellRemote(nil)
	})
	if o.RemotePaths != nil {
		t.Errorf("pass over a change of unknown keys got RemotePaths %q", o.RemotePaths)
	}
	// too many keys: the full pass
	many := make([]string, syncer.MaxQuickPaths+1)
	for i := range many {
		many[i] = fmt.Sprintf("n%03d.md", i)
	}
	if o := pass("too many keys", func() { s.wakePairs(many) }); o.RemotePaths != nil {
		t.Errorf("pass over %d keys got RemotePaths (%d)", len(many), len(o.RemotePaths))
	}
	if o := pass("keys after a full pass", func() { s.wakePairs([]string{"z.md"}) }); !slices.Equal(o.RemotePaths, []string{"z.md"}) {
		t.Errorf("pass after a full one: RemotePaths %q, want [z.md]", o.RemotePaths)
	}
	// the events going down and up again: a change meanwhile went
	// unannounced, so the full pass
	s.setPushLive(false)
	if o := pass("the events up again", func() { s.setPushLive(true) }); o.RemotePaths != nil {
		t.Errorf("pass when the events came up again got RemotePaths %q", o.RemotePaths)
	}
}
