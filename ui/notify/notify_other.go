//go:build !linux

package notify

import "log/slog"

// NewDesktopSender returns the desktop's notification sender: none here
// yet (an error wrapping ErrNotSupported).
func NewDesktopSender(*slog.Logger) (Sender, error) {
	return nil, ErrNotSupported
}
