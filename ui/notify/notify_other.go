//go:build !linux && !darwin && !windows

package notify

import "log/slog"

// NewDesktopSender returns the desktop's notification sender: none here
// yet (an error wrapping ErrNotSupported). Linux has one (notify_linux.go),
// and so do macOS and Windows (notify_macwin.go).
func NewDesktopSender(*slog.Logger) (Sender, error) {
	return nil, ErrNotSupported
}
