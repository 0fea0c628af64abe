package embedded

import (
	"context"
	"errors"
	"fmt"

	"github.com/basicmachines-co/bm-agent/server/s3embed"
	"github.com/basicmachines-co/bm-agent/server/storage"
)

// BucketFingerprint implements lifecycle.BucketFingerprinter: a value that
// changes whenever an object of bucket is written or deleted through the
// endpoint (see s3embed.Server.BucketFingerprint), read from memory. A
// missing bucket is storage.ErrNotFound; a bucket being written to is
// storage.ErrBusy.
func (p *Provider) BucketFingerprint(ctx context.Context, bucket string) (string, error) {
	if p.srv == nil {
		return "", errors.New("embedded: fingerprint: no endpoint server")
	}
	fp, err := p.srv.BucketFingerprint(ctx, bucket)
	if errors.Is(err, s3embed.ErrNoSuchBucket) {
		return "", fmt.Errorf("embedded: fingerprint %q: %w", bucket, storage.ErrNotFound)
	}
	if errors.Is(err, s3embed.ErrBucketBusy) {
		return "", fmt.Errorf("embedded: fingerprint %q: %w", bucket, storage.ErrBusy)
	}
	if err != nil {
		return "", fmt.Errorf("embedded: fingerprint: %w", err)
	}
	return fp, nil
}
