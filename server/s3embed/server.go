// Package s3embed is bm-server's embedded S3 endpoint: an S3-compatible
// HTTP API over a local directory, enough for rclone's s3 backend and
// aws-sdk-go-v2 (listing v1/v2, get with range, put, head, copy, delete,
// multi-delete, multipart upload, MD5 ETags, user metadata).
//
// The S3 protocol is gofakes3's; this package supplies its storage (each
// bucket a directory, each object a file under its key, metadata in a
// hashed sidecar outside the bucket directory, cached in memory) and its
// access control: every request must carry a valid AWS Signature V4
// (header or presigned query) from a key the KeyResolver knows, and a key
// may only touch objects of its own bucket, addressed path-style. Each
// successful request that changes a bucket's objects is reported to
// Server.OnChange (bm-server turns those into change events).
//
// With SetQuota, each bucket has a storage quota that writes are refused
// past (S3's 403 QuotaExceeded; see quota.go); ExpireUploads aborts the
// multipart uploads left unfinished.
package s3embed

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rclone/gofakes3"
	"github.com/rclone/gofakes3/signature"
)

// KeyResolver maps an access key to its secret and the one bucket it may
// use. ok is false for a key that is unknown or no longer active.
type KeyResolver interface {
	ResolveKey(ctx context.Context, accessKey string) (secret, bucket string, ok bool)
}

// Errors of the admin methods.
var (
	ErrNoSuchBucket   = errors.New("s3embed: no such bucket")
	ErrBucketNotEmpty = errors.New("s3embed: bucket not empty")
	// ErrBucketBusy is BucketFingerprint's answer while a write to the
	// bucket is in flight (from before it lands until OnChange returns).
	ErrBucketBusy = errors.New("s3embed: a write to the bucket is in flight")
)

// Server is the embedded S3 endpoint. Serve Handler on a listener.
type Server struct {
	// OnKeyUsed, if set before serving, is called synchronously with the
	// access key of every request whose signature and scope were accepted
	// (for "last used" tracking). It must be quick and must not block.
	OnKeyUsed func(accessKey string)
	// OnChange, if set before serving, is called synchronously after each
	// request that changed a bucket's objects and succeeded (a 2xx
	// answer): PutObject, CopyObject, DeleteObject, DeleteObjects and
	// CompleteMultipartUpload, whoever the client. It must be quick and
	// must not block.
	OnChange func(Change)

	backend *backend
	fake    *gofakes3.GoFakeS3
	s3      http.Handler
	keys    KeyResolver
	log     *slog.Logger

	statsMu sync.Mutex
	stats   map[string]int64

	writingMu sync.Mutex
	writing   map[string]int // bucket → mutating requests in flight
}

// New serves the buckets under root (created if missing). keys decides
// who may do what; logger may be nil.
func New(root string, keys KeyResolver, logger *slog.Logger) (*Server, error) {
	if keys == nil {
		return nil, errors.New("s3embed: new: nil KeyResolver")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	be, err := newBackend(root, logger)
	if err != nil {
		return nil, err
	}
	fake := gofakes3.New(be,
		gofakes3.WithLogger(slogLogger{logger}),
		gofakes3.WithoutVersioning(),
		// Uploads are private to the bucket of the key that started them.
		gofakes3.WithUploadOwner(func(ctx context.Context) string {
			b, _ := ctx.Value(bucketCtxKey{}).(string)
			return b
		}),
	)
	return &Server{
		backend: be,
		fake:    fake,
		s3:      fake.Server(),
		keys:    keys,
		log:     logger,
		stats:   map[string]int64{},
	}, nil
}

type bucketCtxKey struct{}

// Change is a request that changed the objects of a bucket.
type Change struct {
	Bucket    string
	AccessKey string // the key that signed the request
	Op        string // the S3 operation, as in Stats
	// Key is the object written, copied to or deleted; "" for a change
	// of several objects (DeleteObjects).
	Key string
}

// mutating are the operations that change what a listing of the bucket
// shows. Parts of a multipart upload and its abort change nothing visible
// until CompleteMultipartUpload.
var mutating = map[string]bool{
	"PutObject":               true,
	"CopyObject":              true,
	"DeleteObject":            true,
	"DeleteObjects":           true,
	"CompleteMultipartUpload": true,
}

// statusRecorder remembers the status a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// succeeded reports a 2xx answer (nothing written means 200).
func (w *statusRecorder) succeeded() bool { return w.code == 0 || w.code/100 == 2 }

// Handler is the S3 API. Nothing reaches gofakes3 without passing the
// signature and scope checks.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// CreateBucket creates bucket name; it is not an error if it exists.
func (s *Server) CreateBucket(ctx context.Context, name string) error {
	if err := s.backend.CreateBucket(ctx, name); err != nil && !gofakes3.IsAlreadyExists(err) {
		return fmt.Errorf("s3embed: create bucket %q: %w", name, err)
	}
	return nil
}

// DeleteBucket deletes bucket name, which must be empty.
func (s *Server) DeleteBucket(ctx context.Context, name string) error {
	err := s.backend.DeleteBucket(ctx, name)
	switch {
	case err == nil:
		return nil
	case gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchBucket):
		return fmt.Errorf("s3embed: delete bucket %q: %w", name, ErrNoSuchBucket)
	case gofakes3.HasErrorCode(err, gofakes3.ErrBucketNotEmpty):
		return fmt.Errorf("s3embed: delete bucket %q: %w", name, ErrBucketNotEmpty)
	default:
		return fmt.Errorf("s3embed: delete bucket %q: %w", name, err)
	}
}

// ExpireUploads aborts the multipart uploads begun before cutoff and not
// completed since, deleting their parts (which frees their bytes in the
// buckets' usage), and returns how many it aborted. Like S3's
// AbortIncompleteMultipartUpload rule, an upload's age counts from its
// creation, whatever parts came since.
func (s *Server) ExpireUploads(ctx context.Context, cutoff time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("s3embed: expire uploads: %w", err)
	}
	dropped := s.backend.expireUploads(cutoff)
	for _, u := range dropped {
		// gofakes3 keeps its own record of the upload (ListMultipartUploads),
		// owned by the bucket (see New).
		owner := context.WithValue(ctx, bucketCtxKey{}, u.bucket)
		if err := s.fake.ForgetMultipartUpload(owner, u.bucket, u.key, u.id); err != nil && !errors.Is(err, gofakes3.ErrNoSuchUpload) {
			s.log.Warn("s3embed: forget expired upload", "bucket", u.bucket, "upload", string(u.id), "err", err)
		}
		s.log.Info("s3embed: expired multipart upload", "bucket", u.bucket, "upload", string(u.id), "created", u.created.UTC().Format(time.RFC3339))
	}
	return len(dropped), nil
}

// ListBuckets returns the names of all buckets, sorted.
func (s *Server) ListBuckets(ctx context.Context) ([]string, error) {
	infos, err := s.backend.ListBuckets(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(infos))
	for _, b := range infos {
		names = append(names, b.Name)
	}
	return names, nil // ReadDir sorts by name
}

// Stats returns the number of requests per S3 operation ("ListObjectsV2",
// "HeadObject", "GetObject", "PutObject", ...) since the last reset, plus
// "total" and "denied" (refused by authentication or scope).
func (s *Server) Stats() map[string]int64 {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return maps.Clone(s.stats)
}

// ResetStats zeroes the request counts.
func (s *Server) ResetStats() {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	clear(s.stats)
}

func (s *Server) count(op string, denied bool) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	s.stats[op]++
	s.stats["total"]++
	if denied {
		s.stats["denied"]++
	}
}

// splitPath splits a path-style request path exactly as gofakes3 does.
func splitPath(p string) (bucket, object string) {
	bucket, object, _ = strings.Cut(strings.TrimLeft(p, "/"), "/")
	return bucket, object
}

// operation names the S3 operation of r from its method, path and query.
func operation(r *http.Request) string {
	bucket, object := splitPath(r.URL.Path)
	q := r.URL.Query()
	has := func(k string) bool { _, ok := q[k]; return ok }
	copySrc := r.Header.Get("X-Amz-Copy-Source") != ""
	switch {
	case bucket == "":
		if r.Method == http.MethodGet {
			return "ListBuckets"
		}
	case object == "":
		switch r.Method {
		case http.MethodGet:
			switch {
			case has("uploads"):
				return "ListMultipartUploads"
			case has("location"):
				return "GetBucketLocation"
			case has("versions"):
				return "ListObjectVersions"
			case has("versioning"):
				return "GetBucketVersioning"
			case q.Get("list-type") == "2":
				return "ListObjectsV2"
			default:
				return "ListObjects"
			}
		case http.MethodHead:
			return "HeadBucket"
		case http.MethodPut:
			return "CreateBucket"
		case http.MethodDelete:
			return "DeleteBucket"
		case http.MethodPost:
			if has("delete") {
				return "DeleteObjects"
			}
		}
	default:
		upload := q.Get("uploadId") != ""
		switch r.Method {
		case http.MethodGet:
			if upload {
				return "ListParts"
			}
			return "GetObject"
		case http.MethodHead:
			return "HeadObject"
		case http.MethodPut:
			switch {
			case upload && copySrc:
				return "UploadPartCopy"
			case upload:
				return "UploadPart"
			case copySrc:
				return "CopyObject"
			}
			return "PutObject"
		case http.MethodDelete:
			if upload {
				return "AbortMultipartUpload"
			}
			return "DeleteObject"
		case http.MethodPost:
			switch {
			case has("uploads"):
				return "CreateMultipartUpload"
			case upload:
				return "CompleteMultipartUpload"
			}
		}
	}
	return "Other"
}

var (
	errAccessDenied = signature.APIError{Code: "AccessDenied", Description: "Access Denied", HTTPStatusCode: http.StatusForbidden}
	errUnsupported  = signature.APIError{Code: "NotImplemented", Description: "This payload signing mode is not supported; use UNSIGNED-PAYLOAD, a signed payload or STREAMING-AWS4-HMAC-SHA256-PAYLOAD.", HTTPStatusCode: http.StatusNotImplemented}
	errSHAMismatch  = signature.APIError{Code: "XAmzContentSHA256Mismatch", Description: "The provided 'x-amz-content-sha256' header does not match what was computed.", HTTPStatusCode: http.StatusBadRequest}
)

func writeAPIError(w http.ResponseWriter, r *http.Request, e signature.APIError) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(e.HTTPStatusCode)
	if r.Method != http.MethodHead {
		_, _ = w.Write(signature.EncodeAPIErrorToResponse(e))
	}
}

// unsupportedPayloads are x-amz-content-sha256 values whose bodies gofakes3
// would not decode (and so would store framing as content).
var unsupportedPayloads = map[string]bool{
	"STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER":       true,
	"STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD":         true,
	"STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER": true,
}

const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	op := operation(r)
	var keyBucket, accessKey string
	code := signature.V4SignVerifyWithLookup(r, func(ak string) (string, bool) {
		secret, bucket, ok := s.keys.ResolveKey(r.Context(), ak)
		if ok {
			keyBucket, accessKey = bucket, ak
		}
		return secret, ok
	})
	if code != signature.ErrNone {
		s.count(op, true)
		e := signature.GetAPIError(code)
		s.log.Info("s3embed: request refused", "op", op, "code", e.Code, "remote", r.RemoteAddr)
		writeAPIError(w, r, e)
		return
	}
	if !allowed(r, keyBucket) {
		s.count(op, true)
		s.log.Info("s3embed: access denied", "op", op, "access_key", redact(accessKey), "path", r.URL.Path, "remote", r.RemoteAddr)
		writeAPIError(w, r, errAccessDenied)
		return
	}
	s.count(op, false)
	if s.OnKeyUsed != nil {
		s.OnKeyUsed(accessKey)
	}

	// From here on r is a copy: the net/http server must keep seeing its
	// own body, so that a request answered before its body was read (a
	// write refused by a quota, with Expect: 100-continue) closes the
	// connection instead of leaving the unsent body to be read as the
	// next request.
	body := r.Body
	r = r.WithContext(context.WithValue(r.Context(), bucketCtxKey{}, keyBucket))
	payload := r.Header.Get("X-Amz-Content-Sha256")
	if unsupportedPayloads[payload] {
		writeAPIError(w, r, errUnsupported)
		return
	}
	if len(payload) == sha256.Size*2 && r.URL.Query().Get("X-Amz-Signature") == "" {
		want, err := hex.DecodeString(payload)
		if err != nil {
			writeAPIError(w, r, errSHAMismatch)
			return
		}
		if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
			if payload != emptySHA256 {
				writeAPIError(w, r, errSHAMismatch)
				return
			}
		} else {
			r.Body = &shaVerifier{rc: r.Body, want: want, h: sha256.New(), remaining: r.ContentLength}
		}
	}
	ctx := r.Context()
	if writes[op] && s.backend.quotas != nil {
		sig := &quotaSignal{}
		ctx = context.WithValue(ctx, quotaSignalKey{}, sig)
		qw := &quotaWriter{ResponseWriter: w, sig: sig}
		w = qw
		r.Body = noClose{r.Body}
		defer func() {
			if sig.hit.Load() {
				drainRefused(qw.ResponseWriter, body)
			}
		}()
	}
	if s.OnChange == nil || !mutating[op] {
		s.s3.ServeHTTP(w, r.WithContext(ctx))
		return
	}
	s.beginWrite(keyBucket)
	defer s.endWrite(keyBucket)
	rec := &statusRecorder{ResponseWriter: w}
	s.s3.ServeHTTP(rec, r.WithContext(ctx))
	if rec.succeeded() {
		_, key := splitPath(r.URL.Path)
		s.OnChange(Change{Bucket: keyBucket, AccessKey: accessKey, Op: op, Key: key})
	}
}

// allowed reports whether a key scoped to keyBucket may make request r:
// only path-style requests on its own bucket, never bucket creation,
// deletion or configuration, nor bucket listing, and copies only from
// its own bucket.
func allowed(r *http.Request, keyBucket string) bool {
	bucket, object := splitPath(r.URL.Path)
	if keyBucket == "" || bucket != keyBucket {
		return false
	}
	if object == "" {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
		case http.MethodPost:
			if _, ok := r.URL.Query()["delete"]; !ok {
				return false
			}
		default:
			return false
		}
	}
	if src := r.Header.Get("X-Amz-Copy-Source"); src != "" {
		srcBucket, _, _ := strings.Cut(strings.TrimPrefix(src, "/"), "/")
		if srcBucket != keyBucket {
			return false
		}
	}
	return true
}

// shaVerifier checks a body against the signed x-amz-content-sha256: the
// read that completes the body (or hits EOF) fails if the hash differs,
// so the backend discards what it spooled. gofakes3 verifies the signature
// over the header but not the body against it.
type shaVerifier struct {
	rc        io.ReadCloser
	want      []byte
	h         hash.Hash
	remaining int64 // -1 if unknown
	done      bool
}

var errBodySHA = gofakes3.ErrorMessage(gofakes3.ErrBadDigest, "x-amz-content-sha256 does not match the request body")

func (v *shaVerifier) Read(p []byte) (int, error) {
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	if v.remaining > 0 {
		v.remaining -= int64(n)
	}
	if !v.done && (err == io.EOF || v.remaining == 0) {
		v.done = true
		if !bytes.Equal(v.h.Sum(nil), v.want) {
			return n, errBodySHA
		}
	}
	return n, err
}

func (v *shaVerifier) Close() error { return v.rc.Close() }

// slogLogger adapts gofakes3's logger to slog; its chatty info level goes
// to Debug.
type slogLogger struct{ l *slog.Logger }

func (g slogLogger) Print(level gofakes3.LogLevel, v ...any) {
	msg := "gofakes3: " + strings.TrimSuffix(fmt.Sprintln(v...), "\n")
	switch level {
	case gofakes3.LogErr:
		g.l.Error(msg)
	case gofakes3.LogWarn:
		g.l.Warn(msg)
	default:
		g.l.Debug(msg)
	}
}

// redact shortens an access key ID for logs: enough to correlate, not the
// whole identifier.
func redact(accessKey string) string {
	if len(accessKey) > 8 {
		return accessKey[:8] + "…"
	}
	return accessKey
}

// beginWrite and endWrite bracket a mutating request to bucket, so that
// BucketFingerprint does not report a change OnChange is about to announce.
func (s *Server) beginWrite(bucket string) {
	s.writingMu.Lock()
	defer s.writingMu.Unlock()
	if s.writing == nil {
		s.writing = map[string]int{}
	}
	s.writing[bucket]++
}

func (s *Server) endWrite(bucket string) {
	s.writingMu.Lock()
	defer s.writingMu.Unlock()
	if s.writing[bucket]--; s.writing[bucket] <= 0 {
		delete(s.writing, bucket)
	}
}

// writingTo reports whether a mutating request to bucket is in flight.
func (s *Server) writingTo(bucket string) bool {
	s.writingMu.Lock()
	defer s.writingMu.Unlock()
	return s.writing[bucket] > 0
}
