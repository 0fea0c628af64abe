package pgevents

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/server/events"
	"github.com/basicmachines-co/bm-agent/server/store"
	"github.com/basicmachines-co/bm-agent/server/store/pgtest"
)

// pg is this test binary's PostgreSQL server, started by the first test
// that needs it.
var pg pgtest.Shared

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &pg)) }

// replica is one server's part: its own pool on the database, its hub and
// its bus, running until stop.
type replica struct {
	db   *sql.DB
	hub  *events.Hub
	bus  *Bus
	stop func()
}

func newDatabase(t *testing.T) string {
	t.Helper()
	return pg.Get(t).NewDatabase(t)
}

func startReplica(t *testing.T, dsn string, cfg Config) *replica {
	t.Helper()
	s, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{db: s.DB(), hub: events.NewHub(1 << 12)}
	cfg.DB, cfg.Hub = r.db, r.hub
	if cfg.Poll == 0 {
		cfg.Poll = 200 * time.Millisecond
	}
	if r.bus, err = New(context.Background(), cfg); err != nil {
		s.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.bus.Run(ctx) }()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			s.Close()
		})
	}
	t.Cleanup(r.stop)
	return r
}

// next waits for sub's next event.
func next(t *testing.T, sub *events.Subscription, within time.Duration) (events.Event, bool) {
	t.Helper()
	select {
	case ev := <-sub.C():
		return ev, true
	case <-time.After(within):
		return events.Event{}, false
	}
}

// TestAcrossReplicas: an event published on one replica reaches the
// devices of its tenant on every replica, this one included, with the
// same ID everywhere, and never another tenant's.
func TestAcrossReplicas(t *testing.T) {
	dsn := newDatabase(t)
	a, b := startReplica(t, dsn, Config{}), startReplica(t, dsn, Config{})
	onA, onB, otherOnB := a.hub.Subscribe("T1"), b.hub.Subscribe("T1"), b.hub.Subscribe("T2")
	var lat []time.Duration
	for i := range 50 {
		start := time.Now()
		from := a
		if i%2 == 1 {
			from = b
		}
		from.hub.Publish(events.Event{TenantID: "T1", Device: "laptop", Reason: "sync", Keys: []string{fmt.Sprintf("n%d.md", i)}})
		got := map[string]string{}
		for name, sub := range map[string]*events.Subscription{"A": onA, "B": onB} {
			ev, ok := next(t, sub, 5*time.Second)
			if !ok {
				t.Fatalf("event %d did not reach replica %s", i, name)
			}
			if want := fmt.Sprintf("n%d.md", i); len(ev.Keys) != 1 || ev.Keys[0] != want || ev.Device != "laptop" || ev.TenantID != "T1" {
				t.Fatalf("replica %s got %+v, want keys [%s]", name, ev, want)
			}
			got[name] = ev.ID
		}
		lat = append(lat, time.Since(start))
		if got["A"] != got["B"] || got["A"] == "" {
			t.Fatalf("IDs differ between replicas: %v", got)
		}
	}
	if ev, ok := next(t, otherOnB, 300*time.Millisecond); ok {
		t.Errorf("tenant T2 got T1's event %+v", ev)
	}
	slices.Sort(lat)
	t.Logf("FIGURE pgevents: publish on one replica → both replicas' subscribers: p50 %s max %s (%d events)",
		lat[len(lat)/2].Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond), len(lat))
}

// TestOneOrderForTheFleet: replicas publishing at once deliver every
// event to every replica once, in one order, with growing IDs.
func TestOneOrderForTheFleet(t *testing.T) {
	dsn := newDatabase(t)
	reps := []*replica{startReplica(t, dsn, Config{}), startReplica(t, dsn, Config{}), startReplica(t, dsn, Config{})}
	subs := make([]*events.Subscription, len(reps))
	for i, r := range reps {
		subs[i] = r.hub.Subscribe("T")
	}
	const each = 300
	var wg sync.WaitGroup
	for i, r := range reps {
		wg.Go(func() {
			for j := range each {
				r.hub.Publish(events.Event{TenantID: "T", Keys: []string{fmt.Sprintf("%d/%d", i, j)}})
			}
		})
	}
	wg.Wait()
	var orders [][]string
	for i, sub := range subs {
		var keys []string
		var last uint64
		for len(keys) < each*len(reps) {
			ev, ok := next(t, sub, 10*time.Second)
			if !ok {
				t.Fatalf("replica %d got %d of %d events", i, len(keys), each*len(reps))
			}
			_, n, _ := strings.Cut(ev.ID, ".")
			seq, _ := strconv.ParseUint(n, 10, 64)
			if seq <= last {
				t.Fatalf("replica %d: ID %s after %d", i, ev.ID, last)
			}
			last = seq
			keys = append(keys, ev.Keys[0])
		}
		orders = append(orders, keys)
	}
	for i := 1; i < len(orders); i++ {
		if !slices.Equal(orders[0], orders[i]) {
			t.Errorf("replica %d delivered in another order than replica 0", i)
		}
	}
	sorted := slices.Clone(orders[0])
	sort.Strings(sorted)
	if len(slices.Compact(sorted)) != each*len(reps) {
		t.Errorf("events delivered twice or lost")
	}
	for _, r := range reps {
		if d := r.bus.Dropped(); d != 0 {
			t.Errorf("%d events dropped", d)
		}
	}
}

// TestResumeOnAnotherReplica: a device whose replica dies reconnects to
// another with the last ID it saw and gets exactly what it missed; a
// replica started later can resume it too (it loads the window), but
// not from before the window.
func TestResumeOnAnotherReplica(t *testing.T) {
	dsn := newDatabase(t)
	a, b := startReplica(t, dsn, Config{}), startReplica(t, dsn, Config{})
	sub := a.hub.Subscribe("T")
	b.hub.Publish(events.Event{TenantID: "T", Keys: []string{"seen.md"}})
	seen, ok := next(t, sub, 5*time.Second)
	if !ok {
		t.Fatal("first event not delivered")
	}
	a.stop() // the device's replica dies
	for _, k := range []string{"missed-1.md", "other-tenant.md", "missed-2.md"} {
		tenant := "T"
		if strings.HasPrefix(k, "other") {
			tenant = "U"
		}
		b.hub.Publish(events.Event{TenantID: tenant, Keys: []string{k}})
	}
	waitFor(t, func() bool { return len(b.hub.LastPublished("T").String()) > 0 && b.bus.cursorAt() >= 4 })
	for name, r := range map[string]*replica{"running": b, "started later": startReplica(t, dsn, Config{})} {
		resumed, rp := r.hub.SubscribeAfter("T", seen.ID)
		var keys []string
		for _, ev := range rp.Events {
			keys = append(keys, ev.Keys...)
		}
		if !rp.Resumed || !slices.Equal(keys, []string{"missed-1.md", "missed-2.md"}) {
			t.Errorf("%s replica: replay %v resumed %v, want [missed-1.md missed-2.md]", name, keys, rp.Resumed)
		}
		resumed.Close()
	}
	// A replica whose window no longer holds the event resyncs the client.
	if _, err := b.db.Exec(`UPDATE change_events SET at = at - interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	late := startReplica(t, dsn, Config{})
	if _, rp := late.hub.SubscribeAfter("T", seen.ID); rp.Resumed || len(rp.Events) != 1 || rp.Events[0].Reason != events.ReasonResync {
		t.Errorf("resumed after an event past the window: %+v", rp)
	}
	// ... and pruning keeps the newest row, the numbering's high mark.
	if err := late.bus.prune(context.Background()); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := late.db.QueryRow(`SELECT count(*) FROM change_events`).Scan(&n); err != nil || n != 1 {
		t.Errorf("rows after pruning the past: %d (err %v), want the newest one", n, err)
	}
}

// TestListenerComesBack: a replica whose LISTEN connection is cut (its
// backend terminated) still delivers every event, and listens again.
func TestListenerComesBack(t *testing.T) {
	dsn := newDatabase(t)
	a, b := startReplica(t, dsn, Config{Poll: time.Hour}), startReplica(t, dsn, Config{Poll: time.Hour})
	sub := b.hub.Subscribe("T")
	a.hub.Publish(events.Event{TenantID: "T", Keys: []string{"before.md"}})
	if _, ok := next(t, sub, 5*time.Second); !ok {
		t.Fatal("no event before the cut")
	}
	var cut int
	if err := a.db.QueryRow(`SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE query LIKE 'LISTEN%' AND datname = current_database()) t`).Scan(&cut); err != nil || cut != 2 {
		t.Fatalf("listening connections cut: %d (err %v), want both replicas'", cut, err)
	}
	// Without polling, only a new LISTEN (and its catch-up) can deliver these.
	for i := range 3 {
		a.hub.Publish(events.Event{TenantID: "T", Keys: []string{fmt.Sprintf("after-%d.md", i)}})
	}
	for i := range 3 {
		ev, ok := next(t, sub, 15*time.Second)
		if !ok || ev.Keys[0] != fmt.Sprintf("after-%d.md", i) {
			t.Fatalf("after the cut: got %+v ok=%v, want after-%d.md", ev, ok, i)
		}
	}
}

// TestDropsWhatItCannotWrite: with the database gone, a batch is retried
// for GiveUp, then dropped and counted, and publishing never blocks.
func TestDropsWhatItCannotWrite(t *testing.T) {
	dsn := newDatabase(t)
	r := startReplica(t, dsn, Config{GiveUp: 300 * time.Millisecond, QueueMax: 4})
	r.db.Close()
	start := time.Now()
	for i := range 10 {
		r.hub.Publish(events.Event{TenantID: "T", Keys: []string{strconv.Itoa(i)}})
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("publishing with the database gone took %s", d)
	}
	waitFor(t, func() bool { return r.bus.Dropped() == 10 })
}

func (b *Bus) cursorAt() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cursor
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPublishWaitIsDurable: PublishWait returns once the event is in the
// table (a replica killed right after its answer loses nothing), and
// returns the error when it cannot be written.
func TestPublishWaitIsDurable(t *testing.T) {
	dsn := newDatabase(t)
	r := startReplica(t, dsn, Config{GiveUp: 300 * time.Millisecond})
	ctx := context.Background()
	for i := range 20 {
		if err := r.hub.PublishWait(ctx, events.Event{TenantID: "T", Keys: []string{strconv.Itoa(i)}}); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := r.db.QueryRow(`SELECT count(*) FROM change_events WHERE tenant_id = 'T'`).Scan(&n); err != nil || n != i+1 {
			t.Fatalf("after PublishWait %d: %d rows (err %v)", i, n, err)
		}
	}
	r.db.Close()
	if err := r.hub.PublishWait(ctx, events.Event{TenantID: "T"}); !errors.Is(err, ErrDropped) {
		t.Errorf("PublishWait with the database gone = %v, want ErrDropped", err)
	}
}
