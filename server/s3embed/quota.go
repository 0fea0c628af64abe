package s3embed

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rclone/gofakes3"
)

// Storage quotas. A bucket's usage is the size of its objects plus the
// parts of its unfinished multipart uploads (so that parts cannot be used
// to store more than the quota; expiring or aborting an upload frees
// them). It is kept in the bucket's index, computed from the sidecars when
// the bucket is loaded (so it is right after a restart, which also drops
// every unfinished upload), and updated under the index's lock by every
// commit and delete.
//
// A write first reserves the room it needs: the bytes its content adds to
// the bucket (its size less the size of the object or part it replaces,
// never below zero), from the declared length before a byte of the body is
// read, or as the body arrives when no length was given. A reservation that
// would take usage plus the other writes' reservations past the quota is
// refused with QuotaExceeded (HTTP 403, as Ceph's RGW answers). The commit
// turns the reservation into usage under the same lock. Two writes racing
// can overshoot only by the difference between what a write replaced when
// it reserved and when it committed: at most one object's size.

// QuotaFunc returns the storage quota of bucket in bytes; negative means
// none.
type QuotaFunc func(ctx context.Context, bucket string) (int64, error)

// QuotaExceededCode is the S3 error code of a write refused by a quota;
// it is answered with HTTP 403 Forbidden.
const QuotaExceededCode gofakes3.ErrorCode = "QuotaExceeded"

// DefaultQuotaTTL is how long SetQuota's answers are trusted.
const DefaultQuotaTTL = 30 * time.Second

// quotas resolves and caches the quotas of the buckets.
type quotas struct {
	fn  QuotaFunc
	ttl time.Duration

	mu    sync.Mutex
	cache map[string]cachedQuota
}

type cachedQuota struct {
	limit   int64
	expires time.Time
}

// SetQuota sets how the endpoint learns each bucket's quota (nil, the
// default: no quotas). An answer is trusted for ttl (0: DefaultQuotaTTL;
// negative: ask on every write), so a changed quota applies within ttl;
// ForgetQuota applies it at once. A failing fn refuses the write with
// SlowDown unless an earlier answer is at hand. Call it before serving.
func (s *Server) SetQuota(fn QuotaFunc, ttl time.Duration) {
	if ttl == 0 {
		ttl = DefaultQuotaTTL
	}
	s.backend.quotas = &quotas{fn: fn, ttl: ttl, cache: map[string]cachedQuota{}}
	if fn == nil {
		s.backend.quotas = nil
	}
}

// ForgetQuota drops what the endpoint knows of bucket's quota, so that the
// next write asks SetQuota's function again.
func (s *Server) ForgetQuota(bucket string) {
	if q := s.backend.quotas; q != nil {
		q.mu.Lock()
		delete(q.cache, bucket)
		q.mu.Unlock()
	}
}

// BucketUsage returns the bytes bucket holds: its objects plus the parts
// of its unfinished multipart uploads (what its quota is compared with).
// A missing bucket is ErrNoSuchBucket.
func (s *Server) BucketUsage(ctx context.Context, bucket string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("s3embed: usage of %q: %w", bucket, err)
	}
	idx, err := s.backend.index(bucket)
	if err != nil {
		if gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchBucket) {
			return 0, fmt.Errorf("s3embed: usage of %q: %w", bucket, ErrNoSuchBucket)
		}
		return 0, fmt.Errorf("s3embed: usage of %q: %w", bucket, err)
	}
	idx.mu.RLock()
	defer idx.mu.RUnlock()
	return idx.objBytes + idx.partBytes, nil
}

// limit returns bucket's quota (negative: none).
func (q *quotas) limit(ctx context.Context, bucket string) (int64, error) {
	if q == nil {
		return -1, nil
	}
	now := time.Now()
	q.mu.Lock()
	c, ok := q.cache[bucket]
	q.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.limit, nil
	}
	v, err := q.fn(ctx, bucket)
	if err != nil {
		if ok {
			return c.limit, nil // the last answer, rather than refusing every write
		}
		return 0, err
	}
	if q.ttl > 0 {
		q.mu.Lock()
		if len(q.cache) > 10000 {
			clear(q.cache)
		}
		q.cache[bucket] = cachedQuota{limit: v, expires: now.Add(q.ttl)}
		q.mu.Unlock()
	}
	return v, nil
}

// reservation is room held in a bucket's quota for one write in flight.
// A nil reservation (no quota) holds nothing and refuses nothing.
type reservation struct {
	ctx    context.Context
	idx    *bucketIndex
	limit  int64
	credit int64 // the size of what the write replaces, when it began
	held   int64 // in idx.reserved
}

// reserve holds room in bucket (whose index is idx) for a write of size
// bytes (0 if not known yet: see grow) replacing credit bytes.
func (b *backend) reserve(ctx context.Context, bucket string, idx *bucketIndex, credit, size int64) (*reservation, error) {
	limit, err := b.quotas.limit(ctx, bucket)
	if err != nil {
		b.log.Error("s3embed: quota lookup failed", "bucket", bucket, "err", err)
		return nil, gofakes3.ErrorMessage(gofakes3.ErrSlowDown, "the bucket's quota cannot be checked now; retry later")
	}
	if limit < 0 {
		return nil, nil
	}
	r := &reservation{ctx: ctx, idx: idx, limit: limit, credit: credit}
	if err := r.grow(max(size, 0)); err != nil {
		return nil, err
	}
	return r, nil
}

// grow makes r hold room for a write of total bytes.
func (r *reservation) grow(total int64) error {
	if r == nil {
		return nil
	}
	need := max(total-r.credit, 0)
	if need <= r.held {
		return nil
	}
	x := r.idx
	x.mu.Lock()
	defer x.mu.Unlock()
	used := x.objBytes + x.partBytes + x.reserved
	if used+need-r.held > r.limit {
		return quotaExceeded(r.ctx, r.limit, used, need-r.held)
	}
	x.reserved += need - r.held
	r.held = need
	return nil
}

// releaseLocked gives r's room back; the caller holds r.idx.mu.
func (r *reservation) releaseLocked() {
	if r == nil {
		return
	}
	r.idx.reserved -= r.held
	r.held = 0
}

// release gives r's room back (a no-op after releaseLocked).
func (r *reservation) release() {
	if r == nil || r.held == 0 {
		return
	}
	r.idx.mu.Lock()
	defer r.idx.mu.Unlock()
	r.releaseLocked()
}

// quotaReader grows a reservation as a body of unknown length arrives.
type quotaReader struct {
	r   io.Reader
	res *reservation
	n   int64
}

func (q *quotaReader) Read(p []byte) (int, error) {
	n, err := q.r.Read(p)
	q.n += int64(n)
	if gerr := q.res.grow(q.n); gerr != nil {
		return n, gerr
	}
	return n, err
}

// quotaSignal is how the backend tells serveHTTP that the error it
// returned is QuotaExceeded, whose status gofakes3 does not know.
type quotaSignal struct{ hit atomic.Bool }

type quotaSignalKey struct{}

func quotaExceeded(ctx context.Context, limit, used, need int64) error {
	if sig, ok := ctx.Value(quotaSignalKey{}).(*quotaSignal); ok {
		sig.hit.Store(true)
	}
	return gofakes3.ErrorMessagef(QuotaExceededCode,
		"The bucket's storage quota of %d bytes would be exceeded: %d bytes are in use or reserved and this write needs %d more.", limit, used, need)
}

// quotaWriter answers 403 instead of the 500 gofakes3 gives an error code
// it does not know, once the backend signalled QuotaExceeded. The body,
// gofakes3's, already carries the code and message.
//
// The refusal closes the connection: a client that sent Expect:
// 100-continue and waits then sends no body (net/http's client sends it
// after all on a connection that stays open), and nothing it sent can be
// taken for its next request.
type quotaWriter struct {
	http.ResponseWriter
	sig *quotaSignal
}

func (w *quotaWriter) WriteHeader(code int) {
	if code == http.StatusInternalServerError && w.sig.hit.Load() {
		code = http.StatusForbidden
		w.Header().Set("Connection", "close")
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *quotaWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Draining the body of a refused write: at most maxDrain bytes, for at
// most drainTimeout.
const (
	maxDrain     = 64 << 20
	drainTimeout = 30 * time.Second
)

// drainRefused reads and drops what is left of the body of a write the
// quota refused before storing any of it. A client that sends its body
// without waiting for 100 Continue (aws-sdk-go-v2 does so even when it
// sends Expect: 100-continue) would otherwise meet a connection reset
// instead of the 403; one that waits sends nothing, as the refusal closes
// the connection (see quotaWriter). Past maxDrain or drainTimeout the
// connection is closed with the rest unread.
func drainRefused(w http.ResponseWriter, body io.Reader) {
	if body == nil || body == http.NoBody {
		return
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(drainTimeout))
	_, _ = io.CopyN(io.Discard, body, maxDrain)
}

// noClose keeps gofakes3 from closing a request body, which would make
// net/http give up on the connection before drainRefused could read it.
type noClose struct{ io.Reader }

func (noClose) Close() error { return nil }

// writes are the operations that store bytes, and so meet the quota.
var writes = map[string]bool{
	"PutObject":               true,
	"CopyObject":              true,
	"UploadPart":              true,
	"UploadPartCopy":          true,
	"CompleteMultipartUpload": true,
}
