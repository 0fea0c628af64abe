package atomicfile

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestWrites(t *testing.T) {
	tests := []struct {
		name     string
		existing string // the target's content before, "" for none
		write    func(dir, path string) (bool, error)
		want     string // the target's content after
		wantDone bool   // what Create reports (true for the others)
	}{
		{"WriteFile new", "", func(_, p string) (bool, error) { return true, WriteFile(p, []byte("new"), 0o600) }, "new", true},
		{"WriteFile replaces", "old, longer", func(_, p string) (bool, error) { return true, WriteFile(p, []byte("new"), 0o600) }, "new", true},
		{"WriteFileVia replaces", "old", func(d, p string) (bool, error) { return true, WriteFileVia(d, p, []byte("new"), 0o600) }, "new", true},
		{"Create new", "", func(_, p string) (bool, error) { return Create(p, []byte("new"), 0o600) }, "new", true},
		{"Create keeps", "old", func(_, p string) (bool, error) { return Create(p, []byte("new"), 0o600) }, "old", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, tmpDir := t.TempDir(), t.TempDir()
			p := filepath.Join(dir, "state.json")
			if tt.existing != "" {
				if err := os.WriteFile(p, []byte(tt.existing), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			done, err := tt.write(tmpDir, p)
			if err != nil || done != tt.wantDone {
				t.Fatalf("write = %v, %v; want %v, nil", done, err, tt.wantDone)
			}
			if got, err := os.ReadFile(p); err != nil || string(got) != tt.want {
				t.Fatalf("read back %q, %v; want %q", got, err, tt.want)
			}
			if st, err := os.Stat(p); err != nil {
				t.Fatal(err)
			} else if done && runtime.GOOS != "windows" && st.Mode().Perm() != 0o600 {
				t.Errorf("mode %v, want 0600", st.Mode().Perm())
			}
			for _, d := range []string{dir, tmpDir} {
				entries, _ := os.ReadDir(d)
				want := 0
				if d == dir {
					want = 1
				}
				if len(entries) != want {
					t.Errorf("%s holds %d entries, want %d: a temporary file is left", d, len(entries), want)
				}
			}
		})
	}
}

func TestMissingDir(t *testing.T) {
	p := filepath.Join(t.TempDir(), "no", "such", "f")
	if err := WriteFile(p, []byte("x"), 0o600); err == nil {
		t.Error("WriteFile into a missing dir succeeded")
	}
	if _, err := Create(p, []byte("x"), 0o600); err == nil {
		t.Error("Create in a missing dir succeeded")
	}
}

// TestPending: a prepared file is nowhere until its commit, which puts
// all of it in place; an abort leaves nothing behind.
func TestPending(t *testing.T) {
	dir := t.TempDir()
	tmpDir := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmpDir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "meta.json")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Prepare(tmpDir, path, []byte("new"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Fatalf("before the commit the file holds %q, want the old one", b)
	}
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	p.SyncDir()
	p.Abort() // after the commit: a no-op
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Fatalf("after the commit the file holds %q", b)
	}
	q, err := Prepare(tmpDir, path, []byte("dropped"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	q.Abort()
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Fatalf("after an abort the file holds %q", b)
	}
	if left, _ := os.ReadDir(tmpDir); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
