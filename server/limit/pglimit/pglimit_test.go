package pglimit

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/internal/syncbuf"
	"github.com/basicmachines-co/bm-agent/server/limit"
	"github.com/basicmachines-co/bm-agent/server/store"
	"github.com/basicmachines-co/bm-agent/server/store/pgtest"
)

// pg is this test binary's PostgreSQL server, started by the first test
// that needs it.
var pg pgtest.Shared

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &pg)) }

var secret = bytes.Repeat([]byte("s"), 32)

// openDB opens the store on dsn (a new database when dsn is "") and
// returns its database, closed at the end of the test.
func openDB(t *testing.T, dsn string) (*sql.DB, string) {
	t.Helper()
	if dsn == "" {
		dsn = pg.Get(t).NewDatabase(t)
	}
	s, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.DB(), dsn
}

func newBackend(t *testing.T, db *sql.DB, cfg Config) *Backend {
	t.Helper()
	cfg.DB = db
	if cfg.Secret == nil {
		cfg.Secret = secret
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// clock is a settable time, safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// backends are a Local and a PostgreSQL Backend on one clock: the two must
// answer alike.
func backends(t *testing.T) (*clock, map[string]limit.Backend) {
	db, _ := openDB(t, "")
	c := &clock{t: time.Unix(1e9, 0)}
	return c, map[string]limit.Backend{
		"local":    limit.Local{Now: c.now},
		"postgres": newBackend(t, db, Config{Now: c.now}),
	}
}

func TestRateMatchesLocal(t *testing.T) {
	c, bs := backends(t)
	for name, b := range bs {
		t.Run(name, func(t *testing.T) {
			l := b.Rate("test", limit.Rate{PerMinute: 6, Burst: 2}) // one every 10 s, two at once
			for i, tc := range []struct {
				key     string
				advance time.Duration
				ok      bool
				wait    time.Duration
			}{
				{"a", 0, true, 0},
				{"a", 0, true, 0},
				{"a", 0, false, 10 * time.Second},
				{"b", 0, true, 0}, // another key has its own bucket
				{"a", 5 * time.Second, false, 5 * time.Second},
				{"a", 5 * time.Second, true, 0},
				{"a", 0, false, 10 * time.Second},
				{"a", time.Hour, true, 0}, // full again
				{"a", 0, true, 0},
				{"a", 0, false, 10 * time.Second},
			} {
				c.add(tc.advance)
				ok, wait := l.Allow(t.Context(), tc.key)
				if ok != tc.ok || wait.Round(time.Millisecond) != tc.wait {
					t.Errorf("step %d (%s): Allow = %v, %s; want %v, %s", i, tc.key, ok, wait, tc.ok, tc.wait)
				}
			}
			if ok, _ := b.Rate("none", limit.Rate{PerMinute: -1}).Allow(t.Context(), "a"); !ok {
				t.Error("a negative rate limits")
			}
		})
	}
}

func TestBackoffMatchesLocal(t *testing.T) {
	c, bs := backends(t)
	for name, b := range bs {
		t.Run(name, func(t *testing.T) {
			f := b.Backoff("test", limit.BackoffPolicy{Free: 2, Base: time.Second, Max: 8 * time.Second, Forget: time.Hour})
			for i, tc := range []struct {
				op   string // fail, wait, reset
				adv  time.Duration
				want time.Duration
			}{
				{"wait", 0, 0},
				{"fail", 0, 0},
				{"fail", 0, 0}, // two free
				{"fail", 0, time.Second},
				{"wait", 500 * time.Millisecond, 500 * time.Millisecond},
				{"fail", 500 * time.Millisecond, 2 * time.Second},
				{"fail", 0, 4 * time.Second},
				{"fail", 0, 8 * time.Second},
				{"fail", 0, 8 * time.Second}, // capped
				{"wait", 3 * time.Second, 5 * time.Second},
				{"wait", 5 * time.Second, 0},
				{"fail", 2 * time.Hour, 0}, // forgotten after an hour
				{"fail", 0, 0},
				{"fail", 0, time.Second},
				{"reset", 0, 0},
				{"wait", 0, 0},
				{"fail", 0, 0},
			} {
				c.add(tc.adv)
				var got time.Duration
				switch tc.op {
				case "fail":
					got = f.Fail(t.Context(), "acct")
				case "wait":
					got = f.Wait(t.Context(), "acct")
				case "reset":
					f.Reset(t.Context(), "acct")
				}
				if got != tc.want {
					t.Errorf("step %d: %s = %s, want %s", i, tc.op, got, tc.want)
				}
			}
			if w := f.Wait(t.Context(), "other"); w != 0 {
				t.Errorf("another key waits %s", w)
			}
			if w := b.Backoff("none", limit.BackoffPolicy{}).Fail(t.Context(), "acct"); w != 0 {
				t.Errorf("no backoff waits %s", w)
			}
		})
	}
}

// TestConcurrentTakesCountExactly: many goroutines of two replicas (two
// Backends, two connection pools) taking from one bucket at once let
// exactly its burst through, and the other limits of the same key are
// untouched.
func TestConcurrentTakesCountExactly(t *testing.T) {
	db, dsn := openDB(t, "")
	db2, _ := openDB(t, dsn)
	replicas := []*Backend{newBackend(t, db, Config{}), newBackend(t, db2, Config{})}
	const burst, workers, each = 300, 64, 10
	r := limit.Rate{PerMinute: 0, Burst: burst} // the burst, then one a day
	var allowed, refused atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		l := replicas[w%2].Rate("exact", r)
		wg.Go(func() {
			for range each {
				if ok, wait := l.Allow(t.Context(), "192.0.2.7"); ok {
					allowed.Add(1)
				} else if wait <= 0 {
					t.Errorf("refused with a wait of %s", wait)
				} else {
					refused.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if allowed.Load() != burst || refused.Load() != workers*each-burst {
		t.Errorf("%d goroutines × %d takes of a bucket of %d: %d allowed, %d refused; want exactly %d allowed",
			workers, each, burst, allowed.Load(), refused.Load(), burst)
	}
	for _, b := range replicas {
		if n := b.Fallbacks(); n != 0 {
			t.Errorf("%d calls fell back", n)
		}
	}
	if ok, _ := replicas[0].Rate("other", r).Allow(t.Context(), "192.0.2.7"); !ok {
		t.Error("another limit of the same key is refused")
	}
}

// TestConcurrentFailuresCountExactly: failures counted at once by many
// goroutines of two replicas add up exactly, and the wait they see is
// the one of the count.
func TestConcurrentFailuresCountExactly(t *testing.T) {
	db, dsn := openDB(t, "")
	db2, _ := openDB(t, dsn)
	replicas := []*Backend{newBackend(t, db, Config{}), newBackend(t, db2, Config{})}
	p := limit.BackoffPolicy{Free: 5, Base: time.Second, Max: time.Hour, Forget: time.Hour}
	const workers, each = 64, 10
	var wg sync.WaitGroup
	for w := range workers {
		f := replicas[w%2].Backoff("exact", p)
		wg.Go(func() {
			for range each {
				f.Fail(t.Context(), "ada@example.com")
			}
		})
	}
	wg.Wait()
	var n int
	if err := db.QueryRow(`SELECT n FROM rate_failures WHERE name = 'exact'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != workers*each {
		t.Errorf("%d goroutines × %d failures counted %d, want %d", workers, each, n, workers*each)
	}
	if w := replicas[1].Backoff("exact", p).Wait(t.Context(), "ada@example.com"); w < 59*time.Minute {
		t.Errorf("after %d failures the other replica waits %s, want the hour of the cap", n, w)
	}
}

// TestKeysAreHashed: no stored row holds a raw key, and the stored hash
// depends on the secret.
func TestKeysAreHashed(t *testing.T) {
	db, _ := openDB(t, "")
	b := newBackend(t, db, Config{})
	raw := []string{"192.0.2.7", "2001:db8:1:2::/64", "ada@example.com", "BCDFGHJK"}
	for _, k := range raw {
		b.Rate("r", limit.Rate{PerMinute: 1, Burst: 1}).Allow(t.Context(), k)
		b.Backoff("f", limit.BackoffPolicy{Base: time.Second, Max: time.Second}).Fail(t.Context(), k)
	}
	var keys [][]byte
	for _, q := range []string{`SELECT key FROM rate_buckets`, `SELECT key FROM rate_failures`} {
		rows, err := db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var k []byte
			if err := rows.Scan(&k); err != nil {
				t.Fatal(err)
			}
			keys = append(keys, k)
		}
		rows.Close()
	}
	if len(keys) != 2*len(raw) {
		t.Fatalf("%d rows, want %d", len(keys), 2*len(raw))
	}
	for _, k := range keys {
		for _, r := range raw {
			if len(k) != 32 || bytes.Contains(k, []byte(r)) || bytes.Contains(k, []byte(strings.ToLower(r))) {
				t.Errorf("stored key %x holds %q or is not a SHA-256", k, r)
			}
		}
	}
	other := newBackend(t, db, Config{Secret: bytes.Repeat([]byte("o"), 32)})
	if bytes.Equal(b.hash(raw[0]), other.hash(raw[0])) {
		t.Error("the hash of a key does not depend on the secret")
	}
}

// TestPrune: full buckets and forgotten failures are deleted; the rest
// stay.
func TestPrune(t *testing.T) {
	db, _ := openDB(t, "")
	c := &clock{t: time.Unix(1e9, 0)}
	b := newBackend(t, db, Config{Now: c.now})
	r := b.Rate("r", limit.Rate{PerMinute: 60, Burst: 10}) // full 10 s after the last
	f := b.Backoff("f", limit.BackoffPolicy{Base: time.Second, Max: time.Minute, Forget: time.Hour})
	r.Allow(t.Context(), "old")
	f.Fail(t.Context(), "old")
	c.add(30 * time.Minute)
	r.Allow(t.Context(), "new")
	f.Fail(t.Context(), "new")
	c.add(31 * time.Minute)
	if err := b.Prune(t.Context()); err != nil {
		t.Fatal(err)
	}
	count := func(table string) int {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count("rate_buckets"); n != 0 {
		t.Errorf("%d buckets left, want 0 (both full)", n)
	}
	if n := count("rate_failures"); n != 1 {
		t.Errorf("%d failure rows left, want 1 (the one of the last hour)", n)
	}
	if w := f.Wait(t.Context(), "new"); w != 0 {
		t.Errorf("Wait after prune = %s", w)
	}
}

// TestFallbackWhenDatabaseFails: while the tables cannot be used, the
// limits hold per process (the local fallback), with one warning that
// names neither the key nor the secret; when they can again, the shared
// counts apply again.
func TestFallbackWhenDatabaseFails(t *testing.T) {
	db, _ := openDB(t, "")
	logs := &syncbuf.Buffer{}
	b := newBackend(t, db, Config{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	r := b.Rate("login", limit.Rate{PerMinute: 0, Burst: 2})
	f := b.Backoff("account", limit.BackoffPolicy{Free: 1, Base: time.Minute, Max: time.Hour})
	const key = "192.0.2.99"
	if ok, _ := r.Allow(t.Context(), key); !ok {
		t.Fatal("first take refused")
	}
	if _, err := db.Exec(`ALTER TABLE rate_buckets RENAME TO rate_buckets_away; ALTER TABLE rate_failures RENAME TO rate_failures_away`); err != nil {
		t.Fatal(err)
	}
	var got []bool
	for range 4 {
		ok, wait := r.Allow(t.Context(), key)
		got = append(got, ok)
		if !ok && wait <= 0 {
			t.Errorf("fallback refused with wait %s", wait)
		}
	}
	if fmt.Sprint(got) != "[true true false false]" {
		t.Errorf("takes while PostgreSQL fails: %v, want the local burst of 2 then refusals", got)
	}
	if w := f.Fail(t.Context(), key); w != 0 {
		t.Errorf("first failure waits %s", w)
	}
	if w := f.Fail(t.Context(), key); w != time.Minute {
		t.Errorf("second failure waits %s, want a minute (the local backoff)", w)
	}
	if w := f.Wait(t.Context(), key); w <= 0 {
		t.Error("the local backoff does not hold while PostgreSQL fails")
	}
	if b.Fallbacks() != 7 {
		t.Errorf("%d fallbacks, want 7", b.Fallbacks())
	}
	out := logs.String()
	if n := strings.Count(out, "shared rate limits unavailable"); n != 1 {
		t.Errorf("%d warnings for 7 failed calls, want 1:\n%s", n, out)
	}
	if strings.Contains(out, key) || strings.Contains(out, string(secret)) {
		t.Errorf("the log names the key or the secret:\n%s", out)
	}

	if _, err := db.Exec(`ALTER TABLE rate_buckets_away RENAME TO rate_buckets; ALTER TABLE rate_failures_away RENAME TO rate_failures`); err != nil {
		t.Fatal(err)
	}
	if ok, _ := r.Allow(t.Context(), key); !ok {
		t.Error("shared again: the second take of the shared bucket refused")
	}
	if ok, _ := r.Allow(t.Context(), key); ok {
		t.Error("shared again: a third take allowed past the shared burst of 2")
	}
	if !strings.Contains(logs.String(), "shared rate limits available again") {
		t.Errorf("no word of the recovery:\n%s", logs.String())
	}
}

// TestClosedDatabaseFallsBack: a database that is gone (closed) falls
// back too; nothing panics or allows without limit.
func TestClosedDatabaseFallsBack(t *testing.T) {
	db, _ := openDB(t, "")
	b := newBackend(t, db, Config{})
	r := b.Rate("login", limit.Rate{PerMinute: 0, Burst: 1})
	db.Close()
	if ok, _ := r.Allow(t.Context(), "k"); !ok {
		t.Error("first take refused")
	}
	if ok, _ := r.Allow(t.Context(), "k"); ok {
		t.Error("second take allowed past the burst of 1")
	}
}

// TestCanceledRequestStillCounts: a take whose request context is
// already canceled (the client hung up) still counts in PostgreSQL.
func TestCanceledRequestStillCounts(t *testing.T) {
	db, _ := openDB(t, "")
	b := newBackend(t, db, Config{})
	f := b.Backoff("account", limit.BackoffPolicy{Free: 0, Base: time.Minute, Max: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	f.Fail(ctx, "ada@example.com")
	if b.Fallbacks() != 0 {
		t.Errorf("a canceled request's failure fell back")
	}
	if w := f.Wait(t.Context(), "ada@example.com"); w <= 0 {
		t.Error("a canceled request's failure was not counted")
	}
}

func TestNewRefuses(t *testing.T) {
	if _, err := New(Config{Secret: secret}); err == nil {
		t.Error("New without a database: no error")
	}
	if _, err := New(Config{DB: &sql.DB{}, Secret: []byte("short")}); err == nil {
		t.Error("New with a short secret: no error")
	}
}

// BenchmarkAllow measures one take of a bucket: in this process's memory
// and in PostgreSQL (one round trip on loopback), from one goroutine and
// from many at once on one key (the rows lock one another) or on a key
// each. Run it with
//
//	go test -run '^$' -bench Allow ./server/limit/pglimit/
func BenchmarkAllow(b *testing.B) {
	dsn := pg.Get(b).NewDatabase(b)
	s, err := store.Open(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	shared, err := New(Config{DB: s.DB(), Secret: secret})
	if err != nil {
		b.Fatal(err)
	}
	r := limit.Rate{PerMinute: 1e9, Burst: 1e6}
	for name, be := range map[string]limit.Backend{"local": limit.Local{}, "postgres": shared} {
		l := be.Rate("bench", r)
		b.Run(name+"/serial", func(b *testing.B) {
			for b.Loop() {
				l.Allow(context.Background(), "192.0.2.1")
			}
		})
		b.Run(name+"/parallel-one-key", func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					l.Allow(context.Background(), "192.0.2.2")
				}
			})
		})
		var n atomic.Int64
		b.Run(name+"/parallel-own-keys", func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				key := fmt.Sprintf("192.0.3.%d", n.Add(1))
				for pb.Next() {
					l.Allow(context.Background(), key)
				}
			})
		})
	}
	if shared.Fallbacks() != 0 {
		b.Errorf("%d calls fell back", shared.Fallbacks())
	}
}
