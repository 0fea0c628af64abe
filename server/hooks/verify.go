package hooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TimestampHeader carries the Unix time (seconds, decimal) at which a
// delivery was signed: a refresh-hook webhook from bm-server, or a storage
// notification to it. With it, SignatureHeader is SignTimestamped of the
// timestamp and the body, so a captured delivery goes stale after MaxSkew
// and cannot be replayed within it (see ReplayCache). SignRequest signs,
// VerifyRequest checks, in both directions.
const TimestampHeader = "X-BM-Timestamp"

// MaxSkew is how far a delivery's timestamp may be from the receiver's
// clock, either way.
const MaxSkew = 5 * time.Minute

// Errors of VerifyTimestamped and ReplayCache.Check. None carries the
// secret or the signature.
var (
	// ErrTimestampRequired: a signature came without TimestampHeader
	// (the old body-only HMAC, which is refused).
	ErrTimestampRequired = errors.New("webhook: " + TimestampHeader + " header is required with " + SignatureHeader)
	// ErrBadTimestamp: TimestampHeader is not Unix seconds.
	ErrBadTimestamp = errors.New("webhook: malformed " + TimestampHeader)
	// ErrStale: the timestamp is more than MaxSkew from now.
	ErrStale = errors.New("webhook: timestamp outside the allowed window")
	// ErrBadSignature: the signature does not match.
	ErrBadSignature = errors.New("webhook: invalid signature")
	// ErrReplay: the same delivery was already accepted within the window.
	ErrReplay = errors.New("webhook: delivery already received")
	// ErrReplayCacheFull: too many deliveries within the window to
	// remember them all; the delivery is refused rather than risk a replay.
	ErrReplayCacheFull = errors.New("webhook: too many deliveries, retry later")
)

// SignTimestamped returns the SignatureHeader value of a delivery signed at
// ts (Unix seconds): "sha256=" and the hex HMAC-SHA256, keyed with secret,
// of the decimal ts, ".", and body (Stripe's scheme).
func SignTimestamped(secret []byte, ts int64, body []byte) string {
	return "sha256=" + hex.EncodeToString(timestampedMAC(secret, strconv.FormatInt(ts, 10), body))
}

func timestampedMAC(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// VerifyTimestamped checks a delivery's signature header sig against its
// timestamp header ts and body, in constant time, and that ts is within
// MaxSkew of now. It returns nil or one of ErrTimestampRequired,
// ErrBadTimestamp, ErrStale, ErrBadSignature. An empty secret never
// verifies.
func VerifyTimestamped(secret, body []byte, ts, sig string, now time.Time) error {
	ts = strings.TrimSpace(ts)
	if ts == "" {
		return ErrTimestampRequired
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrBadTimestamp
	}
	if d := now.Sub(time.Unix(sec, 0)); d > MaxSkew || d < -MaxSkew {
		return ErrStale
	}
	if !signatureIs(secret, sig, timestampedMAC(secret, ts, body)) {
		return ErrBadSignature
	}
	return nil
}

// SignRequest signs a delivery of body at now: h's TimestampHeader gets
// now in Unix seconds and its SignatureHeader SignTimestamped of that and
// body. bm-server's refresh hook signs its webhooks with it; a storage
// service's notifications to bm-server carry the same headers.
func SignRequest(h http.Header, secret, body []byte, now time.Time) {
	ts := now.Unix()
	h.Set(TimestampHeader, strconv.FormatInt(ts, 10))
	h.Set(SignatureHeader, SignTimestamped(secret, ts, body))
}

// VerifyRequest checks a delivery of body with headers h at now: its
// signature and timestamp (VerifyTimestamped) and, when replays is not
// nil, that it was not received before (the signature, in canonical form,
// is remembered in replays). It returns nil or one of VerifyTimestamped's
// errors, ErrReplay or ErrReplayCacheFull. bm-server checks storage
// notifications with it; a receiver of the refresh hook written in Go can
// use it as is.
func VerifyRequest(secret, body []byte, h http.Header, now time.Time, replays *ReplayCache) error {
	sig := h.Get(SignatureHeader)
	if err := VerifyTimestamped(secret, body, h.Get(TimestampHeader), sig, now); err != nil {
		return err
	}
	if replays == nil {
		return nil
	}
	// Hex decoding ignores case: "sha256=AB.." is the same delivery as
	// "sha256=ab..".
	return replays.Check(strings.ToLower(strings.TrimSpace(sig)), now)
}

// DefaultReplayEntries bounds a ReplayCache made with a size <= 0.
const DefaultReplayEntries = 100_000

// ReplayCache remembers the signatures of accepted deliveries for a window
// (MaxSkew on either side of their signing, so 2*MaxSkew), so that a
// delivery is accepted once. It holds at most a fixed number of entries:
// when full of unexpired ones it refuses new deliveries (ErrReplayCacheFull)
// instead of forgetting one that could then be replayed. Safe for
// concurrent use; the zero value is not usable, use NewReplayCache.
type ReplayCache struct {
	ttl time.Duration
	max int

	mu    sync.Mutex
	seen  map[string]time.Time // signature -> expiry
	order []replayEntry        // in insertion order, expiries nondecreasing
}

type replayEntry struct {
	sig    string
	expiry time.Time
}

// NewReplayCache returns a cache that remembers a delivery for 2*MaxSkew
// and holds at most size entries (DefaultReplayEntries when size <= 0).
func NewReplayCache(size int) *ReplayCache {
	if size <= 0 {
		size = DefaultReplayEntries
	}
	return &ReplayCache{ttl: 2 * MaxSkew, max: size, seen: map[string]time.Time{}}
}

// Check records sig as received at now and returns nil, or ErrReplay if it
// was received within the window, or ErrReplayCacheFull. Call it only for
// a delivery whose signature verified.
func (c *ReplayCache) Check(sig string, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.prune(now)
	if exp, ok := c.seen[sig]; ok && now.Before(exp) {
		return ErrReplay
	}
	if len(c.seen) >= c.max {
		return ErrReplayCacheFull
	}
	exp := now.Add(c.ttl)
	if n := len(c.order); n > 0 && exp.Before(c.order[n-1].expiry) {
		exp = c.order[n-1].expiry // a clock step back keeps the order
	}
	c.seen[sig] = exp
	c.order = append(c.order, replayEntry{sig, exp})
	return nil
}

// Len returns the number of entries held.
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// prune drops expired entries; c.mu is held.
func (c *ReplayCache) prune(now time.Time) {
	i := 0
	for i < len(c.order) && !now.Before(c.order[i].expiry) {
		delete(c.seen, c.order[i].sig)
		i++
	}
	if i > 0 {
		c.order = append(c.order[:0:0], c.order[i:]...)
	}
}
