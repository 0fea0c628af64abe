package ipc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"time"
)

// Backend is what the daemon exposes to its clients. Every method gets the
// request's context, which ends when the client goes away or the server
// shuts down; it bounds the wait, not the work (a pass in progress should
// not be cancelled because a client stopped waiting for it).
//
// Errors may wrap [ErrLoginRequired], [ErrPaused], [ErrBusy] or
// [ErrNotImplemented]; clients then get the same sentinel back. Error
// messages reach the client verbatim: never put a secret in one.
type Backend interface {
	Status(ctx context.Context) Status
	// Sync runs (req.Wait) or queues (!req.Wait) a pass. With Wait it
	// returns when the pass is over; a pass that ran and failed should be
	// reported in PassSummary.Error with a nil error. Without Wait it must
	// return promptly, once the pass is queued.
	Sync(ctx context.Context, req SyncRequest) (PassSummary, error)
	// Login starts a login and returns the URL the user must open.
	Login(ctx context.Context) (LoginStart, error)
	Logout(ctx context.Context) error
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
}

// StatusWatcher may be implemented by a [Backend] to serve GET /v0/watch.
type StatusWatcher interface {
	// WatchStatus returns a channel that first receives the current status,
	// then the status after every change, and is closed when ctx ends. The
	// backend must never block on the channel: if the reader is slow it
	// should drop it (close the channel) rather than wait.
	WatchStatus(ctx context.Context) <-chan Status
}

// maxRequestBody bounds request bodies; they are all tiny.
const maxRequestBody = 64 << 10

// shutdownTimeout bounds the graceful shutdown in [Server.Serve].
const shutdownTimeout = 5 * time.Second

// Server serves a [Backend] over HTTP on the daemon's socket.
type Server struct {
	b      Backend
	log    *slog.Logger
	routes map[string]route
}

type route struct {
	method string
	h      func(w http.ResponseWriter, r *http.Request) error
}

// NewServer returns a server for b. A nil logger discards logs.
func NewServer(b Backend, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{b: b, log: logger}
	s.routes = map[string]route{
		PathStatus:  {http.MethodGet, s.handleStatus},
		PathSync:    {http.MethodPost, s.handleSync},
		PathLogin:   {http.MethodPost, s.handleLogin},
		PathLogout:  {http.MethodPost, s.action(b.Logout)},
		PathPause:   {http.MethodPost, s.action(b.Pause)},
		PathResume:  {http.MethodPost, s.action(b.Resume)},
		PathVersion: {http.MethodGet, s.handleVersion},
		PathWatch:   {http.MethodGet, s.handleWatch},
	}
	return s
}

// Serve answers requests on ln until ctx ends, then shuts down gracefully
// (in-flight requests see their context cancelled) and returns nil. It
// returns an error only if ln fails. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("ipc serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.log.Warn("ipc shutdown not graceful", "err", err)
		srv.Close()
	}
	<-errc
	return nil
}

// ServeHTTP routes a request, refusing any that comes from a web page.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Origin") != "" || r.Header.Get("Referer") != "" {
		s.log.Warn("ipc: refused browser request", "path", r.URL.Path)
		writeError(w, http.StatusForbidden, "", "requests from web pages are not allowed")
		return
	}
	rt, ok := s.routes[r.URL.Path]
	if !ok {
		writeError(w, http.StatusNotFound, "", "no such endpoint: "+r.URL.Path)
		return
	}
	if r.Method != rt.method {
		w.Header().Set("Allow", rt.method)
		writeError(w, http.StatusMethodNotAllowed, "", "use "+rt.method+" for "+r.URL.Path)
		return
	}
	if err := rt.h(w, r); err != nil {
		code, status := codeOf(err)
		if status >= 500 {
			s.log.Warn("ipc request failed", "path", r.URL.Path, "err", err)
		} else {
			s.log.Debug("ipc request refused", "path", r.URL.Path, "err", err)
		}
		writeError(w, status, code, err.Error())
	}
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, s.b.Status(r.Context()))
	return nil
}

func (s *Server) handleSync(w http.ResponseWriter, r *http.Request) error {
	var req SyncRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody))
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "", "sync: bad request body: "+err.Error())
		return nil
	}
	sum, err := s.b.Sync(r.Context(), req)
	if err != nil {
		return err
	}
	if !req.Wait {
		writeJSON(w, http.StatusAccepted, sum)
		return nil
	}
	writeJSON(w, http.StatusOK, sum)
	return nil
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) error {
	ls, err := s.b.Login(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ls)
	return nil
}

// action adapts a Backend method with no result; the answer is the status
// after the action.
func (s *Server) action(f func(context.Context) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := f(r.Context()); err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, s.b.Status(r.Context()))
		return nil
	}
}

func (s *Server) handleVersion(w http.ResponseWriter, r *http.Request) error {
	v := s.b.Status(r.Context()).Version
	if v == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			v = bi.Main.Version
		}
	}
	writeJSON(w, http.StatusOK, VersionInfo{
		Version:   v,
		GoVersion: runtime.Version(),
		OS:        runtime.GOOS,
		Arch:      runtime.GOARCH,
	})
	return nil
}

// handleWatch streams the status as one JSON object per line, the first a
// full snapshot, until the client or the server goes away.
func (s *Server) handleWatch(w http.ResponseWriter, r *http.Request) error {
	sw, ok := s.b.(StatusWatcher)
	if !ok {
		return fmt.Errorf("watch: %w", ErrNotImplemented)
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ch := sw.WatchStatus(ctx)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	for {
		select {
		case <-ctx.Done():
			return nil
		case st, ok := <-ch:
			if !ok {
				return nil
			}
			if err := enc.Encode(st); err != nil {
				return nil // client gone; the status line is already sent
			}
			if err := rc.Flush(); err != nil {
				return nil
			}
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, ErrorBody{Error: msg, Code: code})
}
