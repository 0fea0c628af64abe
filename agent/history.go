package agent

import (
	"fmt"
	"sync"

	"github.com/basicmachines-co/bm-agent/internal/jsonl"
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
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lines < 0 {
		all, err := h.readAll()
		if err != nil {
			return fmt.Errorf("history append: %w", err)
		}
		h.lines = len(all)
	}
	if err := jsonl.Append(h.path, p, false); err != nil {
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

// compact rewrites the file with its last Cap entries (atomically).
func (h *History) compact() error {
	all, err := h.readAll()
	if err != nil {
		return err
	}
	if len(all) > h.cap {
		all = all[len(all)-h.cap:]
	}
	if err := jsonl.Write(h.path, all); err != nil {
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
	return jsonl.Read[ipc.PassSummary](h.path, nil)
}
