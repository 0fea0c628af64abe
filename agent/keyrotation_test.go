package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/basicmachines-co/bm-agent/agent/mount"
	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/cloudapi"
	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// keyServer is a tenant API that mints numbered keys and records revokes.
type keyServer struct {
	mu      sync.Mutex
	minted  int
	revoked []string
	fail    bool // answer mints with 500
	srv     *httptest.Server
}

func newKeyServer(t *testing.T) *keyServer {
	t.Helper()
	k := &keyServer{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+tenantapi.PathMountCredentials, func(w http.ResponseWriter, r *http.Request) {
		k.mu.Lock()
		defer k.mu.Unlock()
		if k.fail {
			w.WriteHeader(http.StatusInternalServerError)
			json.NewEncoder(w).Encode(tenantapi.ErrorBody{Detail: "provider down"})
			return
		}
		k.minted++
		json.NewEncoder(w).Encode(tenantapi.MountCredentials{TenantID: "t1", BucketName: "b1",
			AccessKey: fmt.Sprintf("AK%d", k.minted), SecretKey: fmt.Sprintf("secret-%d", k.minted),
			EndpointURL: "http://127.0.0.1:1", Region: "us-east-1", CredentialID: fmt.Sprintf("cred-%d", k.minted)})
	})
	mux.HandleFunc("DELETE "+tenantapi.PathMountCredentials+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		k.mu.Lock()
		defer k.mu.Unlock()
		k.revoked = append(k.revoked, r.PathValue("id"))
		json.NewEncoder(w).Encode(tenantapi.RevokeResponse{ID: r.PathValue("id"), Revoked: true, DeletionStatus: "completed"})
	})
	k.srv = httptest.NewServer(mux)
	t.Cleanup(k.srv.Close)
	return k
}

func (k *keyServer) counts() (int, []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.minted, append([]string(nil), k.revoked...)
}

func (k *keyServer) client(t *testing.T) *cloudapi.Client {
	t.Helper()
	c, err := cloudapi.NewClient(k.srv.URL, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "tok"}), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c.MaxAttempts = 1
	return c
}

// runSessionLoop runs d's sync loop over s until the test ends.
func runSessionLoop(t *testing.T, d *Daemon, s *session) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	go d.runSession(ctx, s)
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
}

// keyedEngine is a fake engine bound to one key: passes fail with
// ErrKeyRejected while reject says so for its key.
type keyedEngine struct {
	fakeEngine
	key string
}

// TestRejectedKeyIsReplaced: a pass that fails because S3 rejects the key
// makes the daemon mint a new key, save it, rebuild the engine, revoke the
// old key and run the pass again, recorded as "key-replaced" in the
// history; a key the new engine's S3 also rejects is not replaced again
// within the burst.
func TestRejectedKeyIsReplaced(t *testing.T) {
	d := testDaemon(t, t.TempDir())
	ks := newKeyServer(t)
	var mu sync.Mutex
	rejected := map[string]bool{"AK-old": true}
	var engines []*keyedEngine
	newEngine := func(key string) *keyedEngine {
		e := &keyedEngine{key: key}
		e.next = func(int) (syncer.Result, error) {
			mu.Lock()
			defer mu.Unlock()
			if rejected[key] {
				return syncer.Result{}, fmt.Errorf("syncer: pass: %w: list bucket: InvalidAccessKeyId", syncer.ErrKeyRejected)
			}
			return syncer.Result{Uploaded: 1, RemoteChanged: true}, nil
		}
		mu.Lock()
		engines = append(engines, e)
		mu.Unlock()
		return e
	}
	d.newEngine = func(_ context.Context, _ *Daemon, key *cloudapi.S3Key, _ string) (passer, error) {
		return newEngine(key.AccessKey), nil
	}
	s := testSession(d, newEngine("AK-old"), ks.client(t), &cloudapi.S3Key{AccessKey: "AK-old", SecretKey: "x", CredentialID: "cred-old", Bucket: "b1"})
	runSessionLoop(t, d, s)

	waitFor(t, "the replacement pass", func() bool {
		h, _ := d.History(context.Background(), 10)
		for _, p := range h.Passes {
			if p.Trigger == triggerKeyReplaced && p.Error == "" {
				return true
			}
		}
		return false
	})
	minted, revoked := ks.counts()
	if minted != 1 {
		t.Errorf("minted %d keys, want 1", minted)
	}
	if len(revoked) != 1 || revoked[0] != "cred-old" {
		t.Errorf("revoked %v, want [cred-old]", revoked)
	}
	stored, err := d.creds.LoadS3Key()
	if err != nil || stored.AccessKey != "AK1" || stored.CredentialID != "cred-1" {
		t.Errorf("stored key %v (%v), want AK1", stored, err)
	}
	h, _ := d.History(context.Background(), 10)
	// newest first
	if len(h.Passes) < 2 || h.Passes[0].Trigger != triggerKeyReplaced || !strings.Contains(h.Passes[1].Error, "revoked or rejected") {
		t.Errorf("history %+v: want the rejected pass, then the key-replaced one", h.Passes)
	}
	if st := d.Status(context.Background()); st.State != ipc.StateIdle {
		t.Errorf("state %q (%s), want idle", st.State, st.Error)
	}

	// Now S3 rejects the new key too, and every key minted after it: one
	// replacement in the burst, then a clear state and no minting loop.
	mu.Lock()
	for _, k := range []string{"AK1", "AK2", "AK3"} {
		rejected[k] = true
	}
	mu.Unlock()
	for i := 0; i < 3; i++ {
		if _, err := d.Sync(context.Background(), ipc.SyncRequest{Wait: true}); err != nil {
			t.Fatal(err)
		}
	}
	minted, _ = ks.counts()
	if minted != 2 {
		t.Errorf("minted %d keys in all, want 2 (one per failure burst)", minted)
	}
	st := d.Status(context.Background())
	if st.State != ipc.StateError || !strings.Contains(st.Error, "rejects the device's key") {
		t.Errorf("status %q %q, want an error saying the key is still rejected", st.State, st.Error)
	}
}

// TestKeyMintFailureIsAClearState: when no new key can be minted the
// daemon says so and keeps the old key.
func TestKeyMintFailureIsAClearState(t *testing.T) {
	d := testDaemon(t, t.TempDir())
	ks := newKeyServer(t)
	ks.fail = true
	eng := &fakeEngine{next: func(int) (syncer.Result, error) {
		return syncer.Result{}, fmt.Errorf("syncer: pass: %w", syncer.ErrKeyRejected)
	}}
	s := testSession(d, eng, ks.client(t), &cloudapi.S3Key{AccessKey: "AK-old", CredentialID: "cred-old"})
	runSessionLoop(t, d, s)
	waitFor(t, "the error state", func() bool {
		st := d.Status(context.Background())
		return st.State == ipc.StateError && strings.Contains(st.Error, "could not be minted")
	})
	if _, revoked := ks.counts(); len(revoked) != 0 {
		t.Errorf("revoked %v although no new key exists", revoked)
	}
	if eng.count() != 1 {
		t.Errorf("%d passes, want 1 (no retry without a new key)", eng.count())
	}
}

// progressEngine is a fake engine whose passes report progress.
type progressEngine struct{ steps []syncer.Progress }

func (p *progressEngine) Pass(_ context.Context, opt syncer.PassOptions) (syncer.Result, error) {
	for _, s := range p.steps {
		if opt.Progress != nil {
			opt.Progress(s)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return syncer.Result{Start: time.Now(), Uploaded: 3}, nil
}

// TestProgressOnWatchStream: the engine's progress reports reach the
// watch stream as progress events of the pass, in order, ending at the
// totals.
func TestProgressOnWatchStream(t *testing.T) {
	d := testDaemon(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := d.WatchEvents(ctx)
	if ev := <-events; ev.Kind != ipc.EventSnapshot {
		t.Fatalf("first event %q, want a snapshot", ev.Kind)
	}
	eng := &progressEngine{steps: []syncer.Progress{
		{},
		{BytesDone: 0, BytesTotal: 300, FilesDone: 0, FilesTotal: 3},
		{BytesDone: 100, BytesTotal: 300, FilesDone: 1, FilesTotal: 3, Rate: 100, ETA: 2 * time.Second},
		{BytesDone: 100, BytesTotal: 300, FilesDone: 1, FilesTotal: 3, Rate: 100, ETA: 2 * time.Second},
		{BytesDone: 300, BytesTotal: 300, FilesDone: 3, FilesTotal: 3, Rate: 150},
	}}
	runLoop(t, d, eng)
	var got []ipc.Progress
	timeout := time.After(10 * time.Second)
	for len(got) < 3 {
		select {
		case ev := <-events:
			if ev.Kind == ipc.EventProgress {
				got = append(got, *ev.Progress)
			}
		case <-timeout:
			t.Fatalf("progress events %+v, want 3", got)
		}
	}
	want := []ipc.Progress{
		{Pass: "startup", BytesTotal: 300, FilesTotal: 3},
		{Pass: "startup", BytesDone: 100, BytesTotal: 300, FilesDone: 1, FilesTotal: 3, Rate: 100, ETA: 2 * time.Second},
		{Pass: "startup", BytesDone: 300, BytesTotal: 300, FilesDone: 3, FilesTotal: 3, Rate: 150},
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("progress event %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// checkEngine is a fake engine that can check the bucket.
type checkEngine struct {
	fakeEngine
	err error
}

func (c *checkEngine) Check(context.Context) error { return c.err }

// TestDoctorS3Check: the doctor's "S3 reachable" check runs the engine's
// own check and says how to fix a rejected key or an unreachable endpoint.
func TestDoctorS3Check(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		ok      bool
		fixHas  string
		infoHas string
	}{
		{"good key", nil, true, "", "lists the bucket"},
		{"revoked key", fmt.Errorf("syncer: check: %w (S3 said InvalidAccessKeyId)", syncer.ErrKeyRejected), false, "mints a new key", "revoked or rejected"},
		{"offline", fmt.Errorf("syncer: check: %w http://127.0.0.1:9: %w", syncer.ErrOffline, errors.New("connection refused")), false, "network", "127.0.0.1:9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := testDaemon(t, t.TempDir())
			d.session = testSession(d, &checkEngine{err: tt.err}, nil, nil)
			var c *ipc.DoctorCheck
			for _, ch := range d.Doctor(context.Background()).Checks {
				if ch.Name == "S3 reachable" {
					c = &ch
				}
			}
			if c == nil {
				t.Fatal("no S3 check in the report")
			}
			if c.OK != tt.ok || c.Warn || !strings.Contains(c.Fix, tt.fixHas) || !strings.Contains(c.Detail, tt.infoHas) {
				t.Errorf("check = %+v", *c)
			}
		})
	}
}

// fakeMounts is a mount manager that records what it is asked to do; the
// real one (FUSE) is tested in agent/mount.
type fakeMounts struct {
	mu      sync.Mutex
	mounted bool
	keys    []string // access keys mounted with, in order
	unmount int
}

func (f *fakeMounts) Mount(_ context.Context, cfg mount.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mounted = true
	f.keys = append(f.keys, cfg.Remote.AccessKey)
	return nil
}

func (f *fakeMounts) Unmount(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mounted = false
	f.unmount++
	return nil
}

func (f *fakeMounts) Status() mount.MountStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return mount.MountStatus{Mounted: f.mounted, MountPoint: "/mnt/notes", Profile: "fast"}
}

func (f *fakeMounts) Close() error                         { return nil }
func (f *fakeMounts) CleanupOrphans(context.Context) error { return nil }

func (f *fakeMounts) state() ([]string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.keys...), f.unmount
}

// TestMountFollowsKeyReplacement: a mount running on a key that S3 then
// rejects is moved onto the replacement key, at the same place.
func TestMountFollowsKeyReplacement(t *testing.T) {
	d := testDaemon(t, t.TempDir())
	fm := &fakeMounts{}
	d.mounts = fm
	ks := newKeyServer(t)
	var mu sync.Mutex
	rejectOld := false
	d.newEngine = func(_ context.Context, _ *Daemon, key *cloudapi.S3Key, _ string) (passer, error) {
		return &fakeEngine{}, nil
	}
	eng := &fakeEngine{next: func(int) (syncer.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		if rejectOld {
			return syncer.Result{}, fmt.Errorf("syncer: pass: %w", syncer.ErrKeyRejected)
		}
		return syncer.Result{}, nil
	}}
	s := testSession(d, eng, ks.client(t), &cloudapi.S3Key{AccessKey: "AK-old", SecretKey: "x", CredentialID: "cred-old", Bucket: "b1"})
	runSessionLoop(t, d, s)
	waitFor(t, "the session", func() bool { return d.Status(context.Background()).LastSync != nil })
	if _, err := d.Mount(context.Background(), ipc.MountRequest{MountPoint: "/mnt/notes", Profile: "fast"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	rejectOld = true
	mu.Unlock()
	if _, err := d.Sync(context.Background(), ipc.SyncRequest{Wait: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the remount on the new key", func() bool {
		keys, _ := fm.state()
		return len(keys) == 2
	})
	keys, unmounts := fm.state()
	if keys[0] != "AK-old" || keys[1] != "AK1" || unmounts != 1 {
		t.Errorf("mounted with %v after %d unmounts, want [AK-old AK1] after 1", keys, unmounts)
	}
}
