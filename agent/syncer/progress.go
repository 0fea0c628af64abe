package syncer

import (
	"context"
	"sync"
	"time"

	"github.com/rclone/rclone/fs/accounting"
)

// Progress is how far a pass has got, read from the pass's own rclone
// stats group (so a mount or another engine's transfers never mix in).
// Files and bytes count transfers (uploads and downloads); the totals
// grow while bisync queues more work.
type Progress struct {
	BytesDone, BytesTotal int64
	FilesDone, FilesTotal int
	Rate                  float64       // bytes per second, averaged
	ETA                   time.Duration // estimated time left; zero when unknown
}

// progressEvery is how often PassOptions.Progress is called during a pass.
var progressEvery = 500 * time.Millisecond

// progress reads the pass's stats group.
func (pc *passCounter) progress(ctx context.Context) Progress {
	out, err := accounting.StatsGroup(ctx, pc.group).RemoteStats(true)
	if err != nil {
		return Progress{}
	}
	i64 := func(k string) int64 {
		switch v := out[k].(type) {
		case int64:
			return v
		case int:
			return int64(v)
		case float64:
			return int64(v)
		}
		return 0
	}
	p := Progress{
		BytesDone:  i64("bytes"),
		BytesTotal: i64("totalBytes"),
		FilesDone:  int(i64("transfers")),
		FilesTotal: int(i64("totalTransfers")),
	}
	if v, ok := out["speed"].(float64); ok {
		p.Rate = v
	}
	if v, ok := out["eta"].(float64); ok && p.BytesDone < p.BytesTotal {
		p.ETA = time.Duration(v * float64(time.Second))
	}
	if p.BytesTotal < p.BytesDone {
		p.BytesTotal = p.BytesDone
	}
	if p.FilesTotal < p.FilesDone {
		p.FilesTotal = p.FilesDone
	}
	return p
}

// reportProgress calls fn with the pass's progress every progressEvery
// until the returned stop is called; stop then calls fn once more with the
// final figures. stop must run before pc.close (which frees the group).
func (pc *passCounter) reportProgress(ctx context.Context, fn func(Progress)) (stop func()) {
	ctx = context.WithoutCancel(ctx) // the final report comes after a cancel too
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				fn(pc.progress(ctx))
			}
		}
	}()
	return func() {
		close(quit)
		wg.Wait()
		fn(pc.progress(ctx))
	}
}
