package syncer

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"sort"
	"time"
)

// Conflict is a conflict file found in a notes folder: a version of a
// note kept because it changed on two sides.
type Conflict struct {
	Path     string    `json:"path"`     // the conflict file, slash-separated, relative to the folder
	Original string    `json:"original"` // the note it is a version of
	Device   string    `json:"device"`   // whose version it is: a device name, or "cloud" for the bucket's
	Time     time.Time `json:"time"`     // when the conflict was found (local time, second precision)
	Size     int64     `json:"size"`     // the conflict file's size (ListConflicts; 0 when not known)
}

// conflictPattern matches name.conflict-<YYYYMMDD-HHMMSS>-<device>[-n][.ext]
// (devices are sanitized: no dots).
var conflictPattern = regexp.MustCompile(`^(.*)\.conflict-(\d{8}-\d{6})-([A-Za-z0-9_-]+)((?:\.[^.]*)?)$`)

// parseConflictName splits a conflict file's name; ok is false for a
// file that is not one.
func parseConflictName(rel string) (c Conflict, ok bool) {
	dir, file := "", rel
	if i := lastSlash(rel); i >= 0 {
		dir, file = rel[:i+1], rel[i+1:]
	}
	m := conflictPattern.FindStringSubmatch(file)
	if m == nil || m[1] == "" {
		return Conflict{}, false
	}
	t, err := time.ParseInLocation(conflictTimeFormat, m[2], time.Local)
	if err != nil {
		return Conflict{}, false
	}
	return Conflict{Path: rel, Original: dir + m[1] + m[4], Device: m[3], Time: t}, true
}

func lastSlash(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '/' {
			return i
		}
	}
	return -1
}

// ListConflicts finds the conflict files under root, with their sizes, oldest first (then
// by path).
func ListConflicts(root string) ([]Conflict, error) {
	var out []Conflict
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		if c, ok := parseConflictName(filepath.ToSlash(rel)); ok {
			if info, err := d.Info(); err == nil {
				c.Size = info.Size()
			}
			out = append(out, c)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("syncer: list conflicts: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].Path < out[j].Path
	})
	return out, nil
}
