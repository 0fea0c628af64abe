package ops

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// AnonymousAttr marks the request lines of Middleware whose request
// carried no credentials (no Authorization header) or was refused them
// (401): the lines a guessing run multiplies.
const AnonymousAttr = "anonymous"

// SummaryInterval is how often at most a LogLimiter says how many lines
// it left out.
const SummaryInterval = 10 * time.Second

// LogLimiter bounds the log lines that match it (see Handler) to a rate,
// so that a flood of anonymous requests cannot flood the log: 42 MB a
// minute under one guessing run before it. The lines left out are counted
// and said, at most every SummaryInterval, in a "log lines suppressed"
// line. A nil *LogLimiter bounds nothing. It is safe for concurrent use.
type LogLimiter struct {
	lim        *rate.Limiter
	suppressed atomic.Int64

	mu          sync.Mutex
	lastSummary time.Time
}

// NewLogLimiter passes perSecond matching lines a second, with bursts of
// ten times that (at least 10); perSecond < 0 is nil, no bound.
func NewLogLimiter(perSecond float64) *LogLimiter {
	if perSecond < 0 {
		return nil
	}
	return &LogLimiter{lim: rate.NewLimiter(rate.Limit(perSecond), max(int(10*perSecond), 10))}
}

// Suppressed is the number of lines left out so far.
func (l *LogLimiter) Suppressed() int64 {
	if l == nil {
		return 0
	}
	return l.suppressed.Load()
}

// Handler wraps h: records for which match is true pass only within l's
// rate (records of level Warn and above always pass).
func (l *LogLimiter) Handler(h slog.Handler, match func(slog.Record) bool) slog.Handler {
	if l == nil {
		return h
	}
	return &limitedHandler{Handler: h, l: l, match: match}
}

type limitedHandler struct {
	slog.Handler
	l     *LogLimiter
	match func(slog.Record) bool
}

// Handle implements slog.Handler.
func (h *limitedHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn && h.match(r) {
		if !h.l.lim.Allow() {
			h.l.suppressed.Add(1)
			return nil
		}
		if n, ok := h.l.summary(r.Time); ok {
			s := slog.NewRecord(r.Time, slog.LevelInfo, "log lines suppressed", 0)
			s.AddAttrs(slog.Int64("lines", n), slog.String("of", "unauthenticated or refused requests"),
				slog.String("since", SummaryInterval.String()+" or less"))
			_ = h.Handler.Handle(ctx, s)
		}
	}
	return h.Handler.Handle(ctx, r)
}

// summary reports the lines suppressed since the last summary, if it is
// time for one.
func (l *LogLimiter) summary(now time.Time) (int64, bool) {
	if l.suppressed.Load() == 0 {
		return 0, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSummary) < SummaryInterval {
		return 0, false
	}
	l.lastSummary = now
	return l.suppressed.Swap(0), true
}

// WithAttrs implements slog.Handler.
func (h *limitedHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &limitedHandler{Handler: h.Handler.WithAttrs(attrs), l: h.l, match: h.match}
}

// WithGroup implements slog.Handler.
func (h *limitedHandler) WithGroup(name string) slog.Handler {
	return &limitedHandler{Handler: h.Handler.WithGroup(name), l: h.l, match: h.match}
}

// IsAnonymous reports whether r is a request line of an anonymous request
// (see AnonymousAttr).
func IsAnonymous(r slog.Record) bool {
	anon := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == AnonymousAttr {
			anon = a.Value.Kind() == slog.KindBool && a.Value.Bool()
			return false
		}
		return true
	})
	return anon
}
