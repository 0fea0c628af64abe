package watch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

var testOpt = Options{Delay: 100 * time.Millisecond, MaxWait: 500 * time.Millisecond, Settle: 50 * time.Millisecond}

// start runs a watcher on dir until the end of the test.
func start(t *testing.T, dir string, opt Options) *Watcher {
	t.Helper()
	w, err := New(dir, opt, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return w
}

// collect returns the batches received until none arrives for quiet.
func collect(t *testing.T, w *Watcher, quiet time.Duration) []Batch {
	t.Helper()
	var got []Batch
	deadline := time.After(10 * time.Second)
	for {
		select {
		case b, ok := <-w.Batches():
			if !ok {
				return got
			}
			got = append(got, b)
		case <-time.After(quiet):
			return got
		case <-deadline:
			t.Fatal("batches never went quiet")
		}
	}
}

func write(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("note "+path), 0o644); err != nil {
		t.Fatal(err)
	}
}

// allPaths returns the union of the batches' paths.
func allPaths(bs []Batch) []string {
	var ps []string
	for _, b := range bs {
		for _, p := range b.Paths {
			if !slices.Contains(ps, p) {
				ps = append(ps, p)
			}
		}
	}
	slices.Sort(ps)
	return ps
}

func TestSingleWrite(t *testing.T) {
	dir := t.TempDir()
	w := start(t, dir, testOpt)
	write(t, filepath.Join(dir, "a.md"))
	bs := collect(t, w, 300*time.Millisecond)
	if len(bs) != 1 {
		t.Fatalf("got %d batches (%+v), want 1", len(bs), bs)
	}
	b := bs[0]
	if !slices.Equal(b.Paths, []string{"a.md"}) || b.Count < 1 || b.First.IsZero() || b.Last.Before(b.First) {
		t.Errorf("batch = %+v", b)
	}
}

func TestBurst(t *testing.T) {
	dir := t.TempDir()
	w := start(t, dir, testOpt)
	const n = 1000
	for i := range n {
		write(t, filepath.Join(dir, fmt.Sprintf("n%04d.md", i)))
	}
	bs := collect(t, w, 300*time.Millisecond)
	if len(bs) < 1 || len(bs) > 2 {
		t.Fatalf("got %d batches, want 1 or 2", len(bs))
	}
	if ps := allPaths(bs); len(ps) != n {
		t.Errorf("saw %d distinct paths, want %d", len(ps), n)
	}
}

func TestNewDirectories(t *testing.T) {
	dir := t.TempDir()
	w := start(t, dir, testOpt)

	// Created in one go: the files may exist before their directory's watch
	// does, so the watcher must walk the new directory.
	deep := filepath.Join(dir, "a", "b", "c")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(deep, "early.md"))
	ps := allPaths(collect(t, w, 300*time.Millisecond))
	for _, want := range []string{"a", "a/b/c/early.md"} {
		if !slices.Contains(ps, want) {
			t.Errorf("paths %v lack %q", ps, want)
		}
	}

	// Later writes in the new directories are watched.
	write(t, filepath.Join(deep, "later.md"))
	ps = allPaths(collect(t, w, 300*time.Millisecond))
	if !slices.Equal(ps, []string{"a/b/c/later.md"}) {
		t.Errorf("paths = %v, want [a/b/c/later.md]", ps)
	}
}

func TestMaxWait(t *testing.T) {
	dir := t.TempDir()
	w := start(t, dir, testOpt)
	stop := make(chan struct{})
	defer close(stop)
	begin := time.Now()
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond): // well under Delay
				os.WriteFile(filepath.Join(dir, "busy.md"), fmt.Appendf(nil, "%d", i), 0o644)
			}
		}
	}()
	select {
	case b := <-w.Batches():
		if d := time.Since(begin); d > testOpt.MaxWait+300*time.Millisecond {
			t.Errorf("first batch after %v, want about MaxWait (%v)", d, testOpt.MaxWait)
		}
		if b.Last.Sub(b.First) > testOpt.MaxWait+100*time.Millisecond {
			t.Errorf("batch spans %v, more than MaxWait", b.Last.Sub(b.First))
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no batch while writes continued")
	}
}

func TestSuppress(t *testing.T) {
	dir := t.TempDir()
	w := start(t, dir, testOpt)

	missed := w.Hold(func() {
		write(t, filepath.Join(dir, "engine.md"))
		if err := os.Mkdir(filepath.Join(dir, "pulled"), 0o755); err != nil {
			t.Fatal(err)
		}
	})
	if bs := collect(t, w, 300*time.Millisecond); len(bs) != 0 {
		t.Errorf("suppressed writes gave batches %+v", bs)
	}
	if got := missed.Paths; !slices.Contains(got, "engine.md") || !slices.Contains(got, "pulled") {
		t.Errorf("missed = %+v, want engine.md and pulled", missed)
	}

	// A directory created while suppressed is still watched.
	write(t, filepath.Join(dir, "pulled", "x.md"))
	if ps := allPaths(collect(t, w, 300*time.Millisecond)); !slices.Equal(ps, []string{"pulled/x.md"}) {
		t.Errorf("paths = %v, want [pulled/x.md]", ps)
	}

	// Nested holds: only the last Resume ends suppression.
	w.Suppress()
	w.Suppress()
	if b := w.Resume(); !b.Empty() {
		t.Errorf("inner Resume returned %+v", b)
	}
	write(t, filepath.Join(dir, "still-held.md"))
	time.Sleep(50 * time.Millisecond)
	if b := w.Resume(); !slices.Contains(b.Paths, "still-held.md") {
		t.Errorf("outer Resume = %+v, want still-held.md", b)
	}
	if bs := collect(t, w, 300*time.Millisecond); len(bs) != 0 {
		t.Errorf("held write gave batches %+v", bs)
	}
}

func TestSuppressDropsPending(t *testing.T) {
	dir := t.TempDir()
	w := start(t, dir, testOpt)
	write(t, filepath.Join(dir, "before-pass.md"))
	time.Sleep(20 * time.Millisecond) // under Delay: pending, not yet due
	w.Hold(func() {})
	if bs := collect(t, w, 300*time.Millisecond); len(bs) != 0 {
		t.Errorf("pending changes survived Suppress: %+v", bs)
	}
}

// A quick pass lists nothing: the changes pending at its start keep
// their batch (a delete made just before one was lost so until the next
// full pass).
func TestSuppressKeepingPending(t *testing.T) {
	dir := t.TempDir()
	w := start(t, dir, testOpt)
	write(t, filepath.Join(dir, "before-quick-pass.md"))
	time.Sleep(20 * time.Millisecond) // under Delay: pending, not yet due
	w.SuppressKeepingPending()
	_ = w.Resume()
	bs := collect(t, w, 300*time.Millisecond)
	if len(bs) != 1 || !slices.Contains(bs[0].Paths, "before-quick-pass.md") {
		t.Errorf("batches after a quick pass = %+v, want the pending change", bs)
	}
}

func TestIgnore(t *testing.T) {
	tests := []struct {
		name  string
		opt   Options
		setup []string // dirs made before New
		write []string
	}{
		{"default", testOpt, []string{".git"}, []string{".hidden.md", "a.md.partial", "b.tmp", ".git/HEAD", "x.md.1f2e3d.partial"}},
		{"custom", Options{Delay: testOpt.Delay, MaxWait: testOpt.MaxWait, Ignore: func(rel string) bool {
			return strings.HasSuffix(rel, ".lock")
		}}, nil, []string{"db.lock"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, d := range tt.setup {
				if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			w := start(t, dir, tt.opt)
			for _, f := range tt.write {
				write(t, filepath.Join(dir, f))
			}
			if bs := collect(t, w, 300*time.Millisecond); len(bs) != 0 {
				t.Errorf("ignored writes gave batches %+v", bs)
			}
		})
	}
}

func TestMaxPaths(t *testing.T) {
	dir := t.TempDir()
	opt := testOpt
	opt.MaxPaths = 10
	w := start(t, dir, opt)
	for i := range 50 {
		write(t, filepath.Join(dir, fmt.Sprintf("f%02d.md", i)))
	}
	bs := collect(t, w, 300*time.Millisecond)
	if len(bs) != 1 {
		t.Fatalf("got %d batches, want 1", len(bs))
	}
	if b := bs[0]; len(b.Paths) != 10 || !b.Truncated || b.Count < 50 {
		t.Errorf("batch: %d paths, truncated %v, count %d; want 10, true, >= 50", len(b.Paths), b.Truncated, b.Count)
	}
}

func TestDefaultIgnore(t *testing.T) {
	tests := []struct {
		rel  string
		want bool
	}{
		{".", false},
		{"notes/a.md", false},
		{"notes.tmp.md", false},
		{".git", true},
		{".git/objects/ab", true},
		{"notes/.obsidian/x.json", true},
		{"a.md.partial", true},
		{"dir/a.md.3f2a.partial", true},
		{"dir/a.md.3f2a1b2c.bmpart", true},
		{"x.tmp", true},
	}
	for _, tt := range tests {
		if got := DefaultIgnore(tt.rel); got != tt.want {
			t.Errorf("DefaultIgnore(%q) = %v, want %v", tt.rel, got, tt.want)
		}
	}
}

func TestIsLimit(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("inotify_add_watch: %w", syscall.ENOSPC), true},
		{fmt.Errorf("open: %w", syscall.EMFILE), true},
		{syscall.EACCES, false},
		{errors.New("other"), false},
	}
	for _, tt := range tests {
		if got := isLimit(tt.err); got != tt.want {
			t.Errorf("isLimit(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	if !strings.Contains(ErrWatchLimit.Error(), "fs.inotify.max_user_watches") {
		t.Error("ErrWatchLimit does not say how to raise the limit")
	}
}

func TestNewErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	write(t, file)
	for _, p := range []string{file, filepath.Join(t.TempDir(), "missing")} {
		if w, err := New(p, Options{}, nil); err == nil {
			w.Close()
			t.Errorf("New(%s) succeeded", p)
		}
	}
}

// A watched folder that is removed, or moved away, ends Run with
// ErrRootGone: its watch went with it, so a folder made again in its
// place would be watched by nothing, silently.
func TestRootGone(t *testing.T) {
	for _, tc := range []struct {
		name string
		gone func(root string) error
	}{
		{"removed", os.RemoveAll},
		{"moved away", func(root string) error { return os.Rename(root, root+".old") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "notes")
			if err := os.MkdirAll(filepath.Join(root, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			w, err := New(root, testOpt, nil)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- w.Run(context.Background()) }()
			if err := tc.gone(root); err != nil {
				t.Fatal(err)
			}
			for {
				select {
				case _, ok := <-w.Batches():
					if ok {
						continue
					}
					if err := <-done; !errors.Is(err, ErrRootGone) {
						t.Fatalf("Run = %v, want ErrRootGone", err)
					}
					return
				case <-time.After(5 * time.Second):
					t.Fatal("Run went on after the folder went away")
				}
			}
		})
	}
}
