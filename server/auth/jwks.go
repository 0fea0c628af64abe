package auth

// The issuer's JWKS, cached. go-oidc's RemoteKeySet (the library the tree
// already uses for discovery) fetches again on every unknown kid with no
// bound and never on a TTL, and there is no JWKS cache library in the tree
// (its JOSE stack is go-jose), so the cache is here, small:
//
//   - The keys are used for a TTL: the issuer's Cache-Control max-age
//     within [JWKSMinTTL, JWKSMaxTTL], JWKSTTL without one. The first
//     request after it waits for a fetch (shared by every request then),
//     so a key the issuer withdrew is refused from then on. A failed fetch
//     keeps the keys and is tried again after JWKSMinTTL.
//   - A kid the cache lacks makes a request wait for a fetch that began
//     after it arrived (one at a time, shared by all the requests that wait),
//     so a key the issuer has just published is accepted at once, whenever
//     the last fetch was. A kid such a fetch did not find is refused without
//     a fetch for MinRefreshInterval, and these fetches are at least
//     MinFetchGap apart: tokens with made-up kids cost the issuer at most
//     one fetch per gap (and the TTL's, once per TTL).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// maxAbsentKids bounds the kids remembered as absent from the JWKS.
const maxAbsentKids = 4096

// jwksCache holds the keys of one JWKS URL. Safe for concurrent use.
type jwksCache struct {
	url       string
	client    *http.Client
	now       func() time.Time
	ttl       time.Duration // without a max-age
	minTTL    time.Duration
	maxTTL    time.Duration
	absentFor time.Duration // how long a kid a fetch lacked is refused without one
	gap       time.Duration // between two fetches

	mu       sync.Mutex
	keys     []jose.JSONWebKey
	expires  time.Time  // by now: when the keys must be fetched again
	inflight *jwksFetch // the fetch under way or waiting for the gap
	started  uint64     // fetches begun so far; a fetch's number
	done     uint64     // the number of the last fetch completed
	lastErr  error      // and its error
	// lastKidFetch is when (wall clock) the last fetch for an unknown kid
	// began or will begin, for the gap.
	lastKidFetch time.Time
	absent       map[string]time.Time
}

// jwksFetch is one fetch; done is closed when it completed, with err.
type jwksFetch struct {
	done chan struct{}
	err  error
}

func newJWKSCache(url string, cfg Config) *jwksCache {
	return &jwksCache{
		url: url, client: cfg.HTTPClient, now: cfg.Now,
		ttl: cfg.JWKSTTL, minTTL: cfg.JWKSMinTTL, maxTTL: cfg.JWKSMaxTTL,
		absentFor: cfg.MinRefreshInterval, gap: cfg.MinFetchGap,
		absent: map[string]time.Time{},
	}
}

// keysFor returns the keys that may have signed a token naming kid (every
// signing key when kid is empty), fetching the JWKS first if its TTL has
// passed or if kid is unknown (see the file's comment). The error, if any,
// is that of a failed fetch; the keys are then the cached ones.
func (c *jwksCache) keysFor(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	var err error
	c.mu.Lock()
	stale := !c.now().Before(c.expires)
	next := c.started + 1 // the first fetch to begin after this request came
	c.mu.Unlock()
	if stale {
		err = c.refreshStale(ctx)
	}
	keys := c.candidates(kid)
	if len(keys) > 0 || kid == "" {
		return keys, err
	}
	now := c.now()
	c.mu.Lock()
	t, known := c.absent[kid]
	c.mu.Unlock()
	if known && now.Sub(t) < c.absentFor {
		return nil, err
	}
	if ferr := c.fetchSince(ctx, next); ferr != nil {
		err = ferr
	}
	if keys = c.candidates(kid); len(keys) == 0 {
		c.markAbsent(kid, now)
	}
	return keys, err
}

// refreshStale waits for a fetch if the keys' TTL has passed: the one
// under way, or a new one.
func (c *jwksCache) refreshStale(ctx context.Context) error {
	c.mu.Lock()
	if c.now().Before(c.expires) {
		c.mu.Unlock()
		return nil
	}
	f := c.join(false)
	c.mu.Unlock()
	if err := f.wait(ctx); err != nil {
		return err
	}
	return f.err
}

// wait returns nil once f completed, or ctx's error.
func (f *jwksFetch) wait(ctx context.Context) error {
	select {
	case <-f.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("fetch jwks: %w", ctx.Err())
	}
}

// fetchSince returns once fetch number need (the first to begin after
// some moment) or a later one completed, with its error: it waits for the
// fetch under way if that has not begun yet, or for it and then for
// another.
func (c *jwksCache) fetchSince(ctx context.Context, need uint64) error {
	c.mu.Lock()
	for {
		if c.done >= need {
			err := c.lastErr
			c.mu.Unlock()
			return err
		}
		f := c.join(true)
		c.mu.Unlock()
		if err := f.wait(ctx); err != nil {
			return err
		}
		c.mu.Lock()
	}
}

// join returns the fetch under way or waiting, or starts one: for an
// unknown kid (forKid) after the gap since the last such fetch began, for
// the TTL at once (it comes once per TTL). c.mu is held.
func (c *jwksCache) join(forKid bool) *jwksFetch {
	if c.inflight != nil {
		return c.inflight
	}
	f := &jwksFetch{done: make(chan struct{})}
	c.inflight = f
	var delay time.Duration
	if forKid {
		delay = time.Until(c.lastKidFetch.Add(c.gap))
		c.lastKidFetch = time.Now().Add(max(delay, 0))
	}
	go c.run(f, delay)
	return f
}

// run makes fetch f after delay and stores what it got. The fetch is not
// tied to any request: a request that gives up does not cancel it for the
// others (the HTTP client's timeout bounds it).
func (c *jwksCache) run(f *jwksFetch, delay time.Duration) {
	if delay > 0 {
		t := time.NewTimer(delay)
		<-t.C
	}
	c.mu.Lock()
	c.started++
	n := c.started
	begun := c.now()
	c.mu.Unlock()

	keys, ttl, err := c.fetch()

	c.mu.Lock()
	if err == nil {
		c.keys = keys
		c.expires = begun.Add(ttl)
	} else {
		c.expires = c.now().Add(c.minTTL)
	}
	c.done, c.lastErr = n, err
	c.inflight = nil
	f.err = err
	c.mu.Unlock()
	close(f.done)
}

// candidates returns the cached signing keys with kid (all of them when
// kid is empty).
func (c *jwksCache) candidates(kid string) []jose.JSONWebKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []jose.JSONWebKey
	for _, k := range c.keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if kid == "" || k.KeyID == kid {
			out = append(out, k)
		}
	}
	return out
}

// markAbsent remembers that a fetch after now did not find kid.
func (c *jwksCache) markAbsent(kid string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.absent) >= maxAbsentKids {
		for k, t := range c.absent {
			if now.Sub(t) >= c.absentFor {
				delete(c.absent, k)
			}
		}
		if len(c.absent) >= maxAbsentKids {
			return // the gap between fetches still bounds them
		}
	}
	c.absent[kid] = now
}

func (c *jwksCache) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.keys)
}

// fetch gets the JWKS and the TTL its answer allows.
func (c *jwksCache) fetch() ([]jose.JSONWebKey, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("fetch jwks: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("fetch jwks: status %d", resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	// A set past 1 MiB is an error, not cut short (no ResponseWriter to tell).
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, 0, fmt.Errorf("fetch jwks: decode: %w", err)
	}
	var out []jose.JSONWebKey
	for _, k := range set.Keys {
		if !k.IsPublic() || !k.Valid() {
			continue // never accept a symmetric or private key from a JWKS
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		return nil, 0, errors.New("fetch jwks: no usable public key")
	}
	return out, c.ttlOf(resp.Header.Get("Cache-Control")), nil
}

// ttlOf is how long keys served with the Cache-Control value cc are used:
// its max-age within [minTTL, maxTTL] (no-cache and no-store: minTTL), or
// ttl without one.
func (c *jwksCache) ttlOf(cc string) time.Duration {
	ttl := c.ttl
	for _, d := range strings.Split(cc, ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
		switch strings.ToLower(name) {
		case "no-cache", "no-store":
			ttl = 0
		case "max-age":
			if n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64); err == nil && n >= 0 {
				ttl = time.Duration(min(n, int64(c.maxTTL/time.Second)+1)) * time.Second
			}
		}
	}
	return min(max(ttl, c.minTTL), c.maxTTL)
}
