//go:build linux || darwin

package packaging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/basicmachines-co/bm-agent/internal/atomicfile"
)

// writeFile writes b to path (creating the directory) unless the same bytes
// are there already; it reports whether it wrote.
func writeFile(path string, b []byte, mode os.FileMode) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, fmt.Errorf("packaging: %w", err)
	}
	if err := atomicfile.WriteFile(path, b, mode); err != nil {
		return false, fmt.Errorf("packaging: %w", err)
	}
	return true, nil
}

// run runs a service manager command, records it in res and wraps its
// output into the error.
func (i *Installer) run(ctx context.Context, res *Result, name string, args ...string) error {
	res.Commands = append(res.Commands, name+" "+strings.Join(args, " "))
	out, err := i.Run(ctx, name, args...)
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// removeFiles removes what an install wrote, recording what was there;
// a file already gone is fine.
func removeFiles(res *Result, paths ...string) error {
	for _, f := range paths {
		if err := os.Remove(f); err == nil {
			res.Files = append(res.Files, f)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("uninstall: %w", err)
		}
	}
	return nil
}
