package events

import (
	"fmt"
	"net/http"
	"time"
)

// KindReconnect is the SSE event name that asks the client to reconnect:
// the server is shutting down (or otherwise ending the stream on purpose),
// and another replica, or this one after its restart, takes the stream
// over. It is no bucket change.
const KindReconnect = "reconnect"

// DefaultReconnectRetry is the reconnection time WriteReconnect tells
// clients: short, since the server asked (clients add their own jitter).
const DefaultReconnectRetry = time.Second

// reconnectWriteTimeout bounds writing the reconnect event: a client that
// cannot take it that fast does not hold the shutdown.
const reconnectWriteTimeout = 5 * time.Second

// WriteReconnect ends an SSE stream on w (one ServeSSE served) by telling
// the client to reconnect after retry (<= 0 means DefaultReconnectRetry):
// an SSE retry field, then `event: reconnect` with data
// {"reason":"shutdown"}. The caller returns from its handler afterwards,
// which closes the stream.
func WriteReconnect(w http.ResponseWriter, retry time.Duration) error {
	if retry <= 0 {
		retry = DefaultReconnectRetry
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(reconnectWriteTimeout)) // not every writer supports it
	if _, err := fmt.Fprintf(w, "retry: %d\nevent: %s\ndata: {\"reason\":\"shutdown\"}\n\n", retry.Milliseconds(), KindReconnect); err != nil {
		return fmt.Errorf("sse reconnect: %w", err)
	}
	if err := rc.Flush(); err != nil {
		return fmt.Errorf("sse reconnect: flush: %w", err)
	}
	return nil
}
