package versions

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newLocal(t *testing.T) (*Local, string) {
	t.Helper()
	root := t.TempDir()
	s, err := OpenLocal(filepath.Join(root, "versions"), "laptop", nil)
	if err != nil {
		t.Fatal(err)
	}
	notes := filepath.Join(root, "notes")
	if err := os.Mkdir(notes, 0o755); err != nil {
		t.Fatal(err)
	}
	return s, notes
}

func write(t *testing.T, p, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func content(t *testing.T, s *Local, id string) string {
	t.Helper()
	r, _, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// replace stands in for the pass: the note gets new content through a
// temp file renamed over it, as rclone writes.
func replace(t *testing.T, p, body string) {
	t.Helper()
	write(t, p+".partial", body)
	if err := os.Rename(p+".partial", p); err != nil {
		t.Fatal(err)
	}
}

func TestCaptureKeepsTheReplacedVersion(t *testing.T) {
	s, notes := newLocal(t)
	note := filepath.Join(notes, "a.md")
	write(t, note, "first")
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(note, old, old); err != nil {
		t.Fatal(err)
	}
	c, err := s.Begin(note, "a.md", ReasonOverwritten)
	if err != nil {
		t.Fatal(err)
	}
	if c.Size != 5 || !c.ModTime.Equal(old) {
		t.Errorf("capture size %d mtime %v, want 5 and %v", c.Size, c.ModTime, old)
	}
	replace(t, note, "second")
	v, err := c.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if v.Path != "a.md" || v.Side != SideLocal || v.Reason != ReasonOverwritten || v.Size != 5 || v.Device != "laptop" || !strings.HasPrefix(v.ID, "l") {
		t.Errorf("version = %+v", v)
	}
	if got := content(t, s, v.ID); got != "first" {
		t.Errorf("kept %q, want the replaced version", got)
	}
	if b, _ := os.ReadFile(note); string(b) != "second" {
		t.Errorf("note holds %q", b)
	}
	vs, err := s.List("a.md")
	if err != nil || len(vs) != 1 || vs[0].ID != v.ID {
		t.Fatalf("List = %v, %v", vs, err)
	}
	if vs, _ := s.List("b.md"); len(vs) != 0 {
		t.Errorf("List(b.md) = %v", vs)
	}
}

// A capture whose note was not replaced after all (the pass failed) must
// not share the note's inode: editing the note would change the kept
// version.
func TestCommitOfUnreplacedCaptureIsACopy(t *testing.T) {
	s, notes := newLocal(t)
	note := filepath.Join(notes, "a.md")
	write(t, note, "kept")
	c, err := s.Begin(note, "a.md", ReasonOverwritten)
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Commit()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(note, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("edited in place")
	f.Close()
	if got := content(t, s, v.ID); got != "kept" {
		t.Errorf("kept version became %q after an in-place edit of the note", got)
	}
}

func TestSameContentIsStoredOnce(t *testing.T) {
	s, notes := newLocal(t)
	for _, name := range []string{"a.md", "b.md", "a.md"} {
		p := filepath.Join(notes, name)
		write(t, p, "same words")
		if _, err := s.KeepFile(p, name, ReasonDeleted); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.All()
	if err != nil || len(all) != 3 {
		t.Fatalf("All = %d versions, %v", len(all), err)
	}
	blobs := 0
	filepath.WalkDir(filepath.Join(s.Dir(), blobsDir), func(_ string, d fs.DirEntry, _ error) error {
		if d != nil && !d.IsDir() {
			blobs++
		}
		return nil
	})
	if blobs != 1 {
		t.Errorf("%d blobs for one content", blobs)
	}
}

// A kill between capture and commit: the next open commits the capture.
func TestInterruptedCaptureIsKeptOnOpen(t *testing.T) {
	s, notes := newLocal(t)
	note := filepath.Join(notes, "deep", "n.md")
	write(t, note, "only copy")
	if _, err := s.Begin(note, "deep/n.md", ReasonDeleted); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(note); err != nil { // the pass deleted it; then the kill
		t.Fatal(err)
	}
	s2, err := OpenLocal(s.Dir(), "laptop", nil)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := s2.List("deep/n.md")
	if err != nil || len(vs) != 1 || vs[0].Reason != ReasonDeleted {
		t.Fatalf("after reopen: %v, %v", vs, err)
	}
	if got := content(t, s2, vs[0].ID); got != "only copy" {
		t.Errorf("recovered %q", got)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.Dir(), tmpDir)); len(entries) != 0 {
		t.Errorf("tmp still holds %d entries", len(entries))
	}
}

func TestCopyToNeverOverwrites(t *testing.T) {
	s, notes := newLocal(t)
	note := filepath.Join(notes, "a.md")
	write(t, note, "mine")
	c, err := s.Begin(note, "a.md", ReasonConflict)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Abort()
	dst := filepath.Join(notes, "a.conflict.md")
	if err := c.CopyTo(dst); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "mine" {
		t.Errorf("conflict copy holds %q", b)
	}
	if err := c.CopyTo(dst); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second CopyTo = %v, want ErrExist", err)
	}
}

func TestPruneByAgeAndSize(t *testing.T) {
	s, notes := newLocal(t)
	now := time.Now()
	keep := func(name, body string, age time.Duration) Version {
		t.Helper()
		s.now = func() time.Time { return now.Add(-age) }
		p := filepath.Join(notes, name)
		write(t, p, body)
		v, err := s.KeepFile(p, name, ReasonOverwritten)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	keep("old.md", strings.Repeat("o", 100), 40*24*time.Hour)
	keep("a.md", strings.Repeat("a", 100), 3*time.Hour)
	b := keep("b.md", strings.Repeat("b", 100), 2*time.Hour)
	c := keep("c.md", strings.Repeat("c", 100), time.Hour)
	s.now = func() time.Time { return now }

	res, err := s.Prune(30*24*time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Removed != 1 || res.Kept != 3 || res.KeptBytes != 300 {
		t.Errorf("prune by age = %+v", res)
	}
	res, err = s.Prune(30*24*time.Hour, 250)
	if err != nil {
		t.Fatal(err)
	}
	if res.Removed != 1 || res.Kept != 2 || res.KeptBytes != 200 {
		t.Errorf("prune by size = %+v", res)
	}
	all, _ := s.All()
	if len(all) != 2 || all[0].ID != c.ID || all[1].ID != b.ID {
		t.Errorf("left %v, want c and b (newest first)", all)
	}
	if got := content(t, s, b.ID); got != strings.Repeat("b", 100) {
		t.Errorf("b reads %q", got)
	}
	if _, _, err := s.Open("lffffffff"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open(unknown) = %v", err)
	}
}

func TestTakeRestoreAndRecover(t *testing.T) {
	s, notes := newLocal(t)
	note := filepath.Join(notes, "a.md")
	write(t, note, "mine")
	c, err := s.Take(note, "a.md", ReasonOverwritten)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(note); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Take left the note in place: %v", err)
	}
	if c.Size != 4 {
		t.Errorf("taken size %d", c.Size)
	}
	write(t, note, "someone else's")
	if err := c.Restore(note); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Restore over another file = %v, want ErrExist", err)
	}
	v, err := c.Commit()
	if err != nil || content(t, s, v.ID) != "mine" {
		t.Fatalf("commit after a refused restore: %v", err)
	}

	// a kill after Take, before anything took the note's place: it goes back
	other := filepath.Join(notes, "b.md")
	write(t, other, "b's only copy")
	if _, err := s.Take(other, "b.md", ReasonOverwritten); err != nil {
		t.Fatal(err)
	}
	// and one whose replacement landed: a version
	third := filepath.Join(notes, "c.md")
	write(t, third, "c before")
	if _, err := s.Take(third, "c.md", ReasonOverwritten); err != nil {
		t.Fatal(err)
	}
	write(t, third, "c after")
	s2, err := OpenLocal(s.Dir(), "laptop", nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(other); err != nil || string(b) != "b's only copy" {
		t.Errorf("b.md after the restart: %q, %v; want it put back", b, err)
	}
	if vs, _ := s2.List("b.md"); len(vs) != 0 {
		t.Errorf("b.md put back and kept as a version too: %v", vs)
	}
	vs, _ := s2.List("c.md")
	if len(vs) != 1 || content(t, s2, vs[0].ID) != "c before" {
		t.Errorf("c.md versions after the restart: %v", vs)
	}
}
