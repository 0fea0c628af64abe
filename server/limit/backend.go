package limit

import (
	"context"
	"time"

	"golang.org/x/time/rate"
)

// Rate is the policy of a per-key rate limit: PerMinute requests a
// minute per key, in bursts of up to Burst (at least 1). A negative
// PerMinute is no limit; 0 is the burst, then one a day.
type Rate struct {
	PerMinute float64
	Burst     int
}

// Unlimited reports whether r limits nothing.
func (r Rate) Unlimited() bool { return r.PerMinute < 0 }

// Interval is the time between two requests at r's rate: what one more
// request a key has made costs it.
func (r Rate) Interval() time.Duration {
	if r.PerMinute <= 0 {
		return 24 * time.Hour
	}
	return time.Duration(float64(time.Minute) / r.PerMinute)
}

// BackoffPolicy is the policy of failures counted per key (see Backoff):
// the first Free failures cost nothing; each one after them makes the key
// wait Base, doubled per further failure up to Max. A key with no failure
// for Forget (at least Max) starts over. A Base or Max <= 0 is no backoff.
type BackoffPolicy struct {
	Free      int
	Base, Max time.Duration
	Forget    time.Duration
}

// Normalize is p with its bounds in order (Free >= 0, Max >= Base,
// Forget >= Max), and false when p is no backoff at all.
func (p BackoffPolicy) Normalize() (BackoffPolicy, bool) {
	if p.Base <= 0 || p.Max <= 0 {
		return p, false
	}
	p.Free = max(p.Free, 0)
	p.Max = max(p.Max, p.Base)
	p.Forget = max(p.Forget, p.Max)
	return p, true
}

// Delay is the wait that n failures in a row impose (p normalized).
func (p BackoffPolicy) Delay(n int) time.Duration {
	if n <= p.Free {
		return 0
	}
	d := p.Base
	for i := p.Free + 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	return min(d, p.Max)
}

// A Limiter is a per-key rate limit.
type Limiter interface {
	// Allow takes one request of key's allowance; when none is left it
	// reports how long until there is one.
	Allow(ctx context.Context, key string) (bool, time.Duration)
}

// Failures counts failed attempts per key, with backoff.
type Failures interface {
	// Wait is how long key must still wait before its next attempt (0:
	// go).
	Wait(ctx context.Context, key string) time.Duration
	// Fail records a failed attempt of key and returns the wait it now
	// has.
	Fail(ctx context.Context, key string) time.Duration
	// Reset forgets key's failures (after a success).
	Reset(ctx context.Context, key string)
}

// A Backend keeps the counts of named limits: Local in this process's
// memory, or one shared by a fleet of servers (package pglimit, in
// PostgreSQL), where every replica's limit of one name counts against
// the same keys. Names must be unique per Backend, and every replica must
// give a name the same policy. A Backend that cannot count (its database
// is down) answers in a way it documents; it never fails open silently.
type Backend interface {
	Rate(name string, r Rate) Limiter
	Backoff(name string, p BackoffPolicy) Failures
}

// Local is the Backend of this process's memory: Keyed and Backoff. Now
// is its clock (nil: time.Now). The zero value is ready to use.
type Local struct {
	Now func() time.Time
}

var _ Backend = Local{}

// Rate implements Backend with a Keyed.
func (l Local) Rate(_ string, r Rate) Limiter {
	if r.Unlimited() {
		return localRate{}
	}
	return localRate{NewKeyedRate(rate.Every(r.Interval()), r.Burst, l.Now)}
}

// Backoff implements Backend with a Backoff.
func (l Local) Backoff(_ string, p BackoffPolicy) Failures {
	b := NewBackoff(p.Free, p.Base, p.Max, p.Forget)
	if b != nil && l.Now != nil {
		b.now = l.Now
	}
	return localBackoff{b}
}

// localRate is a Keyed as a Limiter (a nil one allows everything).
type localRate struct{ k *Keyed }

func (l localRate) Allow(_ context.Context, key string) (bool, time.Duration) {
	return l.k.Allow(key)
}

// localBackoff is a Backoff as Failures (a nil one never waits).
type localBackoff struct{ b *Backoff }

func (l localBackoff) Wait(_ context.Context, key string) time.Duration { return l.b.Wait(key) }
func (l localBackoff) Fail(_ context.Context, key string) time.Duration { return l.b.Fail(key) }
func (l localBackoff) Reset(_ context.Context, key string)              { l.b.Reset(key) }

// Allowing is the Limiter of no limit.
var Allowing Limiter = localRate{}

// NoBackoff is the Failures that never wait.
var NoBackoff Failures = localBackoff{}
