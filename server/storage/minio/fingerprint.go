package minio

import (
	"context"
	"fmt"

	miniogo "github.com/minio/minio-go/v7"

	"github.com/basicmachines-co/bm-agent/server/storage"
)

// listPageSize is the number of objects asked for per ListObjectsV2
// request, the S3 maximum.
const listPageSize = 1000

// BucketFingerprint implements lifecycle.BucketFingerprinter: a value that
// changes whenever an object of bucket is added, overwritten or removed,
// however the change was made. It lists the whole bucket with ListObjectsV2
// and the admin credentials, and hashes each object's key, ETag, size and
// last-modified time, plus the object count, into
// "v1-COUNT-SHA256HEX".
//
// Cost: one ListObjectsV2 request per 1,000 objects (and no object reads)
// each time it is called, that is once per fallback interval and tenant
// (lifecycle.Config.FallbackInterval, 5 minutes by default). Only the
// current versions are listed: in a versioned bucket, a change that leaves
// the current version alone goes unseen, as it does for a sync client. A
// missing bucket is storage.ErrNotFound.
func (p *Provider) BucketFingerprint(ctx context.Context, bucket string) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing if it ends early
	fp := storage.NewFingerprint()
	fetchOwner := false
	for obj := range p.s3.ListObjectsIter(ctx, bucket, miniogo.ListObjectsOptions{
		Recursive:  true,
		MaxKeys:    listPageSize,
		FetchOwner: &fetchOwner,
	}) {
		if obj.Err != nil {
			if miniogo.ToErrorResponse(obj.Err).Code == "NoSuchBucket" {
				return "", fmt.Errorf("minio: fingerprint bucket %q: %w", bucket, storage.ErrNotFound)
			}
			return "", fmt.Errorf("minio: fingerprint bucket %q: %w", bucket, obj.Err)
		}
		fp.Add(obj.Key, obj.ETag, obj.Size, obj.LastModified)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("minio: fingerprint bucket %q: %w", bucket, err)
	}
	return fp.Sum(), nil
}
