package syncer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/basicmachines-co/bm-agent/agent/versions"
)

var (
	// ErrKeyRejected: S3 refused the device's key (revoked, unknown, or a
	// secret that no longer matches). A pass or a Check fails with it; the
	// daemon answers by minting a new key.
	ErrKeyRejected = errors.New("the device's key was revoked or rejected: log out and in again, or the daemon will mint a new key")
	// ErrOffline: the S3 endpoint could not be reached at all.
	ErrOffline = errors.New("cannot reach the S3 endpoint")
)

// keyRejectedCodes are the S3 error codes that mean "this key is no good".
var keyRejectedCodes = []string{"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"}

// isKeyRejected reports whether err (or one of the extra messages, such
// as bisync's critical error line) says that S3 refused the key. rclone
// and bisync do not always keep the error chain, so the codes are also
// looked for in the text.
func isKeyRejected(err error, extra ...string) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrKeyRejected) {
		return true
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		for _, c := range keyRejectedCodes {
			if apiErr.ErrorCode() == c {
				return true
			}
		}
	}
	msg := strings.Join(append([]string{err.Error()}, extra...), "\n")
	for _, c := range keyRejectedCodes {
		if strings.Contains(msg, c) {
			return true
		}
	}
	return false
}

// isNetworkFailure reports whether err (or one of the extra messages,
// such as bisync's critical error line) says the endpoint could not be
// reached. rclone and bisync do not always keep the error chain, so the
// Go net package's words are also looked for in the text: here, at the
// boundary, so that the engine's callers only see ErrOffline.
func isNetworkFailure(err error, extra ...string) bool {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	if errors.As(err, &dnsErr) || errors.As(err, &opErr) {
		return true
	}
	msg := strings.ToLower(strings.Join(append([]string{err.Error()}, extra...), "\n"))
	for _, s := range []string{
		"connection refused", "no such host", "i/o timeout", "network is unreachable",
		"host is unreachable", "connection reset by peer", "tls handshake timeout",
		"dial tcp", "server misbehaving", "timeout awaiting response headers",
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// newS3Client is an S3 client of r's endpoint with r's key, path style
// (what a bucket-scoped key needs). timeout bounds each request (0: none
// but the caller's context); each is tried attempts times.
func newS3Client(r Remote, timeout time.Duration, attempts int) *s3.Client {
	region := r.Region
	if region == "" {
		region = "us-east-1"
	}
	return s3.New(s3.Options{
		BaseEndpoint:     aws.String(r.Endpoint),
		Region:           region,
		UsePathStyle:     true,
		Credentials:      credentials.NewStaticCredentialsProvider(r.AccessKey, r.SecretKey, ""),
		RetryMaxAttempts: attempts,
		HTTPClient:       &http.Client{Timeout: timeout},
	})
}

// checkTimeout bounds Check when ctx has no sooner deadline.
const checkTimeout = 15 * time.Second

// Check asks the bucket for one key (one ListObjectsV2 with max-keys 1)
// with the engine's key, to tell whether S3 is reachable and accepts the
// key. It fails with ErrKeyRejected when S3 refuses the key and with
// ErrOffline (the message names the endpoint) when the endpoint cannot be
// reached. It does not wait for a running pass.
func (e *Engine) Check(ctx context.Context) error {
	return CheckRemote(ctx, e.cfg.Remote)
}

// CheckRemote is Engine.Check for a Remote without an engine.
func CheckRemote(ctx context.Context, r Remote) error {
	if err := r.validate(); err != nil {
		return fmt.Errorf("syncer: check: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	client := newS3Client(r, checkTimeout, 2)
	_, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(r.Bucket), MaxKeys: aws.Int32(1)})
	if err != nil {
		return fmt.Errorf("syncer: check: %w", s3Failure(ctx, err, r))
	}
	return nil
}

// s3Failure gives a failed request to the bucket its typed error:
// ErrKeyRejected when S3 refused the key, ErrOffline when the endpoint
// could not be reached (or did not answer in time), the context's error
// when the caller gave up, and S3's own code otherwise.
func s3Failure(ctx context.Context, err error, r Remote) error {
	var apiErr smithy.APIError
	switch {
	case isKeyRejected(err):
		code := "rejected"
		if errors.As(err, &apiErr) {
			code = apiErr.ErrorCode()
		}
		return fmt.Errorf("%w (S3 said %s for key %s at %s)", ErrKeyRejected, code, r.AccessKey, r.Endpoint)
	case errors.As(err, &apiErr):
		return fmt.Errorf("list bucket %q at %s: %s: %s", r.Bucket, r.Endpoint, apiErr.ErrorCode(), apiErr.ErrorMessage())
	case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
		return ctx.Err()
	}
	// Say what happened in the network's words ("connection refused"),
	// not the SDK's retry bookkeeping; keep the chain for errors.Is.
	why := "no answer in time"
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		why = opErr.Err.Error()
	}
	return &offlineError{endpoint: r.Endpoint, why: why, err: err}
}

// offlineError is ErrOffline with what the network said.
type offlineError struct {
	endpoint, why string
	err           error
}

func (e *offlineError) Error() string {
	return fmt.Sprintf("%s %s (%s)", ErrOffline, e.endpoint, e.why)
}

func (e *offlineError) Unwrap() []error { return []error{ErrOffline, e.err} }

// probeTimeout bounds the engine's reachability probe; probeEvery is how
// often a running pass probes (after the first probeEvery). So a pass
// notices a dead endpoint within about probeEvery+probeTimeout, whatever
// rclone's own retries would do. Variables so tests can shorten them.
var (
	probeTimeout = 8 * time.Second
	probeEvery   = 1500 * time.Millisecond
)

// probe asks the bucket for its first keys at the root (one
// ListObjectsV2, tried once, within probeTimeout): it tells whether the
// bucket is reachable and accepts the key (typed errors as s3Failure) and
// whether it holds anything but the version store.
func (e *Engine) probe(ctx context.Context) (hasFiles bool, err error) {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	out, err := e.probeS3.ListObjectsV2(pctx, &s3.ListObjectsV2Input{
		Bucket: aws.String(e.cfg.Remote.Bucket), Delimiter: aws.String("/"), MaxKeys: aws.Int32(10),
	})
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if isCode(err, "NoSuchBucket") {
			return false, fmt.Errorf("bucket %q not found or not readable: %w", e.cfg.Remote.Bucket, err)
		}
		return false, s3Failure(pctx, err, e.cfg.Remote)
	}
	for _, o := range out.Contents {
		if !versions.IsVersionKey(aws.ToString(o.Key)) {
			return true, nil
		}
	}
	for _, p := range out.CommonPrefixes {
		if !versions.IsVersionKey(aws.ToString(p.Prefix)) {
			return true, nil
		}
	}
	return false, nil
}

// watchReachable probes the bucket every probeEvery while a pass runs
// and cancels it (cause: an error wrapping ErrOffline) when the endpoint
// stops answering; stop ends the watch.
func (e *Engine) watchReachable(ctx context.Context, cancel context.CancelCauseFunc) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(probeEvery)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if _, err := e.probe(ctx); errors.Is(err, ErrOffline) {
				e.log.Warn("the bucket stopped answering: stopping the pass", "err", err)
				cancel(err)
				return
			}
		}
	}()
	return func() { close(quit); <-done }
}

// isCode reports whether err is an S3 API error with code.
func isCode(err error, code string) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == code
}
