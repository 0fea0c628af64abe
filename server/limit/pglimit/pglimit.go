// Package pglimit keeps rate limits in PostgreSQL, so that they hold
// across a fleet of bm-server replicas: a limit.Backend on the
// rate_buckets and rate_failures tables (migration 00006).
//
// Each call is one statement, one round trip: a token bucket is taken
// with one upsert (GCRA: the bucket is the time its next request is due,
// moved on by one interval per request let through), a failure counted
// with another; the row lock of the upsert makes concurrent calls of all
// replicas count exactly. Keys are stored as HMAC-SHA-256 hashes, keyed
// by a secret every replica has and the database does not (the raw
// client addresses, accounts and codes are never stored nor logged).
// Times are PostgreSQL's clock, so that the replicas' clocks need not
// agree. Rows past their time are deleted by each replica about once a
// minute, in the call that finds it due.
//
// When PostgreSQL cannot answer, a limit falls back to a limiter of this
// process's memory (Config.Fallback) and logs a warning (at most one a
// minute): the limits then hold per replica, as on a single server,
// rather than not at all (no unlimited guessing) or refusing every
// sign-in with a 503 (which a blip of the database would turn into an
// outage of every login). The routes these limits guard need PostgreSQL
// for what they do next anyway, so an outage refuses them there.
package pglimit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/basicmachines-co/bm-agent/server/limit"
)

// Defaults of a Backend.
const (
	DefaultTimeout       = 2 * time.Second
	DefaultPruneInterval = time.Minute
	// warnEvery bounds the warnings of falling back.
	warnEvery = time.Minute
)

// Config configures a Backend.
type Config struct {
	// DB is the store's database (PostgreSQL at schema 00006 or later).
	DB *sql.DB
	// Secret keys the hashes of the stored keys: at least 32 bytes, the
	// same on every replica (bm-server passes its OAuth secret; a label
	// of this package's own is mixed in).
	Secret []byte
	// Logger gets the warnings of falling back (nil: none).
	Logger *slog.Logger
	// Timeout bounds each statement (<= 0: DefaultTimeout); past it the
	// call falls back.
	Timeout time.Duration
	// PruneInterval is how often rows past their time are deleted (<= 0:
	// DefaultPruneInterval).
	PruneInterval time.Duration
	// Fallback makes the limiters used while PostgreSQL cannot answer
	// (nil: limit.Local{}).
	Fallback limit.Backend
	// Now is the clock (nil: PostgreSQL's); for tests.
	Now func() time.Time
}

// Backend is a limit.Backend in PostgreSQL. Make it with New.
type Backend struct {
	db       *sql.DB
	hashKey  []byte
	log      *slog.Logger
	timeout  time.Duration
	prune    time.Duration
	fallback limit.Backend
	now      func() time.Time

	lastPrune atomic.Int64 // unix nanoseconds of the last prune (local clock)

	warnMu   sync.Mutex
	lastWarn time.Time
	failing  bool

	fallbacks atomic.Int64
}

var _ limit.Backend = (*Backend)(nil)

// New returns a Backend with cfg.
func New(cfg Config) (*Backend, error) {
	switch {
	case cfg.DB == nil:
		return nil, errors.New("pglimit: new: no database")
	case len(cfg.Secret) < 32:
		return nil, fmt.Errorf("pglimit: new: secret must be at least 32 bytes, got %d", len(cfg.Secret))
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.PruneInterval <= 0 {
		cfg.PruneInterval = DefaultPruneInterval
	}
	if cfg.Fallback == nil {
		cfg.Fallback = limit.Local{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mac := hmac.New(sha256.New, cfg.Secret)
	mac.Write([]byte("bm-server pglimit keys"))
	b := &Backend{db: cfg.DB, hashKey: mac.Sum(nil), log: log, timeout: cfg.Timeout,
		prune: cfg.PruneInterval, fallback: cfg.Fallback, now: cfg.Now}
	b.lastPrune.Store(time.Now().UnixNano())
	return b, nil
}

// Fallbacks is how many calls fell back to the local limiters so far.
func (b *Backend) Fallbacks() int64 { return b.fallbacks.Load() }

// Rate implements limit.Backend: a token bucket per key in rate_buckets.
func (b *Backend) Rate(name string, r limit.Rate) limit.Limiter {
	if r.Unlimited() {
		return limit.Allowing
	}
	burst := max(r.Burst, 1)
	interval := r.Interval().Microseconds()
	return &bucket{b: b, name: name, interval: max(interval, 1), tolerance: max(interval, 1) * int64(burst),
		fallback: b.fallback.Rate(name, r)}
}

// Backoff implements limit.Backend: failures per key in rate_failures.
func (b *Backend) Backoff(name string, p limit.BackoffPolicy) limit.Failures {
	p, ok := p.Normalize()
	if !ok {
		return limit.NoBackoff
	}
	return &failures{b: b, name: name, p: p, fallback: b.fallback.Backoff(name, p)}
}

// nowSQL is the statement's time in microseconds: the parameter $3 if
// given (Config.Now), else PostgreSQL's (now() is the same all through
// one statement).
const nowSQL = "COALESCE($3::bigint, (extract(epoch FROM now()) * 1000000)::bigint)"

// sqlNow puts nowSQL into q where it says NOW.
func sqlNow(q string) string { return strings.ReplaceAll(q, "NOW", nowSQL) }

// takeSQL takes a request of the bucket ($1, $2) with interval $4 and
// tolerance $5 (the burst's worth of intervals), GCRA: a request is let
// through if, the bucket moved on by one interval from its due time (or
// from now, if that is past), it is no further ahead than the tolerance.
// A request refused leaves tat as it is; allowed says which it was.
var takeSQL = sqlNow(`
INSERT INTO rate_buckets AS b (name, key, tat, allowed) VALUES ($1, $2, NOW + $4, TRUE)
ON CONFLICT (name, key) DO UPDATE SET
    allowed = GREATEST(b.tat, NOW) + $4 <= NOW + $5,
    tat = CASE WHEN GREATEST(b.tat, NOW) + $4 <= NOW + $5 THEN GREATEST(b.tat, NOW) + $4 ELSE b.tat END
RETURNING tat, allowed, NOW`)

// failSQL counts a failure of ($1, $2), forgotten after $4 without one.
var failSQL = sqlNow(`
INSERT INTO rate_failures AS f (name, key, n, last, expires) VALUES ($1, $2, 1, NOW, NOW + $4)
ON CONFLICT (name, key) DO UPDATE SET
    n = CASE WHEN NOW - f.last >= $4 THEN 1 ELSE f.n + 1 END,
    last = GREATEST(f.last, NOW),
    expires = GREATEST(f.last, NOW) + $4
RETURNING n, last, NOW`)

// waitSQL reads the failures of ($1, $2).
var waitSQL = sqlNow(`SELECT n, last, NOW FROM rate_failures WHERE name = $1 AND key = $2`)

const resetSQL = `DELETE FROM rate_failures WHERE name = $1 AND key = $2`

// pruneSQL deletes what is past its time: a bucket whose due time is
// past is full, as if it had never been used.
var pruneSQL = [...]string{
	strings.ReplaceAll(sqlNow(`DELETE FROM rate_buckets WHERE tat < NOW`), "$3", "$1"),
	strings.ReplaceAll(sqlNow(`DELETE FROM rate_failures WHERE expires < NOW`), "$3", "$1"),
}

// hash is the stored form of key.
func (b *Backend) hash(key string) []byte {
	mac := hmac.New(sha256.New, b.hashKey)
	mac.Write([]byte(key))
	return mac.Sum(nil)
}

// nowArg is the $3 of a statement: Config.Now in microseconds, or NULL
// for PostgreSQL's clock.
func (b *Backend) nowArg() sql.NullInt64 {
	if b.now == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: b.now().UnixMicro(), Valid: true}
}

// ctx bounds a statement by the timeout. It does not end with the
// request's context: what a client that hangs up has done still counts.
func (b *Backend) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), b.timeout)
}

// failed records a statement of limit name that failed with err: the call
// falls back, with a warning at most once a minute.
func (b *Backend) failed(ctx context.Context, op, name string, err error) {
	b.fallbacks.Add(1)
	b.warnMu.Lock()
	now := time.Now()
	warn := !b.failing || now.Sub(b.lastWarn) >= warnEvery
	if warn {
		b.lastWarn = now
	}
	b.failing = true
	b.warnMu.Unlock()
	if warn {
		b.log.WarnContext(ctx, "shared rate limits unavailable: this replica's own limits apply until PostgreSQL answers",
			"op", op, "limit", name, "error", err)
	}
}

// ok records a statement that succeeded, and prunes when that is due.
func (b *Backend) ok(ctx context.Context) {
	b.warnMu.Lock()
	was := b.failing
	b.failing = false
	b.warnMu.Unlock()
	if was {
		b.log.InfoContext(ctx, "shared rate limits available again")
	}
	last := b.lastPrune.Load()
	now := time.Now().UnixNano()
	if time.Duration(now-last) < b.prune || !b.lastPrune.CompareAndSwap(last, now) {
		return
	}
	if err := b.Prune(ctx); err != nil {
		b.log.WarnContext(ctx, "shared rate limits: prune", "error", err)
	}
}

// Prune deletes the rows past their time: full buckets and forgotten
// failures. Every replica does so about once a minute by itself.
func (b *Backend) Prune(ctx context.Context) error {
	ctx, cancel := b.ctx(ctx)
	defer cancel()
	for _, q := range pruneSQL {
		if _, err := b.db.ExecContext(ctx, q, b.nowArg()); err != nil {
			return fmt.Errorf("pglimit: prune: %w", err)
		}
	}
	return nil
}

// bucket is a limit.Limiter in rate_buckets.
type bucket struct {
	b                   *Backend
	name                string
	interval, tolerance int64 // microseconds
	fallback            limit.Limiter
}

// Allow implements limit.Limiter.
func (k *bucket) Allow(ctx context.Context, key string) (bool, time.Duration) {
	qctx, cancel := k.b.ctx(ctx)
	defer cancel()
	var tat, now int64
	var allowed bool
	err := k.b.db.QueryRowContext(qctx, takeSQL, k.name, k.b.hash(key), k.b.nowArg(), k.interval, k.tolerance).
		Scan(&tat, &allowed, &now)
	if err != nil {
		k.b.failed(ctx, "take", k.name, err)
		return k.fallback.Allow(ctx, key)
	}
	k.b.ok(ctx)
	if allowed {
		return true, 0
	}
	return false, time.Duration(tat+k.interval-now-k.tolerance) * time.Microsecond
}

// failures is a limit.Failures in rate_failures.
type failures struct {
	b        *Backend
	name     string
	p        limit.BackoffPolicy // normalized
	fallback limit.Failures
}

// wait is the wait of n failures, the last at last, at now (µs).
func (f *failures) wait(n int, last, now int64) time.Duration {
	return max(time.Duration(last-now)*time.Microsecond+f.p.Delay(n), 0)
}

// Wait implements limit.Failures.
func (f *failures) Wait(ctx context.Context, key string) time.Duration {
	qctx, cancel := f.b.ctx(ctx)
	defer cancel()
	var n int
	var last, now int64
	err := f.b.db.QueryRowContext(qctx, waitSQL, f.name, f.b.hash(key), f.b.nowArg()).Scan(&n, &last, &now)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		f.b.ok(ctx)
		return 0
	case err != nil:
		f.b.failed(ctx, "wait", f.name, err)
		return f.fallback.Wait(ctx, key)
	}
	f.b.ok(ctx)
	return f.wait(n, last, now)
}

// Fail implements limit.Failures.
func (f *failures) Fail(ctx context.Context, key string) time.Duration {
	qctx, cancel := f.b.ctx(ctx)
	defer cancel()
	var n int
	var last, now int64
	err := f.b.db.QueryRowContext(qctx, failSQL, f.name, f.b.hash(key), f.b.nowArg(), f.p.Forget.Microseconds()).
		Scan(&n, &last, &now)
	if err != nil {
		f.b.failed(ctx, "fail", f.name, err)
		return f.fallback.Fail(ctx, key)
	}
	f.b.ok(ctx)
	return f.wait(n, last, now)
}

// Reset implements limit.Failures. The fallback forgets key too.
func (f *failures) Reset(ctx context.Context, key string) {
	f.fallback.Reset(ctx, key)
	qctx, cancel := f.b.ctx(ctx)
	defer cancel()
	if _, err := f.b.db.ExecContext(qctx, resetSQL, f.name, f.b.hash(key)); err != nil {
		f.b.failed(ctx, "reset", f.name, err)
		return
	}
	f.b.ok(ctx)
}
