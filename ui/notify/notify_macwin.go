//go:build darwin || windows

package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/gen2brain/beeep"
)

// platformAppName is the app name the notifications carry (beeep.AppName).
const platformAppName = "Basic Memory"

// NewDesktopSender returns a sender to the platform's own notifications,
// through github.com/gen2brain/beeep: on macOS the notification center
// (or AppleScript's display notification, through osascript, when that
// fails), on Windows a toast (a balloon on Windows 7). The app name is
// "Basic Memory" (beeep.AppName; Windows shows it on the toast, macOS
// shows the notifications as Terminal's outside an app bundle).
//
// Clicks are not reported on these platforms: the library cannot tell,
// so [Sender.Clicked] never receives (it is closed by Close) and
// [Options.OnClick] is not called.
//
// This file is compile-checked only here (GOOS=darwin and GOOS=windows
// go vet and go build): CI has no macOS or Windows machine to run it on.
func NewDesktopSender(logger *slog.Logger) (Sender, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	beeep.AppName = platformAppName
	return &beeepSender{
		log:     logger,
		clicked: make(chan uint32),
		busy:    make(chan struct{}, 1),
	}, nil
}

// beeepSender shows notifications through beeep.
type beeepSender struct {
	log     *slog.Logger
	clicked chan uint32   // never receives; closed by Close
	busy    chan struct{} // one notification is being shown
	lastID  atomic.Uint32
	closed  atomic.Bool
	once    sync.Once
}

// Send shows m, as an alert (with the system's sound) when its level
// calls for one, and returns the next of its own IDs. The library takes
// no context: when ctx ends first Send returns ctx's error, and the
// notification still being shown keeps the next Send waiting.
func (s *beeepSender) Send(ctx context.Context, m Message) (uint32, error) {
	if s.closed.Load() {
		return 0, fmt.Errorf("notify %s: %w", m.Kind, errSenderClosed)
	}
	select {
	case s.busy <- struct{}{}:
	case <-ctx.Done():
		return 0, fmt.Errorf("notify %s: %w", m.Kind, ctx.Err())
	}
	show := beeep.Notify // the icon: a path, PNG bytes or a stock name; "" for none
	if isAlert(m.Level) {
		show = beeep.Alert
	}
	done := make(chan error, 1)
	go func() {
		defer func() { <-s.busy }()
		done <- show(m.Title, m.Body, "")
	}()
	select {
	case err := <-done:
		if err != nil {
			return 0, fmt.Errorf("notify %s: %w", m.Kind, err)
		}
	case <-ctx.Done():
		return 0, fmt.Errorf("notify %s: %w", m.Kind, ctx.Err())
	}
	id := s.lastID.Add(1)
	s.log.Debug("notification shown", "id", id, "kind", m.Kind, "alert", isAlert(m.Level))
	return id, nil
}

// Clicked returns a channel that never receives (clicks are not reported
// here); it is closed by Close.
func (s *beeepSender) Clicked() <-chan uint32 { return s.clicked }

func (s *beeepSender) Close() error {
	s.once.Do(func() {
		s.closed.Store(true)
		close(s.clicked)
	})
	return nil
}

var errSenderClosed = errors.New("sender closed")
