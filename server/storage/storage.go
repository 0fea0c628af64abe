// Package storage is the server's view of object storage: one interface for
// the providers that create a bucket per tenant and mint and revoke
// bucket-scoped keys (the embedded S3 endpoint, MinIO, S3 + IAM).
package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// Logger is the logger a provider logs through: log (the server's,
// injected through the provider's constructor) with the provider's
// component, or one that discards everything where log is nil.
func Logger(log *slog.Logger, component string) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log.With("component", component)
}

// Key is a bucket-scoped S3 key. SecretKey is handed to the caller once and
// never stored by the server.
type Key struct {
	AccessKey string
	SecretKey string
	// Ref is what the provider needs later to revoke the key (an IAM policy
	// ARN, a service account name); it is stored, the secret is not.
	Ref string
}

// Provider creates buckets and bucket-scoped keys at one storage service.
type Provider interface {
	// Name is a short name for logs and /readyz ("embedded", "minio", "s3").
	Name() string
	CreateBucket(ctx context.Context, bucket string) error
	DeleteBucket(ctx context.Context, bucket string) error
	ListBuckets(ctx context.Context) ([]string, error)
	// MintKey creates a key that can read, write, list and delete objects of
	// bucket and nothing else.
	MintKey(ctx context.Context, bucket string) (Key, error)
	// RevokeKey makes key unusable at the provider. Revoking a key that is
	// already gone is not an error.
	RevokeKey(ctx context.Context, key Key) error
	// TestKey checks that key can list bucket.
	TestKey(ctx context.Context, key Key, bucket string) error
	// Endpoint is the S3 endpoint URL and region clients use with the keys.
	Endpoint() (url, region string)
}

// KeyIndex is what the embedded provider asks the server's store about a
// key: whose it is, which bucket it belongs to and whether it is still
// active. An unknown key is an error matching ErrNotFound.
type KeyIndex interface {
	LookupKey(ctx context.Context, accessKey string) (KeyRecord, error)
}

// KeyRecord is what the server's store knows of an access key.
type KeyRecord struct {
	TenantID string
	Bucket   string // the tenant's bucket
	// Description is what the client gave when it minted the key
	// (bm-agent: "bm-agent on DEVICE").
	Description string
	// Active: the key is not revoked, and its tenant is active and has a
	// bucket.
	Active bool
}

// ErrNotFound is returned for a bucket or key the provider does not know.
var ErrNotFound = errors.New("storage: not found")

// ErrBusy is a provider's answer while it cannot give a stable value yet
// (a bucket's fingerprint while a write to it is in flight): ask again
// later.
var ErrBusy = errors.New("storage: busy")

// BucketPolicy is the policy of a key for bucket, in the IAM policy language
// MinIO and S3 + IAM share: object read, write, delete and multipart on the
// bucket's objects, listing of the bucket, and nothing else (the multipart
// actions are for rclone's uploads of large files).
func BucketPolicy(bucket string) ([]byte, error) {
	if bucket == "" || strings.ContainsAny(bucket, "*?/\"") {
		return nil, fmt.Errorf("bucket policy: invalid bucket name %q", bucket)
	}
	type statement struct {
		Effect   string   `json:"Effect"`
		Action   []string `json:"Action"`
		Resource []string `json:"Resource"`
	}
	doc := struct {
		Version   string      `json:"Version"`
		Statement []statement `json:"Statement"`
	}{
		Version: "2012-10-17",
		Statement: []statement{
			{
				Effect:   "Allow",
				Action:   []string{"s3:ListBucket", "s3:ListBucketMultipartUploads"},
				Resource: []string{"arn:aws:s3:::" + bucket},
			},
			{
				Effect: "Allow",
				Action: []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject",
					"s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"},
				Resource: []string{"arn:aws:s3:::" + bucket + "/*"},
			},
		},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("bucket policy: %w", err)
	}
	return b, nil
}
