package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/basicmachines-co/bm-agent/server/events"
)

// A replica leaves a load balancer's pool in three steps when Serve's
// context ends (SIGTERM):
//
//  1. drain: /readyz answers 503 at once and answers stop keeping their
//     connections alive, while every request is still served, for
//     Config.DrainDelay, long enough for the load balancer's health check
//     to take the replica out;
//  2. the listeners close and the event streams end with an SSE
//     `event: reconnect` (events.WriteReconnect), which the agents follow
//     by reconnecting at once (to another replica, through the load
//     balancer);
//  3. in-flight requests finish within Config.ShutdownTimeout.

// errShuttingDown is the cause of an event stream's context when Serve
// ended it.
var errShuttingDown = errors.New("server shutting down")

// drain is step 1: it marks the server draining (/readyz answers 503) and
// turns keep-alives off on servers (idle connections close now, the
// others after their answer), then, unless a listener failed (failed:
// nothing to drain), waits DrainDelay.
func (s *Server) drain(servers []*http.Server, failed bool) {
	s.draining.Store(true)
	for _, srv := range servers {
		srv.SetKeepAlivesEnabled(false)
	}
	d := s.cfg.DrainDelay
	if d <= 0 || failed {
		return
	}
	s.log.Info("bm-server draining: /readyz answers 503 until the listeners close", "for", d.String())
	after := time.After
	if s.drainAfter != nil {
		after = s.drainAfter
	}
	<-after(d)
}

// serveStream serves the event stream r with next until the client leaves
// or Serve shuts down (closing); then, if next had begun the stream, it
// tells the client to reconnect.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, next http.Handler) {
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	go func() {
		select {
		case <-s.closing:
			cancel(errShuttingDown)
		case <-ctx.Done():
		}
	}()
	next.ServeHTTP(w, r.WithContext(ctx))
	if !errors.Is(context.Cause(ctx), errShuttingDown) || r.Context().Err() != nil {
		return // the client left, or the stream ended for another reason
	}
	if !strings.HasPrefix(w.Header().Get("Content-Type"), "text/event-stream") {
		return // not a stream: an error answer
	}
	if err := events.WriteReconnect(w, events.DefaultReconnectRetry); err != nil {
		s.log.DebugContext(r.Context(), "event stream: reconnect not sent", "err", err)
	}
}
