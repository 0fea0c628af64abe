// Package limit bounds what one client may take of bm-server: connections
// held at once (Conns, a listener wrapper), requests per key and minute
// (Keyed, token buckets) and failed attempts, with a wait that doubles
// after each one (Backoff). Keys are client addresses (ClientKey), account
// names or codes. Entries are forgotten once idle, and a flood of distinct
// keys shares one overflow entry past MaxKeys, so memory stays bounded
// whatever the callers send.
//
// A Backend makes named limits behind two interfaces, Limiter (a rate)
// and Failures (a backoff): Local in this process's memory, or one shared
// by a fleet of servers (package pglimit), so that the callers do not
// change with where the counts live.
package limit

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// MaxKeys bounds the keys a Keyed or a Backoff tracks; past it, new keys
// share one entry (which an attacker with many keys then exhausts, not
// the tracked clients' own).
const MaxKeys = 100_000

// overflowKey is the entry keys share once MaxKeys are tracked.
const overflowKey = "\x00overflow"

// entry returns key's entry of m, making it with mk when there is none;
// once MaxKeys are tracked, a new key gets the shared overflow entry.
func entry[T any](m map[string]*T, key string, mk func() *T) *T {
	if e := m[key]; e != nil {
		return e
	}
	if len(m) >= MaxKeys {
		key = overflowKey
		if e := m[key]; e != nil {
			return e
		}
	}
	e := mk()
	m[key] = e
	return e
}

// ClientKey is the key of a client address (a host:port, as
// http.Request.RemoteAddr, or a bare IP): the IPv4 address, or the /64 of
// an IPv6 address (one host gets a /64; counting its addresses one by one
// would let it spread over 2^64 keys). An address it cannot parse is its
// own key.
func ClientKey(addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return ip.String()
	}
	p, _ := ip.Prefix(64)
	return p.String()
}

// RequestKey is ClientKey of r's remote address.
func RequestKey(r *http.Request) string { return ClientKey(r.RemoteAddr) }

// TooMany writes a 429 with Retry-After (whole seconds, at least 1) and
// a JSON body {"detail": msg} (the tenant API's error shape).
func TooMany(w http.ResponseWriter, retryAfter time.Duration, msg string) {
	w.Header().Set("Retry-After", RetryAfter(retryAfter))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write([]byte(`{"detail":` + strconv.Quote(msg) + `}`))
}

// RetryAfter is d as a Retry-After value: whole seconds, rounded up, at
// least 1.
func RetryAfter(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(s, 1), 10)
}

// Keyed is a token bucket per key: PerMinute requests a minute with bursts
// of Burst. The zero value and a nil *Keyed allow everything; so does a
// negative rate. It is safe for concurrent use.
type Keyed struct {
	limit rate.Limit
	burst int
	now   func() time.Time

	mu        sync.Mutex
	m         map[string]*keyedEntry
	lastSweep time.Time
}

type keyedEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

// NewKeyed returns a limiter of perMinute requests a minute per key with
// bursts of burst (at least 1); perMinute < 0 allows everything.
func NewKeyed(perMinute float64, burst int) *Keyed {
	return NewKeyedRate(rate.Limit(perMinute/60), burst, nil)
}

// NewKeyedRate is NewKeyed with the rate as rate.Limit (per second) and
// now as the clock (nil: time.Now); limit < 0 allows everything.
func NewKeyedRate(limit rate.Limit, burst int, now func() time.Time) *Keyed {
	if limit < 0 {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	return &Keyed{limit: limit, burst: max(burst, 1), now: now, m: map[string]*keyedEntry{}}
}

// Allow takes a token of key's bucket; when there is none it reports how
// long until there is.
func (k *Keyed) Allow(key string) (bool, time.Duration) {
	if k == nil || k.m == nil {
		return true, 0
	}
	now := k.now()
	k.mu.Lock()
	k.sweep(now)
	e := entry(k.m, key, func() *keyedEntry { return &keyedEntry{lim: rate.NewLimiter(k.limit, k.burst)} })
	e.seen = now
	k.mu.Unlock()
	r := e.lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Hour
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// idle is how long a key must go unused to be forgotten: by then its
// bucket is full again, so forgetting it changes nothing.
func (k *Keyed) idle() time.Duration {
	if k.limit <= 0 {
		return 24 * time.Hour
	}
	return max(time.Duration(float64(k.burst)/float64(k.limit)*float64(time.Second)), time.Minute)
}

// sweep forgets idle keys, once a minute (once a second while the map is
// full). The caller holds mu.
func (k *Keyed) sweep(now time.Time) {
	if !sweepDue(now.Sub(k.lastSweep), len(k.m)) {
		return
	}
	k.lastSweep = now
	idle := k.idle()
	for key, e := range k.m {
		if now.Sub(e.seen) >= idle {
			delete(k.m, key)
		}
	}
}

// Len is the number of keys tracked (for tests).
func (k *Keyed) Len() int {
	if k == nil {
		return 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.m)
}

// Backoff tracks failed attempts per key: the first Free failures cost
// nothing, each one after them makes the key wait Base, doubled per
// further failure up to Max. A key with no failure for Forget starts
// over. A nil *Backoff never makes anyone wait. It is safe for concurrent
// use.
type Backoff struct {
	p   BackoffPolicy // normalized
	now func() time.Time

	mu        sync.Mutex
	m         map[string]*failures
	lastSweep time.Time
}

type failures struct {
	n     int
	until time.Time // no attempt before
	last  time.Time // last failure
}

// NewBackoff returns a Backoff letting free failures pass, then waiting
// base, 2*base, ... up to top; counts are forgotten after forget without
// a failure (at least top).
func NewBackoff(free int, base, top, forget time.Duration) *Backoff {
	p, ok := BackoffPolicy{Free: free, Base: base, Max: top, Forget: forget}.Normalize()
	if !ok {
		return nil
	}
	return &Backoff{p: p, now: time.Now, m: map[string]*failures{}}
}

// Wait is how long key must still wait before its next attempt (0: go).
func (b *Backoff) Wait(key string) time.Duration {
	if b == nil {
		return 0
	}
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.m[key]
	if f == nil {
		if len(b.m) < MaxKeys {
			return 0
		}
		if f = b.m[overflowKey]; f == nil {
			return 0
		}
	}
	return max(f.until.Sub(now), 0)
}

// Fail records a failed attempt of key and returns the wait it now has.
func (b *Backoff) Fail(key string) time.Duration {
	if b == nil {
		return 0
	}
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sweep(now)
	f := entry(b.m, key, func() *failures { return &failures{} })
	if now.Sub(f.last) >= b.p.Forget {
		f.n = 0
	}
	f.n++
	f.last = now
	if f.n > b.p.Free {
		f.until = now.Add(b.p.Delay(f.n))
	}
	return max(f.until.Sub(now), 0)
}

// Reset forgets key's failures (after a success).
func (b *Backoff) Reset(key string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	delete(b.m, key)
	b.mu.Unlock()
}

// sweep forgets keys whose failures are old, once a minute (once a
// second while the map is full). The caller holds mu.
func (b *Backoff) sweep(now time.Time) {
	if !sweepDue(now.Sub(b.lastSweep), len(b.m)) {
		return
	}
	b.lastSweep = now
	for key, f := range b.m {
		if now.Sub(f.last) >= b.p.Forget && !now.Before(f.until) {
			delete(b.m, key)
		}
	}
}

// sweepDue reports whether a map of n keys last swept since ago is due
// for a sweep.
func sweepDue(since time.Duration, n int) bool {
	return since >= time.Minute || (n >= MaxKeys && since >= time.Second)
}
