package agent

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// DefaultLogRing is how many log records the daemon keeps for
// `bm-agent logs`.
const DefaultLogRing = 1000

// LogRing keeps the daemon's recent log records and hands new ones to
// followers. Followers that fall behind miss records rather than slow the
// logger.
type LogRing struct {
	mu        sync.Mutex
	buf       []ipc.LogLine
	next      int
	full      bool
	followers map[chan ipc.LogLine]struct{}
}

// NewLogRing returns a ring of n records (<= 0: DefaultLogRing).
func NewLogRing(n int) *LogRing {
	if n <= 0 {
		n = DefaultLogRing
	}
	return &LogRing{buf: make([]ipc.LogLine, n), followers: map[chan ipc.LogLine]struct{}{}}
}

func (r *LogRing) add(l ipc.LogLine) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = l
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
	for ch := range r.followers {
		select {
		case ch <- l:
		default: // a slow follower misses lines
		}
	}
}

// Last returns up to n records, oldest first.
func (r *LogRing) Last(n int) []ipc.LogLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastLocked(n)
}

func (r *LogRing) lastLocked(n int) []ipc.LogLine {
	var all []ipc.LogLine
	if r.full {
		all = append(all, r.buf[r.next:]...)
	}
	all = append(all, r.buf[:r.next]...)
	if n < len(all) {
		all = all[len(all)-n:]
	}
	return all
}

// Logs implements ipc.LogSource.
func (r *LogRing) Logs(ctx context.Context, req ipc.LogsRequest, fn func(ipc.LogLine) error) error {
	r.mu.Lock()
	backlog := r.lastLocked(req.Lines)
	var ch chan ipc.LogLine
	if req.Follow {
		ch = make(chan ipc.LogLine, 256)
		r.followers[ch] = struct{}{}
		defer func() {
			r.mu.Lock()
			delete(r.followers, ch)
			r.mu.Unlock()
		}()
	}
	r.mu.Unlock()
	for _, l := range backlog {
		if err := fn(l); err != nil {
			return err
		}
	}
	if !req.Follow {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case l := <-ch:
			if err := fn(l); err != nil {
				return err
			}
		}
	}
}

// teeHandler passes records to the next handler and copies them into a
// LogRing (at Info and above, or whatever the next handler enables).
type teeHandler struct {
	next  slog.Handler
	ring  *LogRing
	attrs []slog.Attr
	group string
}

// NewLogTee returns a handler that logs to next and keeps a copy of each
// record in ring.
func NewLogTee(next slog.Handler, ring *LogRing) slog.Handler {
	return &teeHandler{next: next, ring: ring}
}

func (h *teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h *teeHandler) Handle(ctx context.Context, rec slog.Record) error {
	attrs := map[string]any{}
	add := func(a slog.Attr) {
		key := a.Key
		if h.group != "" {
			key = h.group + "." + key
		}
		v := a.Value.Resolve()
		switch v.Kind() {
		case slog.KindString:
			attrs[key] = v.String()
		case slog.KindInt64:
			attrs[key] = v.Int64()
		case slog.KindBool:
			attrs[key] = v.Bool()
		case slog.KindFloat64:
			attrs[key] = v.Float64()
		default:
			attrs[key] = v.String()
		}
	}
	for _, a := range h.attrs {
		add(a)
	}
	rec.Attrs(func(a slog.Attr) bool { add(a); return true })
	l := ipc.LogLine{Time: rec.Time, Level: rec.Level.String(), Msg: rec.Message}
	if l.Time.IsZero() {
		l.Time = time.Now()
	}
	if len(attrs) > 0 {
		l.Attrs = attrs
	}
	h.ring.add(l)
	if h.next.Enabled(ctx, rec.Level) {
		return h.next.Handle(ctx, rec)
	}
	return nil
}

func (h *teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(as)
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

func (h *teeHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	if c.group != "" {
		name = c.group + "." + name
	}
	c.group = name
	return &c
}
