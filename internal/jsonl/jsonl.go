// Package jsonl keeps records in JSON-lines files that a crash cannot
// corrupt: appends never glue a record to a line a crash tore, reads skip
// torn or malformed lines, and rewrites replace the file atomically.
package jsonl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/basicmachines-co/bm-agent/internal/atomicfile"
)

// Append adds v as one line at the end of the file at path (created 0600
// if missing), after a newline if a crash left the last line torn. With
// sync it waits for the line to reach the disk.
func Append(path string, v any, sync bool) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("jsonl append %s: %w", path, err)
	}
	torn, err := endsTorn(path)
	if err != nil {
		return fmt.Errorf("jsonl append %s: %w", path, err)
	}
	if torn {
		b = append([]byte{'\n'}, b...)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("jsonl append: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("jsonl append %s: %w", path, err)
	}
	return nil
}

// Read returns the records of the file at path, oldest first, skipping
// blank lines, lines that are not a T and records valid rejects (nil
// accepts all). A missing file has no records.
func Read[T any](path string, valid func(T) bool) ([]T, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("jsonl read: %w", err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var v T
		if json.Unmarshal(line, &v) != nil || (valid != nil && !valid(v)) {
			continue // a torn write from a crash
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("jsonl read %s: %w", path, err)
	}
	return out, nil
}

// Write replaces the file at path with records, one a line, atomically.
func Write[T any](path string, records []T) error {
	var buf bytes.Buffer
	for _, r := range records {
		b, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("jsonl write %s: %w", path, err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	if err := atomicfile.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("jsonl write: %w", err)
	}
	return nil
}

// endsTorn reports whether the file is non-empty and lacks a final newline.
func endsTorn(path string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return false, err
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, st.Size()-1); err != nil {
		return false, err
	}
	return last[0] != '\n', nil
}
