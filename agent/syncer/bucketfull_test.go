package syncer

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/basicmachines-co/bm-agent/server/s3embed"
	"github.com/basicmachines-co/bm-agent/server/s3embed/s3test"
)

// TestBucketFull: a note the bucket's quota refuses (bm-server's 403
// QuotaExceeded) is set aside as not syncing, with advice that says the
// cloud storage is full, not as a key that is no good (which would mint
// another key); the rest of the pass goes on (a download, a small upload
// that fits); the note stays in the folder; once there is room it is
// uploaded.
func TestBucketFull(t *testing.T) {
	var quota atomic.Int64
	quota.Store(4 << 10)
	ep := s3test.Start(t, "", s3test.Key{AccessKey: testKey, SecretKey: testSecret, Bucket: testBucket}, func(s *s3embed.Server) {
		s.SetQuota(func(context.Context, string) (int64, error) { return quota.Load(), nil }, -1)
	})
	c := cloud{remote: Remote{Endpoint: ep.URL, Region: s3test.Region, AccessKey: testKey, SecretKey: testSecret, Bucket: testBucket}, c: ep.Client()}
	p := newGuardPair(t, c, "laptop", nil)
	p.write(t, "small.md", "fits")
	p.pass(t, PassOptions{})

	big := strings.Repeat("a long note\n", 1000) // 12 KB, past the 4 KB quota
	p.write(t, "big.md", big)
	p.write(t, "tiny.md", "also fits")
	c.put(t, "from-elsewhere.md", "written on another device")
	res := p.pass(t, PassOptions{})
	if len(res.Failures) != 1 || res.Failures[0].Path != "big.md" || res.Failures[0].Reason != FailBucketFull ||
		res.Failures[0].Side != SideCloud || !strings.Contains(res.Failures[0].Advice, "cloud storage is full") {
		t.Fatalf("failures after the refused upload: %+v, want big.md as %s", res.Failures, FailBucketFull)
	}
	local, bucket := p.files(t), c.files(t)
	if local["big.md"] != big || local["from-elsewhere.md"] != "written on another device" {
		t.Errorf("folder after the refused upload: %v (big.md %d bytes)", keys(local), len(local["big.md"]))
	}
	if _, ok := bucket["big.md"]; ok || bucket["tiny.md"] != "also fits" {
		t.Errorf("bucket after the refused upload: %v", keys(bucket))
	}

	quota.Store(1 << 20)
	res = p.pass(t, PassOptions{RetryFailed: true}) // what Sync now asks
	if len(res.Failures) != 0 {
		t.Errorf("failures once there is room: %+v", res.Failures)
	}
	if got := c.files(t)["big.md"]; got != big {
		t.Errorf("big.md in the bucket once there is room: %d bytes, want %d", len(got), len(big))
	}
}
