// Package s3embed is bm-server's embedded S3 endpoint: an S3-compatible
// HTTP API over a local directory, enough for rclone's s3 backend,
// aws-sdk-go-v2 and minio-go (listing v1/v2, get with range, put, head,
// copy, delete, multi-delete, multipart upload, S3's ETags, user
// metadata).
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
// Where gofakes3 falls short of S3, this package does the rest:
//
//   - The credential scope must be the request's: its date the day of
//     X-Amz-Date (or Date), its region the endpoint's (WithRegion), service
//     s3, terminator aws4_request; else 400 AuthorizationHeaderMalformed
//     (header) or AuthorizationQueryParametersError (presigned), as AWS.
//   - A STREAMING-AWS4-HMAC-SHA256-PAYLOAD body is decoded here, every
//     chunk's signature checked along the chain from the seed signature
//     before the chunk's last byte is passed on; a bad one is 403
//     SignatureDoesNotMatch and nothing is stored.
//   - An object made by a multipart upload has S3's ETag, md5(part
//     md5s)-N, everywhere (complete, HEAD, GET, listings, conditions).
//   - ListBuckets with a bucket-scoped key lists that bucket only.
//   - A write to a key with a segment over 255 bytes (a name no file
//     system here holds) is 400 XMinioInvalidObjectName, as MinIO answers,
//     and a key over 1024 bytes 400 KeyTooLongError, before the body is
//     read; a body shorter than its Content-Length is 400 IncompleteBody.
//   - Every answer has an x-amz-request-id, and every error body the same
//     RequestId.
//
// With SetQuota, each bucket has a storage quota that writes are refused
// past (S3's 403 QuotaExceeded; see quota.go); ExpireUploads aborts the
// multipart uploads left unfinished.
package s3embed

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"strconv"
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
	region  string

	statsMu sync.Mutex
	stats   map[string]int64

	writingMu sync.Mutex
	writing   map[string]int // bucket → mutating requests in flight
}

// DefaultRegion is the region the endpoint answers to unless WithRegion
// says otherwise.
const DefaultRegion = "us-east-1"

// An Option configures New.
type Option func(*Server)

// WithRegion sets the region requests must be signed for (the region in
// their credential scope); "" means DefaultRegion.
func WithRegion(region string) Option {
	return func(s *Server) {
		if region != "" {
			s.region = region
		}
	}
}

// New serves the buckets under root (created if missing). keys decides
// who may do what; logger may be nil.
func New(root string, keys KeyResolver, logger *slog.Logger, opts ...Option) (*Server, error) {
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
	s := &Server{
		backend: be,
		fake:    fake,
		s3:      fake.Server(),
		keys:    keys,
		log:     logger,
		region:  DefaultRegion,
		stats:   map[string]int64{},
	}
	for _, o := range opts {
		o(s)
	}
	return s, nil
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

// answerWriter is the ResponseWriter gofakes3 answers through. It
// remembers the status; answers a body refusal recorded by the request's
// body reader (requestFault) in place of what gofakes3 made of the failed
// read; and gives a GET or HEAD of a multipart object its S3 ETag (see
// objMeta.ETag), which gofakes3 cannot express.
type answerWriter struct {
	http.ResponseWriter
	req     *http.Request
	op      string
	rid     string
	note    *objectNote
	fault   *requestFault
	code    int
	swallow bool // the fault was answered: drop what gofakes3 writes
}

func (w *answerWriter) WriteHeader(code int) {
	if w.code != 0 {
		if !w.swallow {
			w.ResponseWriter.WriteHeader(code)
		}
		return
	}
	if f := w.fault.err; f != nil {
		w.code, w.swallow = f.HTTPStatusCode, true
		h := w.Header()
		for _, k := range []string{"ETag", "Content-Length", "Last-Modified", "X-Amz-Version-Id"} {
			h.Del(k)
		}
		rid := h.Get("x-amz-request-id")
		if rid == "" {
			rid = w.rid
		}
		writeAPIError(w.ResponseWriter, w.req, *f, rid)
		return
	}
	w.code = code
	if w.note.etag != "" && (w.op == "GetObject" || w.op == "HeadObject") && w.Header().Get("ETag") != "" {
		w.Header().Set("ETag", w.note.etag)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *answerWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.swallow {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// finish sends the status line if gofakes3 wrote nothing (a HEAD), so
// that what WriteHeader adds is in that answer too.
func (w *answerWriter) finish() {
	if w.code == 0 {
		w.WriteHeader(http.StatusOK)
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *answerWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// succeeded reports a 2xx answer (nothing written means 200).
func (w *answerWriter) succeeded() bool { return w.code == 0 || w.code/100 == 2 }

// objectNote carries, from the backend's GetObject or HeadObject to the
// answer, the S3 ETag of a multipart object.
type objectNote struct{ etag string }

type objectNoteKey struct{}

// noteObject records m's ETag for the answer if it is not the one
// gofakes3 derives from the object's hash.
func noteObject(ctx context.Context, m *objMeta) {
	if n, ok := ctx.Value(objectNoteKey{}).(*objectNote); ok && m.ETag != "" {
		n.etag = m.etag()
	}
}

// conditionHeaders name ETags that gofakes3 compares with the hex of an
// object's hash.
var conditionHeaders = []string{"If-Match", "If-None-Match", "X-Amz-Copy-Source-If-Match", "X-Amz-Copy-Source-If-None-Match"}

// matchPartETags rewrites multipart ETags ("<32 hex>-<parts>") in the
// conditional headers to the hash gofakes3 compares them with (the hex
// before the dash; see objMeta.hashHex). The mapping is one to one: no
// single-part object's MD5 is the MD5 of a list of MD5s.
func matchPartETags(h http.Header) {
	for _, name := range conditionHeaders {
		v := h.Get(name)
		if !strings.Contains(v, "-") {
			continue
		}
		tags := strings.Split(v, ",")
		for i, t := range tags {
			t = strings.TrimSpace(t)
			weak, bare := "", t
			if rest, ok := strings.CutPrefix(t, "W/"); ok {
				weak, bare = "W/", rest
			}
			if x, ok := multipartHash(strings.Trim(bare, `"`)); ok {
				t = weak + `"` + x + `"`
			}
			tags[i] = t
		}
		h.Set(name, strings.Join(tags, ", "))
	}
}

// multipartHash returns the hash part of a multipart ETag (unquoted).
func multipartHash(etag string) (string, bool) {
	x, n, ok := strings.Cut(etag, "-")
	if !ok || len(x) != 2*md5.Size || n == "" || len(n) > 5 {
		return "", false
	}
	if _, err := hex.DecodeString(x); err != nil {
		return "", false
	}
	for _, c := range n {
		if c < '0' || c > '9' {
			return "", false
		}
	}
	return strings.ToLower(x), true
}

// newRequestID returns a fresh x-amz-request-id.
func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

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

// writeAPIError answers e with the request's ID in the body, as S3 does.
func writeAPIError(w http.ResponseWriter, r *http.Request, e signature.APIError, requestID string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(e.HTTPStatusCode)
	if r.Method != http.MethodHead {
		_, _ = w.Write(signature.EncodeAPIErrorToResponseWithRequestID(e, requestID))
	}
}

// Names longer than the file system takes are refused before the body is
// read (a key segment is a file or directory name here). S3's limit on a
// whole key is 1024 bytes (KeyTooLongError); a segment over 255 bytes is
// refused as MinIO refuses it (XMinioInvalidObjectName, 400).
const (
	maxKeyLen     = gofakes3.KeySizeLimit
	maxSegmentLen = 255
)

var (
	errKeyTooLong     = signature.APIError{Code: "KeyTooLongError", Description: "Your key is too long.", HTTPStatusCode: http.StatusBadRequest}
	errSegmentTooLong = signature.APIError{Code: "XMinioInvalidObjectName", Description: "Object name contains a path segment longer than 255 bytes.", HTTPStatusCode: http.StatusBadRequest}
)

// checkKeyName refuses a write (PUT or POST) of an object whose key this
// server cannot store because of its length.
func checkKeyName(r *http.Request) *signature.APIError {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		return nil
	}
	_, key := splitPath(r.URL.Path)
	if key == "" {
		return nil
	}
	if len(key) > maxKeyLen {
		return &errKeyTooLong
	}
	for seg := range strings.SplitSeq(key, "/") {
		if len(seg) > maxSegmentLen {
			return &errSegmentTooLong
		}
	}
	return nil
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
	rid := newRequestID()
	// Every answer carries a request ID; gofakes3 sets its own on the
	// answers it makes, these are for the refusals made here.
	w.Header().Set("x-amz-request-id", rid)
	refuse := func(e signature.APIError, msg string, args ...any) {
		s.count(op, true)
		s.log.Info(msg, append([]any{"op", op, "code", e.Code, "request_id", rid, "remote", r.RemoteAddr}, args...)...)
		writeAPIError(w, r, e, rid)
	}

	auth, parsed := parseSigV4(r)
	if parsed {
		if e := checkScope(auth, s.region); e != nil {
			refuse(*e, "s3embed: request refused")
			return
		}
	}
	var keyBucket, accessKey, secret string
	code := signature.V4SignVerifyWithLookup(r, func(ak string) (string, bool) {
		sec, bucket, ok := s.keys.ResolveKey(r.Context(), ak)
		if ok {
			keyBucket, accessKey, secret = bucket, ak, sec
		}
		return sec, ok
	})
	if code != signature.ErrNone {
		refuse(signature.GetAPIError(code), "s3embed: request refused")
		return
	}
	if !allowed(r, keyBucket) {
		refuse(errAccessDenied, "s3embed: access denied", "access_key", redact(accessKey), "path", r.URL.Path)
		return
	}
	s.count(op, false)
	if s.OnKeyUsed != nil {
		s.OnKeyUsed(accessKey)
	}
	if e := checkKeyName(r); e != nil {
		writeAPIError(w, r, *e, rid)
		return
	}

	// From here on r is a copy: the net/http server must keep seeing its
	// own body, so that a request answered before its body was read (a
	// write refused by a quota, with Expect: 100-continue) closes the
	// connection instead of leaving the unsent body to be read as the
	// next request.
	body := r.Body
	r = r.WithContext(context.WithValue(r.Context(), bucketCtxKey{}, keyBucket))
	aw := &answerWriter{ResponseWriter: w, op: op, rid: rid, note: &objectNote{}, fault: &requestFault{}, req: r}
	payload := r.Header.Get("X-Amz-Content-Sha256")
	switch {
	case unsupportedPayloads[payload]:
		writeAPIError(w, r, errUnsupported, rid)
		return
	case payload == streamingPayload:
		if !parsed || auth.presigned || auth.signedAt.IsZero() {
			writeAPIError(w, r, errChunkFraming, rid)
			return
		}
		decoded, err := strconv.ParseInt(r.Header.Get("X-Amz-Decoded-Content-Length"), 10, 64)
		if err != nil || decoded < 0 {
			writeAPIError(w, r, errNoDecodedLen, rid)
			return
		}
		// The body handed on is the verified data; gofakes3 must not
		// decode it again.
		cr := newChunkReader(r.Body, auth, secret, decoded, aw.fault)
		r.Body = cr
		if decoded == 0 {
			// gofakes3 reads nothing of an empty body: check its final
			// chunk here.
			if _, err := io.Copy(io.Discard, cr); err != nil {
				e := errIncompleteBody
				if aw.fault.err != nil {
					e = *aw.fault.err
				}
				writeAPIError(w, r, e, rid)
				return
			}
		}
		r.ContentLength = decoded
		r.Header.Set("Content-Length", strconv.FormatInt(decoded, 10))
		r.Header.Del("X-Amz-Content-Sha256")
	case len(payload) == sha256.Size*2 && r.URL.Query().Get("X-Amz-Signature") == "":
		want, err := hex.DecodeString(payload)
		if err != nil {
			writeAPIError(w, r, errSHAMismatch, rid)
			return
		}
		if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
			if payload != emptySHA256 {
				writeAPIError(w, r, errSHAMismatch, rid)
				return
			}
		} else {
			r.Body = &shaVerifier{rc: r.Body, want: want, h: sha256.New(), remaining: r.ContentLength}
		}
	}
	matchPartETags(r.Header)
	ctx := context.WithValue(r.Context(), objectNoteKey{}, aw.note)
	if writes[op] && s.backend.quotas != nil {
		// under the answer's writer: a quota's refusal is a 403 there
		sig := &quotaSignal{}
		ctx = context.WithValue(ctx, quotaSignalKey{}, sig)
		qw := &quotaWriter{ResponseWriter: aw.ResponseWriter, sig: sig}
		aw.ResponseWriter = qw
		r.Body = noClose{r.Body}
		defer func() {
			if sig.hit.Load() {
				drainRefused(qw.ResponseWriter, body)
			}
		}()
	}
	if s.OnChange == nil || !mutating[op] {
		s.s3.ServeHTTP(aw, r.WithContext(ctx))
		aw.finish()
		return
	}
	s.beginWrite(keyBucket)
	defer s.endWrite(keyBucket)
	s.s3.ServeHTTP(aw, r.WithContext(ctx))
	aw.finish()
	if aw.succeeded() {
		_, key := splitPath(r.URL.Path)
		s.OnChange(Change{Bucket: keyBucket, AccessKey: accessKey, Op: op, Key: key})
	}
}

// allowed reports whether a key scoped to keyBucket may make request r:
// only path-style requests on its own bucket, never bucket creation,
// deletion or configuration, and copies only from its own bucket. It may
// list the buckets, which answers its own bucket only (see
// backend.ListBuckets), as MinIO lists the buckets a key's policy allows.
func allowed(r *http.Request, keyBucket string) bool {
	bucket, object := splitPath(r.URL.Path)
	if keyBucket == "" {
		return false
	}
	if bucket == "" {
		return r.Method == http.MethodGet && r.Header.Get("X-Amz-Copy-Source") == ""
	}
	if bucket != keyBucket {
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
