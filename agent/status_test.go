package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/cloudapi"
	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/ui/cli"
)

func newTestStore() (*statusStore, *ipc.Hub) { return newTestStoreBuf(0) }

func newTestStoreBuf(buf int) (*statusStore, *ipc.Hub) {
	hub := ipc.NewHub(buf)
	return newStatusStore(ipc.Status{State: ipc.StateStarting}, hub, slog.New(slog.NewTextHandler(io.Discard, nil))), hub
}

// drain returns the events ch holds now.
func drain(ch <-chan ipc.Event) []ipc.Event {
	var out []ipc.Event
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return out
			}
			out = append(out, ev)
		default:
			return out
		}
	}
}

func TestStatusStorePublishes(t *testing.T) {
	tests := []struct {
		name   string
		update func(st *ipc.Status)
		kinds  []string // the events the update publishes, in order
		tr     *ipc.Transition
	}{
		{"no change", func(st *ipc.Status) {}, nil, nil},
		{"the same value again", func(st *ipc.Status) { st.State = ipc.StateStarting }, nil, nil},
		{"a field", func(st *ipc.Status) { st.Account = "ana@example.com" }, []string{ipc.EventState}, nil},
		{"a state", func(st *ipc.Status) { setStateOf(st, ipc.StateIdle, ipc.CodeNone, "") }, []string{ipc.EventState},
			&ipc.Transition{From: ipc.StateStarting, To: ipc.StateIdle}},
		{"a state with its reason", func(st *ipc.Status) {
			setUnreachableOf(st, unreachable{ipc.StateOffline, ipc.CodeOffline, "no network"})
		}, []string{ipc.EventState}, &ipc.Transition{From: ipc.StateStarting, To: ipc.StateOffline, Reason: ipc.CodeOffline}},
		{"a login to open", func(st *ipc.Status) { st.LoginURL = "http://127.0.0.1/login" }, []string{ipc.EventLogin, ipc.EventState}, nil},
		{"a hold", func(st *ipc.Status) {
			st.Hold = &ipc.Hold{Reason: ipc.HoldMaxDelete, Message: "too many", NeedsForce: true}
			setStateOf(st, ipc.StatePaused, ipc.HoldMaxDelete, "too many")
		}, []string{ipc.EventNotification, ipc.EventState}, &ipc.Transition{From: ipc.StateStarting, To: ipc.StatePaused, Reason: ipc.HoldMaxDelete}},
		{"conflicts", func(st *ipc.Status) { st.LastSync = &ipc.PassSummary{Start: time.Unix(1, 0), Conflicts: 2} },
			[]string{ipc.EventNotification, ipc.EventState}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestStore()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch := s.Watch(ctx)
			if ev := <-ch; ev.Kind != ipc.EventSnapshot || ev.Status.State != ipc.StateStarting {
				t.Fatalf("first event = %+v", ev)
			}
			before := s.Get()
			s.Update(tt.update)
			evs := drain(ch)
			var kinds []string
			for _, ev := range evs {
				kinds = append(kinds, ev.Kind)
			}
			if fmt.Sprint(kinds) != fmt.Sprint(tt.kinds) {
				t.Fatalf("events = %v, want %v", kinds, tt.kinds)
			}
			if len(evs) == 0 {
				return
			}
			last := evs[len(evs)-1]
			got := s.Get()
			if last.Status == nil || last.Status.State != got.State || last.Status.Account != got.Account {
				t.Errorf("published %+v, the store has %+v", last.Status, got)
			}
			switch {
			case tt.tr == nil && last.Transition != nil:
				t.Errorf("transition %+v for a change of no state", last.Transition)
			case tt.tr != nil && (last.Transition == nil || last.Transition.From != tt.tr.From || last.Transition.To != tt.tr.To ||
				last.Transition.Reason != tt.tr.Reason || !last.Transition.Since.Equal(before.Since) || !got.Since.Equal(last.Transition.At)):
				t.Errorf("transition = %+v, want %+v since %s", last.Transition, tt.tr, before.Since)
			}
		})
	}
}

func TestStatusReadsPublishNothing(t *testing.T) {
	s, _ := newTestStore()
	s.Update(func(st *ipc.Status) {
		st.Hold = &ipc.Hold{Reason: ipc.HoldLocalEmpty}
		st.NotSyncing = []ipc.FailedItem{{Path: "a"}}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Watch(ctx)
	<-ch
	for range 3 {
		st := s.Get()
		st.Hold.Reason = "changed by a reader" // a snapshot shares nothing with the store
		st.NotSyncing[0].Path = "changed too"
		s.View(func(*ipc.Status) {})
	}
	if evs := drain(ch); len(evs) > 0 {
		t.Errorf("reads published %d events", len(evs))
	}
	if st := s.Get(); st.Hold.Reason != ipc.HoldLocalEmpty || st.NotSyncing[0].Path != "a" {
		t.Errorf("a reader changed the store: %+v", st)
	}
}

// Every watcher sees every change after its snapshot, however the two
// interleave: the count it sees in its snapshot plus the events it gets
// add up to the last count.
func TestStatusWatchMissesNothing(t *testing.T) {
	const updates = 300
	s, _ := newTestStoreBuf(updates) // a watcher that falls behind is dropped: not what this tests
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= updates; i++ {
			s.Update(func(st *ipc.Status) { st.Devices = i })
		}
	}()
	for w := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if w%2 == 0 {
				time.Sleep(time.Duration(w) * 50 * time.Microsecond)
			}
			ch := s.Watch(ctx)
			snap := <-ch
			want := snap.Status.Devices + 1
			for want <= updates {
				select {
				case ev, ok := <-ch:
					if !ok {
						t.Errorf("watcher %d dropped", w)
						return
					}
					if ev.Status.Devices != want {
						t.Errorf("watcher %d: got %d, want %d", w, ev.Status.Devices, want)
						return
					}
					want++
				case <-time.After(10 * time.Second):
					t.Errorf("watcher %d: stuck at %d", w, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// Reading the status asks nothing of the server: a daemon whose server
// counts its requests sees none from any number of status reads.
func TestStatusMakesNoNetworkCall(t *testing.T) {
	addr, conns := hangUpServer(t)
	d := testDaemon(t, t.TempDir())
	d.cloud.Host = "http://" + addr
	runLoop(t, d, &fakeEngine{passed: make(chan int, 8)})
	for range 50 {
		d.Status(context.Background())
	}
	time.Sleep(100 * time.Millisecond)
	if n := conns(); n > 0 {
		t.Errorf("status reads opened %d connections to the server", n)
	}
}

// Each refusal of a request that needs a session names why, and the CLI
// turns it into the documented exit code.
func TestRefusalCodes(t *testing.T) {
	tests := []struct {
		name  string
		setup func(d *Daemon)
		want  error
		exit  int
	}{
		{"logged out", func(d *Daemon) { d.setState(ipc.StateLoggedOut, ipc.CodeNone, "") }, ipc.ErrLoginRequired, cli.ExitLoginRequired},
		{"login expired", func(d *Daemon) {
			d.sessionFailed(context.Background(), fmt.Errorf("resume: %w", cloudapi.ErrLoginRequired))
		},
			ipc.ErrLoginRequired, cli.ExitLoginRequired},
		{"no subscription", func(d *Daemon) {
			d.sessionFailed(context.Background(), fmt.Errorf("mount info: %w", &cloudapi.SubscriptionRequiredError{}))
		}, ipc.ErrSubscriptionRequired, cli.ExitSubscriptionRequired},
		{"tenant suspended", func(d *Daemon) { d.sessionFailed(context.Background(), errSuspended) }, ipc.ErrNoSession, cli.ExitError},
		{"server down", func(d *Daemon) {
			d.sessionFailed(context.Background(), fmt.Errorf("discover: %w", &net.OpError{Op: "dial", Err: errors.New("connection refused")}))
		}, ipc.ErrOffline, cli.ExitOffline},
		{"not configured", func(d *Daemon) { d.sessionFailed(context.Background(), errNotConfigured) }, ipc.ErrNotConfigured, cli.ExitError},
		{"the session failed", func(d *Daemon) { d.sessionFailed(context.Background(), errors.New("sync engine: bad folder")) }, ipc.ErrNoSession, cli.ExitError},
		{"starting with a login stored", func(d *Daemon) {
			if err := d.creds.SaveToken(&oauth2.Token{AccessToken: "a", RefreshToken: "r"}); err != nil {
				panic(err)
			}
		}, ipc.ErrBusy, cli.ExitBusy},
		{"starting with no login", func(d *Daemon) {}, ipc.ErrLoginRequired, cli.ExitLoginRequired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := testDaemon(t, t.TempDir())
			tt.setup(d)
			_, err := d.Sync(context.Background(), ipc.SyncRequest{Wait: true})
			if !errors.Is(err, tt.want) {
				t.Fatalf("sync: %v, want %v", err, tt.want)
			}
			if got := cli.ExitCode(err); got != tt.exit {
				t.Errorf("exit code %d, want %d (%v)", got, tt.exit, err)
			}
			for op, call := range map[string]func() error{
				"mount": func() error { _, err := d.Mount(context.Background(), ipc.MountRequest{}); return err },
				"versions": func() error {
					_, err := d.Versions(context.Background(), ipc.VersionsRequest{Path: "a.md"})
					return err
				},
			} {
				if err := call(); !errors.Is(err, tt.want) {
					t.Errorf("%s: %v, want %v", op, err, tt.want)
				}
			}
		})
	}
}

// errSuspended is what cloudapi returns for a 403 tenant_suspended.
var errSuspended = fmt.Errorf("mount info: %w", &cloudapi.APIError{Op: "mount info", Status: 403,
	Detail: "Suspended by the admin.", Kind: cloudapi.ErrTenantSuspended})

// A suspended tenant's state says so, with the server's message, and
// never asks for a login or a subscription that would not help.
func TestTenantSuspendedState(t *testing.T) {
	d := testDaemon(t, t.TempDir())
	d.sessionFailed(context.Background(), errSuspended)
	st := d.store.Get()
	if st.State != ipc.StateError || st.Code != ipc.CodeTenantSuspended || !strings.Contains(st.Error, "Suspended by the admin.") {
		t.Errorf("status = %s %s %q, want error tenant_suspended with the server's message", st.State, st.Code, st.Error)
	}
}

// A running session's refusals: held, paused.
func TestSessionRefusalCodes(t *testing.T) {
	d := testDaemon(t, t.TempDir())
	eng := &fakeEngine{passed: make(chan int, 8)}
	runLoop(t, d, eng)
	ctx := context.Background()
	waitFor(t, "the first pass", func() bool { return eng.count() >= 1 })
	if err := d.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := d.Sync(ctx, ipc.SyncRequest{Wait: true})
	if !errors.Is(err, ipc.ErrPaused) || cli.ExitCode(err) != cli.ExitSyncHeld {
		t.Errorf("sync while paused: %v (exit %d)", err, cli.ExitCode(err))
	}
	before := eng.count()
	if err := d.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	// the pass a resume starts clears holds it does not meet: wait for it
	waitFor(t, "the pass after resume", func() bool { return eng.count() > before && d.Status(ctx).State == ipc.StateIdle })
	d.setHold(&ipc.Hold{Reason: ipc.HoldMaxDelete, Message: "too many deletes", NeedsForce: true})
	_, err = d.Sync(ctx, ipc.SyncRequest{Wait: true})
	if !errors.Is(err, ipc.ErrHeld) || cli.ExitCode(err) != cli.ExitSyncHeld {
		t.Errorf("sync while held: %v (exit %d)", err, cli.ExitCode(err))
	}
}

// A daemon whose server is down at start says who is logged in and since
// when it is offline, not "logged out".
func TestServerDownAtStartKeepsTheLogin(t *testing.T) {
	d := testDaemon(t, t.TempDir())
	d.rememberAccount("ana@example.com")
	d.cloud.Host = "http://127.0.0.1:1" // nothing listens
	d.sessionFailed(context.Background(), fmt.Errorf("discover issuer: %w", &net.OpError{Op: "dial", Err: errors.New("connection refused")}))
	st := d.Status(context.Background())
	if !st.LoggedIn || st.Account != "ana@example.com" || !st.State.Unreachable() || st.OfflineSince == nil || st.Code == ipc.CodeNone {
		t.Fatalf("status with the server down: %+v", st)
	}
	since := *st.OfflineSince
	d.sessionFailed(context.Background(), fmt.Errorf("discover issuer: %w", &net.OpError{Op: "dial", Err: errors.New("connection refused")}))
	if st := d.Status(context.Background()); !st.OfflineSince.Equal(since) {
		t.Errorf("a retry moved offline-since from %s to %s", since, st.OfflineSince)
	}
	d.setState(ipc.StateIdle, ipc.CodeNone, "")
	if st := d.Status(context.Background()); st.OfflineSince != nil {
		t.Errorf("back online, offline since %s", st.OfflineSince)
	}
}

// A failed pass that could not reach the bucket says whether the server
// answers: the bucket alone, or everything.
func TestBucketUnreachableOrOffline(t *testing.T) {
	addr, _ := hangUpServer(t)
	for _, tc := range []struct {
		host string
		want ipc.State
	}{
		{"http://" + addr, ipc.StateBucketUnreachable},
		{"http://127.0.0.1:1", ipc.StateOffline},
	} {
		d := testDaemon(t, t.TempDir())
		d.cloud.Host = tc.host
		eng := &fakeEngine{passed: make(chan int, 8), next: func(int) (syncer.Result, error) {
			return syncer.Result{}, fmt.Errorf("pass: %w", syncer.ErrOffline)
		}}
		runLoop(t, d, eng)
		waitFor(t, "the failed pass", func() bool { return d.Status(context.Background()).Failures > 0 })
		if st := d.Status(context.Background()); st.State != tc.want || st.Code != ipc.Code(tc.want) || st.OfflineSince == nil {
			t.Errorf("server %s: state %s code %s since %v, want %s", tc.host, st.State, st.Code, st.OfflineSince, tc.want)
		}
	}
}

// hangUpServer listens on loopback until the test ends and hangs up on
// every connection; conns counts them.
func hangUpServer(t *testing.T) (addr string, conns func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	n := 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			n++
			mu.Unlock()
			c.Close()
		}
	}()
	return ln.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return n }
}
