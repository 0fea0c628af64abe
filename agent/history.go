package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// DefaultHistoryCap is how many passes the history file keeps.
const DefaultHistoryCap = 1000

// History is the record of sync passes: an append-only JSON-lines file,
// one ipc.PassSummary a line, trimmed to the last Cap entries. It survives
// restarts; a torn last line (a crash in the middle of an append) is
// skipped when read.
type History struct {
	path string
	cap  int

	mu    sync.Mutex
	lines int // lines in the file, counted on first use; -1 unknown
}

// OpenHistory returns the history kept in path, keeping the last capacity
// entries (0 means DefaultHistoryCap).
func OpenHistory(path string, capacity int) *History {
	if capacity <= 0 {
		capacity = DefaultHistoryCap
	}
	return &History{path: path, cap: capacity, lines: -1}
}

// Append records one pass. The file is compacted to the last Cap entries
// when it has grown to twice that, so appends stay cheap.
func (h *History) Append(p ipc.PassSummary) error {
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("history append: %w", err)
	}
	b = append(b, '\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lines < 0 {
		all, err := h.readAll()
		if err != nil {
			return fmt.Errorf("history append: %w", err)
		}
		h.lines = len(all)
		if torn, err := endsTorn(h.path); err != nil {
			return fmt.Errorf("history append: %w", err)
		} else if torn {
			b = append([]byte{'\n'}, b...) // don't glue the entry to a torn line
		}
	}
	f, err := os.OpenFile(h.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("history append: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("history append: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("history append: %w", err)
	}
	h.lines++
	if h.lines >= 2*h.cap {
		if err := h.compact(); err != nil {
			return fmt.Errorf("history append: %w", err)
		}
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

// compact rewrites the file with its last Cap entries (atomically).
func (h *History) compact() error {
	all, err := h.readAll()
	if err != nil {
		return err
	}
	if len(all) > h.cap {
		all = all[len(all)-h.cap:]
	}
	var buf bytes.Buffer
	for _, p := range all {
		b, err := json.Marshal(p)
		if err != nil {
			return fmt.Errorf("compact: %w", err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	if err := writeFileAtomic(h.path, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	h.lines = len(all)
	return nil
}

// Last returns up to limit passes, newest first (limit <= 0: all kept).
func (h *History) Last(limit int) ([]ipc.PassSummary, error) {
	h.mu.Lock()
	all, err := h.readAll()
	h.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("history read: %w", err)
	}
	if len(all) > h.cap {
		all = all[len(all)-h.cap:]
	}
	if limit <= 0 || limit > len(all) {
		limit = len(all)
	}
	out := make([]ipc.PassSummary, 0, limit)
	for i := len(all) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, all[i])
	}
	return out, nil
}

// readAll reads every well-formed entry, oldest first. h.mu is held.
func (h *History) readAll() ([]ipc.PassSummary, error) {
	f, err := os.Open(h.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []ipc.PassSummary
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var p ipc.PassSummary
		if err := json.Unmarshal(line, &p); err != nil {
			continue // a torn write from a crash: skip it
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return out, err
	}
	return out, nil
}
