package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/server/events"
	"github.com/basicmachines-co/bm-agent/server/storage"
	"github.com/basicmachines-co/bm-agent/server/store"
)

// fakeProvider records RevokeKey calls, fails them while failing is set and
// serves settable bucket fingerprints.
type fakeProvider struct {
	storage.Provider // only the methods below are called
	mu               sync.Mutex
	revoked          []string
	failing          bool
	prints           map[string]string
}

func (p *fakeProvider) RevokeKey(_ context.Context, k storage.Key) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revoked = append(p.revoked, k.AccessKey)
	if p.failing {
		return errors.New("provider down")
	}
	return nil
}

func (p *fakeProvider) calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.revoked...)
}

func (p *fakeProvider) set(f func(p *fakeProvider)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

type fingerprinting struct{ *fakeProvider }

func (p fingerprinting) BucketFingerprint(_ context.Context, bucket string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.prints[bucket]
	if !ok {
		return "", errors.New("no such bucket")
	}
	if v == "busy" {
		return "", storage.ErrBusy
	}
	return v, nil
}

type fakeHook struct {
	mu  sync.Mutex
	evs []events.Event
}

func (h *fakeHook) Trigger(ev events.Event) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.evs = append(h.evs, ev)
	return true
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var quiet = slog.New(slog.DiscardHandler)

var t0 = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "bm.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, tn := range []store.Tenant{
		{ID: "A", BucketName: "bucket-a", SubscriptionStatus: "active"},
		{ID: "B", BucketName: "bucket-b", SubscriptionStatus: "active"},
		{ID: "S", BucketName: "bucket-s", Status: store.TenantSuspended},
	} {
		if err := st.CreateTenant(context.Background(), tn); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func kinds(t *testing.T, st *store.Store, tenant string) string {
	t.Helper()
	ev, err := st.ListAudit(context.Background(), tenant, 50)
	if err != nil {
		t.Fatal(err)
	}
	var k []string
	for i := len(ev) - 1; i >= 0; i-- {
		k = append(k, ev[i].Kind)
	}
	return strings.Join(k, ",")
}

func TestRetryDeletions(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	prov := &fakeProvider{failing: true}
	clk := &clock{t: t0}
	w, err := New(Config{Store: st, Storage: prov, Now: clk.now, Logger: quiet, RetryInterval: time.Minute, PendingGrace: 2 * time.Minute, MaxBackoff: 4 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	revoked := t0.Add(-time.Hour)
	justNow := t0.Add(-10 * time.Second)
	for _, c := range []store.Credential{
		{ID: "failed", TenantID: "A", AccessKey: "AK-failed", RevokedAt: &revoked, DeletionStatus: store.DeletionFailed},
		{ID: "stale-pending", TenantID: "A", AccessKey: "AK-stale", RevokedAt: &revoked, DeletionStatus: store.DeletionPending},
		{ID: "fresh-pending", TenantID: "A", AccessKey: "AK-fresh", RevokedAt: &justNow, DeletionStatus: store.DeletionPending},
		{ID: "done", TenantID: "A", AccessKey: "AK-done", RevokedAt: &revoked, DeletionStatus: store.DeletionCompleted},
		{ID: "active", TenantID: "A", AccessKey: "AK-active"},
	} {
		c.CreatedAt = t0.Add(-2 * time.Hour)
		if err := st.InsertCredential(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	status := func(id string) string {
		c, err := st.CredentialByID(ctx, "A", id)
		if err != nil {
			t.Fatal(err)
		}
		return c.DeletionStatus
	}

	// Pass 1: the provider is down; the fresh pending one is left alone.
	done, failed, err := w.RetryDeletions(ctx)
	if err != nil || done != 0 || failed != 2 {
		t.Fatalf("pass 1 = %d, %d, %v; want 0, 2", done, failed, err)
	}
	if got := strings.Join(prov.calls(), ","); got != "AK-failed,AK-stale" {
		t.Errorf("pass 1 revoked %s", got)
	}
	if s := status("stale-pending"); s != store.DeletionFailed {
		t.Errorf("stale pending is %q after a failure, want failed", s)
	}
	// Within the backoff nothing is tried.
	clk.add(30 * time.Second)
	if _, failed, _ := w.RetryDeletions(ctx); failed != 0 || len(prov.calls()) != 2 {
		t.Errorf("tried within backoff: failed=%d calls=%v", failed, prov.calls())
	}
	// After a minute both (and now the formerly fresh one) are tried; the
	// backoff doubles to 2 minutes.
	clk.add(2 * time.Minute)
	if _, failed, _ := w.RetryDeletions(ctx); failed != 3 {
		t.Errorf("pass 3 failed=%d, want 3", failed)
	}
	// 90s later only the formerly fresh one (backoff 1m) is due.
	clk.add(90 * time.Second)
	if _, failed, _ := w.RetryDeletions(ctx); failed != 1 || prov.calls()[len(prov.calls())-1] != "AK-fresh" {
		t.Errorf("within a doubled backoff: failed=%d calls=%v, want only AK-fresh", failed, prov.calls())
	}
	// The provider is back.
	prov.set(func(p *fakeProvider) { p.failing = false })
	clk.add(2 * time.Minute)
	done, failed, err = w.RetryDeletions(ctx)
	if err != nil || done != 3 || failed != 0 {
		t.Errorf("recovery pass = %d, %d, %v; want 3, 0", done, failed, err)
	}
	for _, id := range []string{"failed", "stale-pending", "fresh-pending"} {
		if s := status(id); s != store.DeletionCompleted {
			t.Errorf("%s: %q, want completed", id, s)
		}
	}
	if s := status("active"); s != "" {
		t.Errorf("active key touched: %q", s)
	}
	if got := kinds(t, st, "A"); got != "credential.deleted,credential.deleted,credential.deleted" {
		t.Errorf("audit = %s", got)
	}
	if left, _ := st.PendingDeletions(ctx, 10); len(left) != 0 {
		t.Errorf("still pending: %+v", left)
	}
}

func TestRevokeOrphans(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	prov := &fakeProvider{}
	clk := &clock{t: t0}
	day := 24 * time.Hour
	old, recent := t0.Add(-100*day), t0.Add(-day)
	for _, c := range []struct {
		id, tenant string
		created    time.Time
		used       *time.Time
	}{
		{"never-used", "A", old, nil},
		{"used-long-ago", "B", old, &old},
		{"used-recently", "A", old, &recent},
		{"new", "A", recent, nil},
	} {
		if err := st.InsertCredential(ctx, store.Credential{ID: c.id, TenantID: c.tenant, AccessKey: "AK-" + c.id, ProviderRef: "ref-" + c.id,
			CreatedAt: c.created, LastUsedAt: c.used}); err != nil {
			t.Fatal(err)
		}
	}
	w, _ := New(Config{Store: st, Storage: prov, Now: clk.now, Logger: quiet})
	if n, err := w.RevokeOrphans(ctx); n != 0 || err != nil {
		t.Errorf("disabled job revoked %d, %v", n, err)
	}
	w, _ = New(Config{Store: st, Storage: prov, Now: clk.now, Logger: quiet, OrphanAfter: 90 * day})
	n, err := w.RevokeOrphans(ctx)
	if err != nil || n != 2 {
		t.Fatalf("RevokeOrphans = %d, %v; want 2", n, err)
	}
	if got := strings.Join(prov.calls(), ","); got != "AK-never-used,AK-used-long-ago" {
		t.Errorf("provider revoked %s", got)
	}
	for id, tenant := range map[string]string{"never-used": "A", "used-long-ago": "B"} {
		c, _ := st.CredentialByID(ctx, tenant, id)
		if c.Active() || c.DeletionStatus != store.DeletionCompleted || !c.RevokedAt.Equal(t0) {
			t.Errorf("%s = %+v", id, c)
		}
	}
	if n, _ := st.CountActiveCredentials(ctx, "A"); n != 2 {
		t.Errorf("A has %d active keys, want 2", n)
	}
	if got := kinds(t, st, "A"); got != AuditCredentialOrphaned {
		t.Errorf("A audit = %s", got)
	}
	ev, _ := st.ListAudit(ctx, "B", 1)
	if len(ev) != 1 || !strings.Contains(ev[0].Detail, "last_used=2026-02-21") {
		t.Errorf("B audit = %+v", ev)
	}
	// Idempotent.
	if n, _ := w.RevokeOrphans(ctx); n != 0 {
		t.Errorf("second pass revoked %d", n)
	}
	// A provider failure leaves the key revoked with deletion failed, for
	// RetryDeletions.
	prov.set(func(p *fakeProvider) { p.failing = true })
	clk.add(91 * day)
	if n, _ := w.RevokeOrphans(ctx); n != 2 {
		t.Errorf("later pass revoked %d, want 2", n)
	}
	if c, _ := st.CredentialByID(ctx, "A", "new"); c.DeletionStatus != store.DeletionFailed {
		t.Errorf("new: %+v", c)
	}
}

func TestCheckBuckets(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	fp := fingerprinting{&fakeProvider{prints: map[string]string{"bucket-a": "a1", "bucket-b": "b1", "bucket-s": "s1"}}}
	clk := &clock{t: t0}
	hub, hook := events.NewHub(0), &fakeHook{}
	subA := hub.Subscribe("A")
	defer subA.Close()
	w, _ := New(Config{Store: st, Storage: fp, Events: hub, Hook: hook, Now: clk.now, Logger: quiet})

	if n, err := w.CheckBuckets(ctx); n != 0 || err != nil {
		t.Fatalf("first pass = %d, %v (only records)", n, err)
	}
	// A changes without a notification; B changes and was notified.
	fp.set(func(p *fakeProvider) {
		p.prints["bucket-a"], p.prints["bucket-b"], p.prints["bucket-s"] = "a2", "b2", "s2"
	})
	clk.add(time.Minute)
	hub.Publish(events.Event{TenantID: "B", Reason: "sync", At: clk.now()})
	clk.add(time.Minute)
	n, err := w.CheckBuckets(ctx)
	if err != nil || n != 1 {
		t.Fatalf("second pass = %d, %v; want 1", n, err)
	}
	want := events.Event{TenantID: "A", Reason: "fallback", At: t0.Add(2 * time.Minute)}
	select {
	case ev := <-subA.C():
		ev.ID = "" // the hub's numbering
		if !reflect.DeepEqual(ev, want) {
			t.Errorf("event %+v, want %+v", ev, want)
		}
	default:
		t.Error("no fallback event for A")
	}
	hook.mu.Lock()
	if len(hook.evs) != 1 || !reflect.DeepEqual(hook.evs[0], want) {
		t.Errorf("hook = %+v", hook.evs)
	}
	hook.mu.Unlock()
	// Unchanged: nothing.
	clk.add(time.Minute)
	if n, _ := w.CheckBuckets(ctx); n != 0 {
		t.Errorf("unchanged pass = %d", n)
	}
	if got := kinds(t, st, "A"); got != "bucket.changed" {
		t.Errorf("audit A = %s", got)
	}
	// Busy (a write in flight): nothing, and the last value stays the one
	// compared, so a change made meanwhile that nobody announced is
	// announced by the next pass.
	fp.set(func(p *fakeProvider) { p.prints["bucket-a"] = "busy" })
	clk.add(time.Minute)
	if n, err := w.CheckBuckets(ctx); n != 0 || err != nil {
		t.Errorf("busy pass = %d, %v; want 0, nil", n, err)
	}
	select {
	case ev := <-subA.C():
		t.Errorf("busy pass published %+v", ev)
	default:
	}
	fp.set(func(p *fakeProvider) { p.prints["bucket-a"] = "a3" })
	clk.add(time.Minute)
	if n, err := w.CheckBuckets(ctx); n != 1 || err != nil {
		t.Errorf("pass after busy over an unannounced change = %d, %v; want 1", n, err)
	}
	select {
	case <-subA.C():
	default:
		t.Error("no fallback event after the busy pass")
	}
	// A provider without fingerprints: no-op.
	w2, _ := New(Config{Store: st, Storage: &fakeProvider{}})
	if n, err := w2.CheckBuckets(ctx); n != 0 || err != nil {
		t.Errorf("no fingerprinter = %d, %v", n, err)
	}
}

func TestServeStops(t *testing.T) {
	st := openStore(t)
	w, err := New(Config{Store: st, Storage: &fakeProvider{}, RetryInterval: 10 * time.Millisecond, OrphanAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Serve(ctx) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not stop")
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New without store accepted")
	}
}

// expiring is a provider that keeps multipart uploads: their start times.
type expiring struct {
	*fakeProvider
	uploads map[string]time.Time
	cutoffs []time.Time
}

func (p *expiring) ExpireUploads(_ context.Context, cutoff time.Time) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutoffs = append(p.cutoffs, cutoff)
	n := 0
	for id, began := range p.uploads {
		if began.Before(cutoff) {
			delete(p.uploads, id)
			n++
		}
	}
	return n, nil
}

func (p *expiring) left() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []string
	for id := range p.uploads {
		ids = append(ids, id)
	}
	return ids
}

func TestExpireUploads(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	clk := &clock{t: t0}
	prov := &expiring{fakeProvider: &fakeProvider{}, uploads: map[string]time.Time{
		"abandoned": t0.Add(-25 * time.Hour),
		"recent":    t0.Add(-23 * time.Hour),
	}}
	w, err := New(Config{Store: st, Storage: prov, Now: clk.now, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := w.ExpireUploads(ctx); err != nil || n != 1 {
		t.Fatalf("ExpireUploads = %d, %v; want 1 (the upload older than the default 24 h)", n, err)
	}
	if left := prov.left(); !reflect.DeepEqual(left, []string{"recent"}) {
		t.Errorf("uploads left = %v, want [recent]", left)
	}
	if got := prov.cutoffs[0]; !got.Equal(t0.Add(-24 * time.Hour)) {
		t.Errorf("cutoff = %v, want now - 24h", got)
	}
	clk.add(2 * time.Hour)
	if n, err := w.ExpireUploads(ctx); err != nil || n != 1 {
		t.Fatalf("ExpireUploads two hours later = %d, %v; want 1", n, err)
	}

	// A configured age; a negative one turns the job off.
	prov.uploads["x"] = clk.now().Add(-2 * time.Hour)
	off, err := New(Config{Store: st, Storage: prov, Now: clk.now, Logger: quiet, UploadMaxAge: -1})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := off.ExpireUploads(ctx); err != nil || n != 0 || len(prov.left()) != 1 {
		t.Errorf("disabled ExpireUploads = %d, %v, %d left", n, err, len(prov.left()))
	}
	short, err := New(Config{Store: st, Storage: prov, Now: clk.now, Logger: quiet, UploadMaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := short.ExpireUploads(ctx); err != nil || n != 1 {
		t.Errorf("ExpireUploads with a 1 h age = %d, %v; want 1", n, err)
	}

	// A provider without uploads of its own: nothing to do.
	plain, err := New(Config{Store: st, Storage: &fakeProvider{}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := plain.ExpireUploads(ctx); err != nil || n != 0 {
		t.Errorf("ExpireUploads without an UploadExpirer = %d, %v", n, err)
	}
}

func TestServeExpiresUploads(t *testing.T) {
	st := openStore(t)
	prov := &expiring{fakeProvider: &fakeProvider{}, uploads: map[string]time.Time{"old": time.Now().Add(-48 * time.Hour)}}
	w, err := New(Config{Store: st, Storage: prov, Logger: quiet, UploadExpiryInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Serve(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for len(prov.left()) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("Serve did not expire the old upload within 30 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve = %v", err)
	}
}

// counting is a fingerprinting provider that counts its bucket checks.
type counting struct {
	fingerprinting
	n atomic.Int64
}

func (p *counting) BucketFingerprint(ctx context.Context, bucket string) (string, error) {
	p.n.Add(1)
	return p.fingerprinting.BucketFingerprint(ctx, bucket)
}

// TestServeOneReplicaAtATime: two replicas' workers on one database run
// each job on one of them only (the bucket check is not made twice, nor
// its fallback events published twice), and when the holder stops the
// other takes the job over.
func TestServeOneReplicaAtATime(t *testing.T) {
	st := openStore(t)
	prints := map[string]string{"bucket-a": "a1", "bucket-b": "b1"}
	replicas := make([]*counting, 2)
	stops := make([]context.CancelFunc, 2)
	dones := make([]chan struct{}, 2)
	for i := range replicas {
		replicas[i] = &counting{fingerprinting: fingerprinting{&fakeProvider{prints: prints}}}
		w, err := New(Config{Store: st, Storage: replicas[i], FallbackInterval: 20 * time.Millisecond,
			Holder: fmt.Sprintf("replica-%d", i), Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		stops[i], dones[i] = cancel, make(chan struct{})
		go func() { defer close(dones[i]); _ = w.Serve(ctx) }()
	}
	defer func() {
		for i := range stops {
			stops[i]()
			<-dones[i]
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for replicas[0].n.Load()+replicas[1].n.Load() < 20 {
		if time.Now().After(deadline) {
			t.Fatal("the bucket check did not run")
		}
		time.Sleep(10 * time.Millisecond)
	}
	holder, other := 0, 1
	if replicas[1].n.Load() > 0 {
		holder, other = 1, 0
	}
	if replicas[other].n.Load() != 0 {
		t.Fatalf("both replicas ran the bucket check: %d and %d checks", replicas[0].n.Load(), replicas[1].n.Load())
	}
	stops[holder]()
	<-dones[holder]
	before := replicas[holder].n.Load()
	for replicas[other].n.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the other replica did not take the job over when the holder stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if replicas[holder].n.Load() != before {
		t.Error("the stopped replica went on checking")
	}
}
