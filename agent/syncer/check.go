package syncer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
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

// newS3Client is an S3 client of r's endpoint with r's key, path style
// (what a bucket-scoped key needs). timeout bounds each request (0: none
// but the caller's context) and requests are tried twice.
func newS3Client(r Remote, timeout time.Duration) *s3.Client {
	region := r.Region
	if region == "" {
		region = "us-east-1"
	}
	return s3.New(s3.Options{
		BaseEndpoint:     aws.String(r.Endpoint),
		Region:           region,
		UsePathStyle:     true,
		Credentials:      credentials.NewStaticCredentialsProvider(r.AccessKey, r.SecretKey, ""),
		RetryMaxAttempts: 2,
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
	client := newS3Client(r, checkTimeout)
	_, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(r.Bucket), MaxKeys: aws.Int32(1)})
	if err == nil {
		return nil
	}
	var apiErr smithy.APIError
	switch {
	case isKeyRejected(err):
		code := "rejected"
		if errors.As(err, &apiErr) {
			code = apiErr.ErrorCode()
		}
		return fmt.Errorf("syncer: check: %w (S3 said %s for key %s at %s)", ErrKeyRejected, code, r.AccessKey, r.Endpoint)
	case errors.As(err, &apiErr):
		return fmt.Errorf("syncer: check: list bucket %q at %s: %s: %s", r.Bucket, r.Endpoint, apiErr.ErrorCode(), apiErr.ErrorMessage())
	case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("syncer: check: %w", ctx.Err())
	}
	return fmt.Errorf("syncer: check: %w %s: %w", ErrOffline, r.Endpoint, err)
}
