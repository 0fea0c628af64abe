package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/e2e/harness"
)

// The fault suite's bookkeeping: every write and delete the test makes, on
// either side, and the check that nothing a person wrote was lost.
//
// A version is owed when nobody saw it before it was replaced: no later
// edit or delete was made from it (the writers read a note before they
// change it, as an editor does). Every owed version must be somewhere at
// the end: at its path, in a conflict file, or in a version store (this
// device's, or the bucket's). A delete is resurrected when the deleted
// version is back at its path and nobody wrote there since.

// ledgerOp is one write or delete.
type ledgerOp struct {
	side    string // "local" or "cloud"
	path    string
	content string // what was written ("" for a delete)
	base    string // what the writer saw there before ("" if nothing)
	delete  bool
	at      time.Time
}

type ledger struct {
	mu  sync.Mutex
	ops []ledgerOp
	seq atomic.Int64
}

func (l *ledger) add(op ledgerOp) {
	op.at = time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, op)
}

func (l *ledger) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ops)
}

// content is a unique body for a new version of path.
func (l *ledger) content(side, path string) string {
	return fmt.Sprintf("%s wrote %s (#%d, %08x)\n", side, path, l.seq.Add(1), rand.Uint32())
}

// notePool is the set of notes the writers work on.
func notePool(n int) []string {
	out := make([]string, n)
	for i := range out {
		switch i % 3 {
		case 0:
			out[i] = fmt.Sprintf("n%02d.md", i)
		case 1:
			out[i] = fmt.Sprintf("projects/p%02d.md", i)
		default:
			out[i] = fmt.Sprintf("journal/2026/j%02d.md", i)
		}
	}
	return out
}

// localWriter edits, creates and deletes notes in the folder as a person
// with an editor does: read, then save through a temporary file renamed
// into place.
func localWriter(ctx context.Context, l *ledger, folder string, pool []string, ops int, pause time.Duration) error {
	for i := 0; i < ops && ctx.Err() == nil; i++ {
		path := pool[rand.IntN(len(pool))]
		full := filepath.Join(folder, filepath.FromSlash(path))
		cur, err := os.ReadFile(full)
		base := ""
		if err == nil {
			base = string(cur)
		}
		if err == nil && rand.IntN(100) < 12 {
			if err := os.Remove(full); err == nil {
				l.add(ledgerOp{side: "local", path: path, base: base, delete: true})
			}
		} else {
			body := l.content("local", path)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				continue // a file where the folder should be: the other side's doing
			}
			tmp := filepath.Join(filepath.Dir(full), fmt.Sprintf(".bmtest-%08x", rand.Uint32()))
			if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
				return err
			}
			if err := os.Rename(tmp, full); err != nil {
				os.Remove(tmp)
				continue
			}
			l.add(ledgerOp{side: "local", path: path, content: body, base: base})
		}
		sleepRand(ctx, pause)
	}
	return nil
}

// cloudWriter edits, creates and deletes the same notes in the bucket as
// another device does: read, then write only over what it read (If-Match),
// so it never replaces a version it did not see; and it announces its
// changes to the server (POST /sync), as bm-agent does.
func cloudWriter(ctx context.Context, l *ledger, d *harness.Device, serverURL string, pool []string, ops int, pause time.Duration) error {
	bucket := aws.String(d.Creds.BucketName)
	announce := make(chan struct{}, 1)
	defer close(announce)
	go func() {
		for range announce {
			_ = d.NotifySync(context.WithoutCancel(ctx), serverURL)
			time.Sleep(100 * time.Millisecond) // announcements coalesce
		}
	}()
	changed := func() {
		select {
		case announce <- struct{}{}:
		default:
		}
	}
	for i := 0; i < ops && ctx.Err() == nil; i++ {
		path := pool[rand.IntN(len(pool))]
		key := aws.String(path)
		base, etag := "", ""
		if out, err := d.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: bucket, Key: key}); err == nil {
			b, _ := io.ReadAll(out.Body)
			out.Body.Close()
			base, etag = string(b), aws.ToString(out.ETag)
		}
		if etag != "" && rand.IntN(100) < 12 {
			if _, err := d.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: bucket, Key: key, IfMatch: aws.String(etag)}); err == nil {
				l.add(ledgerOp{side: "cloud", path: path, base: base, delete: true})
				changed()
			}
		} else {
			body := l.content("cloud", path)
			in := &s3.PutObjectInput{Bucket: bucket, Key: key, Body: strings.NewReader(body)}
			if etag != "" {
				in.IfMatch = aws.String(etag)
			} else {
				in.IfNoneMatch = aws.String("*")
			}
			if _, err := d.S3.PutObject(ctx, in); err == nil {
				l.add(ledgerOp{side: "cloud", path: path, content: body, base: base})
				changed()
			}
		}
		sleepRand(ctx, pause)
	}
	return nil
}

func sleepRand(ctx context.Context, max time.Duration) {
	if max <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(time.Duration(rand.Int64N(int64(max)))):
	}
}

// ledgerResult is what the check found.
type ledgerResult struct {
	ops, owed, lost, resurrected int
	lostExamples                 []string
	resurrectedExamples          []string
}

// check looks for every owed version in present (every content that
// exists anywhere at the end), and for resurrected deletes in the final
// trees (path → content, both sides).
func (l *ledger) check(present map[string]bool, local, cloud map[string]string) ledgerResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := map[string]bool{}
	for _, op := range l.ops {
		if op.base != "" {
			seen[op.base] = true
		}
	}
	res := ledgerResult{ops: len(l.ops)}
	for _, op := range l.ops {
		if op.delete || seen[op.content] {
			continue
		}
		res.owed++
		if !present[op.content] {
			res.lost++
			if len(res.lostExamples) < 5 {
				res.lostExamples = append(res.lostExamples, fmt.Sprintf("%s %s at %s: %q", op.side, op.path, op.at.Format("15:04:05.000"), strings.TrimSpace(op.content)))
			}
		}
	}
	for i, op := range l.ops {
		if !op.delete {
			continue
		}
		rewritten := false
		for _, later := range l.ops[i+1:] {
			if later.path == op.path && !later.delete {
				rewritten = true
				break
			}
		}
		if rewritten {
			continue
		}
		if local[op.path] == op.base || cloud[op.path] == op.base {
			res.resurrected++
			if len(res.resurrectedExamples) < 5 {
				res.resurrectedExamples = append(res.resurrectedExamples, fmt.Sprintf("%s deleted %s at %s", op.side, op.path, op.at.Format("15:04:05.000")))
			}
		}
	}
	return res
}

// everything returns every content that exists anywhere at the end: the
// folder, the bucket (the version store included) and this device's
// version store, and the two trees of notes.
func everything(t *testing.T, ctx context.Context, a *harness.Agent, d *harness.Device) (present map[string]bool, local, cloud map[string]string) {
	t.Helper()
	present = map[string]bool{}
	local, err := localTree(a.Folder)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range local {
		present[c] = true
	}
	cloud = map[string]string{}
	p := s3.NewListObjectsV2Paginator(d.S3, &s3.ListObjectsV2Input{Bucket: &d.Creds.BucketName})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			b, err := d.GetObject(ctx, *o.Key)
			if err != nil {
				t.Fatal(err)
			}
			present[string(b)] = true
			if !strings.HasPrefix(*o.Key, ".bm-versions/") {
				cloud[*o.Key] = string(b)
			}
		}
	}
	err = filepath.WalkDir(filepath.Join(a.Home, "versions"), func(path string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() || strings.HasSuffix(path, ".json") || strings.HasSuffix(path, ".jsonl") {
			return err
		}
		b, err := os.ReadFile(path)
		if err == nil {
			present[string(b)] = true
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return present, local, cloud
}

// sameTrees reports how the folder and the bucket differ ("" if they
// hold the same notes, conflict files included).
func sameTrees(local, cloud map[string]string) string {
	var diffs []string
	for k, v := range local {
		if k == ".bmignore" {
			continue
		}
		if c, ok := cloud[k]; !ok {
			diffs = append(diffs, "only here: "+k)
		} else if c != v {
			diffs = append(diffs, "differs: "+k)
		}
	}
	for k := range cloud {
		if _, ok := local[k]; !ok {
			diffs = append(diffs, "only in the bucket: "+k)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("... %d more", len(diffs)-5))
	}
	return strings.Join(diffs, "; ")
}
