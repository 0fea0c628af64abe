package syncer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rclone/rclone/cmd/bisync"
	"github.com/rclone/rclone/fs"
)

// BenchmarkFirstSync times the engine's first sync of N notes to an empty
// bucket of the embedded S3 endpoint, and rclone's own bisync --resync
// (the seed's command without its process start: size,modtime, server
// modtime, a HEAD after each PUT) over the same tree to another empty
// bucket in the same run, alternating which goes first. It reports both
// and engine ÷ bisync; the figures are read, not asserted.
func BenchmarkFirstSync(b *testing.B) {
	for _, n := range []int{3000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			var engine, plain firstSync
			i := 0
			for b.Loop() {
				if i%2 == 0 {
					engine.add(firstSyncEngine(b, n))
					plain.add(firstSyncBisync(b, n))
				} else {
					plain.add(firstSyncBisync(b, n))
					engine.add(firstSyncEngine(b, n))
				}
				i++
			}
			b.ReportMetric(engine.took.Seconds()/float64(i), "engine-s/op")
			b.ReportMetric(plain.took.Seconds()/float64(i), "bisync-s/op")
			b.ReportMetric(float64(engine.took)/float64(plain.took), "engine/bisync")
			b.ReportMetric(float64(engine.requests)/float64(i), "engine-requests/op")
			b.ReportMetric(float64(plain.requests)/float64(i), "bisync-requests/op")
		})
	}
}

// firstSync sums first syncs: their time and S3 requests.
type firstSync struct {
	took     time.Duration
	requests int64
}

func (f *firstSync) add(o firstSync) { f.took += o.took; f.requests += o.requests }

// firstSyncEngine is one first sync of n notes by the engine.
func firstSyncEngine(b *testing.B, n int) firstSync {
	b.Helper()
	s3 := newEmbedS3(b)
	p := newEmbedPair(b, s3, "laptop", ProfileBalanced)
	makeNotes(b, p.local, n)
	s3.srv.ResetStats()
	start := time.Now()
	if _, err := p.engine.Pass(context.Background(), PassOptions{}); err != nil {
		b.Fatal(err)
	}
	return firstSync{took: time.Since(start), requests: s3.srv.Stats()["total"]}
}

// firstSyncBisync is one bisync --resync of n notes, as the seed runs it.
func firstSyncBisync(b *testing.B, n int) firstSync {
	b.Helper()
	s3 := newEmbedS3(b)
	dir := b.TempDir()
	local, work := filepath.Join(dir, "notes"), filepath.Join(dir, "work")
	makeNotes(b, local, n)
	if err := os.MkdirAll(work, 0o700); err != nil {
		b.Fatal(err)
	}
	ctx, ci := fs.AddConfig(context.Background())
	ci.UseServerModTime = true
	ci.LogLevel = fs.LogLevelNotice
	f1, err := fs.NewFs(ctx, local)
	if err != nil {
		b.Fatal(err)
	}
	// the seed's remote: rclone's S3 defaults (a HEAD after each PUT)
	r := s3.remote()
	f2, err := fs.NewFs(ctx, fmt.Sprintf(":s3,provider=Other,env_auth=false,access_key_id=%s,secret_access_key=%s,endpoint='%s',region=%s,force_path_style=true,no_check_bucket=true:%s",
		r.AccessKey, r.SecretKey, r.Endpoint, r.Region, r.Bucket))
	if err != nil {
		b.Fatal(err)
	}
	s3.srv.ResetStats()
	start := time.Now()
	opt := bisync.Options{Resync: true, Workdir: work, CompareFlag: "size,modtime", CheckSync: bisync.CheckSyncFalse}
	if err := bisync.Bisync(ctx, f1, f2, &opt); err != nil {
		b.Fatal(err)
	}
	return firstSync{took: time.Since(start), requests: s3.srv.Stats()["total"]}
}
