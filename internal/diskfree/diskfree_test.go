package diskfree

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAvailable(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "note.md")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		path    string
		wantErr error // nil: some bytes free
	}{
		{"a folder", dir, nil},
		{"a file", file, nil},
		{"missing", filepath.Join(dir, "no", "such"), fs.ErrNotExist},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Available(tt.path)
			if errors.Is(err, errors.ErrUnsupported) {
				t.Skip("no free-space call on this platform")
			}
			if tt.wantErr == nil {
				if err != nil || n == 0 {
					t.Fatalf("Available(%s) = %d, %v; want some bytes", tt.path, n, err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), "free disk of "+tt.path) {
				t.Fatalf("Available(%s) error = %v, want %v naming the path", tt.path, err, tt.wantErr)
			}
		})
	}
}
