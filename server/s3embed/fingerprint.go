package s3embed

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/rclone/gofakes3"
)

// generation numbers the changes of every bucket index of the process, so
// that an index rebuilt after its bucket was deleted and created again
// never repeats an earlier value.
var generation atomic.Uint64

func nextGen() uint64 { return generation.Add(1) }

// BucketFingerprint returns a value that changes whenever an object of
// bucket is written, replaced or deleted through the endpoint (or the bucket
// is loaded again from disk), in constant time: the bucket's change
// generation and its object count. It is meaningful only within one process;
// compare it with an earlier value of the same Server. A missing bucket is
// ErrNoSuchBucket; while a write to bucket is in flight it is
// ErrBucketBusy (the write may have landed before OnChange announces it).
func (s *Server) BucketFingerprint(ctx context.Context, bucket string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("s3embed: fingerprint %q: %w", bucket, err)
	}
	idx, err := s.backend.index(bucket)
	if err != nil {
		if gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchBucket) {
			return "", fmt.Errorf("s3embed: fingerprint %q: %w", bucket, ErrNoSuchBucket)
		}
		return "", fmt.Errorf("s3embed: fingerprint %q: %w", bucket, err)
	}
	idx.mu.RLock()
	v := fmt.Sprintf("g%d-n%d", idx.gen, len(idx.keys))
	idx.mu.RUnlock()
	// Asked after the value is read: a write the value holds either is
	// still in flight now or has already been announced by OnChange.
	if s.writingTo(bucket) {
		return "", fmt.Errorf("s3embed: fingerprint %q: %w", bucket, ErrBucketBusy)
	}
	return v, nil
}
