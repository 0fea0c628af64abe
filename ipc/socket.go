package ipc

import (
	"context"
	"errors"
	"net"
	"time"
)

// dialRetryInterval is the pause between attempts in [DialWait].
const dialRetryInterval = 50 * time.Millisecond

// DialWait dials the daemon's socket like [Dial], retrying for up to wait
// while the answer is [ErrNoDaemon] (the daemon may be starting). Other
// errors, and ctx's end, stop it at once. A wait of zero tries once.
func DialWait(ctx context.Context, path string, wait time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(wait)
	for {
		c, err := Dial(ctx, path)
		if err == nil || !errors.Is(err, ErrNoDaemon) || time.Now().Add(dialRetryInterval).After(deadline) {
			return c, err
		}
		t := time.NewTimer(dialRetryInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}
