package s3iam

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/server/storage"
)

// listPageSize is the number of objects asked for per ListObjectsV2
// request, the S3 maximum.
const listPageSize = 1000

// BucketFingerprint implements lifecycle.BucketFingerprinter: a value that
// changes whenever an object of bucket is added, overwritten or removed,
// however the change was made. It lists the whole bucket with ListObjectsV2
// and the admin credentials, and hashes each object's key, ETag, size and
// last-modified time, plus the object count, into "v1-COUNT-SHA256HEX".
//
// Cost: one ListObjectsV2 request per 1,000 objects (and no object reads)
// each time it is called, that is once per fallback interval and tenant
// (lifecycle.Config.FallbackInterval, 5 minutes by default); on AWS, a
// class-A request each. Only the current versions are listed: in a
// versioned bucket, a change that leaves the current version alone goes
// unseen, as it does for a sync client. A missing bucket is
// storage.ErrNotFound.
func (p *Provider) BucketFingerprint(ctx context.Context, bucket string) (string, error) {
	fp := storage.NewFingerprint()
	pager := s3.NewListObjectsV2Paginator(p.s3, &s3.ListObjectsV2Input{
		Bucket:  aws.String(bucket),
		MaxKeys: aws.Int32(listPageSize),
	})
	for pager.HasMorePages() {
		out, err := pager.NextPage(ctx)
		if err != nil {
			if errorCode(err) == "NoSuchBucket" {
				return "", fmt.Errorf("s3iam: fingerprint bucket %q: %w", bucket, storage.ErrNotFound)
			}
			return "", fmt.Errorf("s3iam: fingerprint bucket %q: %w", bucket, err)
		}
		for _, o := range out.Contents {
			fp.Add(aws.ToString(o.Key), aws.ToString(o.ETag), aws.ToInt64(o.Size), aws.ToTime(o.LastModified))
		}
	}
	return fp.Sum(), nil
}
