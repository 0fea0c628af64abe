package ipc

import (
	"context"
	"fmt"
	"net"
)

// Listen is not supported on Windows yet (named pipes are planned); it
// returns [ErrNotSupported].
func Listen(path string) (net.Listener, error) {
	return nil, fmt.Errorf("ipc listen %s: %w", path, ErrNotSupported)
}

// Dial is not supported on Windows yet; it returns [ErrNotSupported].
func Dial(ctx context.Context, path string) (net.Conn, error) {
	return nil, fmt.Errorf("ipc dial %s: %w", path, ErrNotSupported)
}
