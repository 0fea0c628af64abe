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
	"strconv"
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
	// Login starts a login (a browser login, or a device login with
	// opts.Device) and returns the URL the user must open.
	Login(ctx context.Context, opts LoginOptions) (LoginStart, error)
	Logout(ctx context.Context) error
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
}

// EventWatcher may be implemented by a [Backend] to serve GET /v0/watch.
type EventWatcher interface {
	// WatchEvents returns a channel that first receives a snapshot (Kind
	// EventSnapshot with the full status), then every event, and is closed
	// when ctx ends or when the reader is too slow: the backend must never
	// block on the channel ([Hub] does this).
	WatchEvents(ctx context.Context) <-chan Event
}

// LogSource may be implemented by a [Backend] to serve GET /v0/logs.
type LogSource interface {
	// Logs calls fn with the last req.Lines records (oldest first), then,
	// with req.Follow, with every new record until ctx ends (nil) or fn
	// fails (fn's error).
	Logs(ctx context.Context, req LogsRequest, fn func(LogLine) error) error
}

// Configurer may be implemented by a [Backend] to serve GET and POST
// /v0/config.
type Configurer interface {
	ConfigGet(ctx context.Context) (map[string]any, error)
	// ConfigSet validates (errors wrap [ErrInvalid]), persists and applies
	// what it can; the answer holds the settings after the change and
	// [ConfigRestartRequired] when the change needs a restart.
	ConfigSet(ctx context.Context, key, value string) (map[string]any, error)
}

// Mounter may be implemented by a [Backend] to serve the mount routes.
type Mounter interface {
	Mount(ctx context.Context, req MountRequest) (MountStatus, error)
	Unmount(ctx context.Context) (MountStatus, error)
	MountStatus(ctx context.Context) MountStatus
}

// Doctor may be implemented by a [Backend] to serve GET /v0/doctor.
type Doctor interface {
	Doctor(ctx context.Context) DoctorReport
}

// HistoryReader may be implemented by a [Backend] to serve GET /v0/history.
type HistoryReader interface {
	// History returns up to limit passes, newest first.
	History(ctx context.Context, limit int) (History, error)
}

// ConflictLister may be implemented by a [Backend] to serve GET
// /v0/conflicts.
type ConflictLister interface {
	Conflicts(ctx context.Context) (Conflicts, error)
}

// Versioner may be implemented by a [Backend] to serve the version routes.
// Errors wrap [ErrNotFound] (no such version), [ErrInvalid] (a bad path)
// or [ErrLoginRequired] when they apply.
type Versioner interface {
	Versions(ctx context.Context, req VersionsRequest) (Versions, error)
	Restore(ctx context.Context, req RestoreRequest) (RestoreResult, error)
}

// TimedPauser may be implemented by a [Backend] to serve POST /v0/pause
// with a duration; without it such a request is refused.
type TimedPauser interface {
	// PauseFor pauses syncing for d, then resumes by itself.
	PauseFor(ctx context.Context, d time.Duration) error
}

// maxHistoryLimit bounds ?limit= of GET /v0/history.
const maxHistoryLimit = 10000

// maxRequestBody bounds request bodies; they are all tiny.
const maxRequestBody = 64 << 10

// shutdownTimeout bounds the graceful shutdown in [Server.Serve].
const shutdownTimeout = 5 * time.Second

// Server serves a [Backend] over HTTP on the daemon's socket.
type Server struct {
	b      Backend
	log    *slog.Logger
	routes map[string]route
	post   map[string]route // second method of a route (POST next to GET)
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
		PathStatus:    {http.MethodGet, s.handleStatus},
		PathSync:      {http.MethodPost, s.handleSync},
		PathLogin:     {http.MethodPost, s.handleLogin},
		PathLogout:    {http.MethodPost, s.action(b.Logout)},
		PathPause:     {http.MethodPost, s.handlePause},
		PathResume:    {http.MethodPost, s.action(b.Resume)},
		PathVersion:   {http.MethodGet, s.handleVersion},
		PathWatch:     {http.MethodGet, s.handleWatch},
		PathHistory:   {http.MethodGet, s.handleHistory},
		PathConflicts: {http.MethodGet, s.handleConflicts},
		PathLogs:      {http.MethodGet, s.handleLogs},
		PathConfig:    {http.MethodGet, s.handleConfigGet},
		PathMount:     {http.MethodGet, s.handleMountStatus},
		PathUnmount:   {http.MethodPost, s.handleUnmount},
		PathDoctor:    {http.MethodGet, s.handleDoctor},
		PathVersions:  {http.MethodGet, s.handleVersions},
		PathRestore:   {http.MethodPost, s.handleRestore},
		PathResolve:   {http.MethodPost, s.handleResolve},
	}
	// Routes that answer more than one method.
	s.post = map[string]route{
		PathConfig: {http.MethodPost, s.handleConfigSet},
		PathMount:  {http.MethodPost, s.handleMount},
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
	if p, ok := s.post[r.URL.Path]; ok && r.Method == p.method {
		rt = p
	}
	if r.Method != rt.method {
		allow := rt.method
		if p, ok := s.post[r.URL.Path]; ok {
			allow += ", " + p.method
		}
		w.Header().Set("Allow", allow)
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

func (s *Server) handlePause(w http.ResponseWriter, r *http.Request) error {
	var req PauseRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody))
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "", "pause: bad request body: "+err.Error())
		return nil
	}
	switch {
	case req.ForMS < 0:
		writeError(w, http.StatusBadRequest, "", "pause: negative duration")
		return nil
	case req.ForMS > 0:
		tp, ok := s.b.(TimedPauser)
		if !ok {
			return fmt.Errorf("pause for a duration: %w", ErrNotImplemented)
		}
		if err := tp.PauseFor(r.Context(), time.Duration(req.ForMS)*time.Millisecond); err != nil {
			return err
		}
	default:
		if err := s.b.Pause(r.Context()); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, s.b.Status(r.Context()))
	return nil
}

func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request) error {
	hr, ok := s.b.(HistoryReader)
	if !ok {
		return fmt.Errorf("history: %w", ErrNotImplemented)
	}
	limit := DefaultHistoryLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "", "history: limit must be a positive number")
			return nil
		}
		limit = min(n, maxHistoryLimit)
	}
	h, err := hr.History(r.Context(), limit)
	if err != nil {
		return err
	}
	if h.Passes == nil {
		h.Passes = []PassSummary{}
	}
	writeJSON(w, http.StatusOK, h)
	return nil
}

func (s *Server) handleConflicts(w http.ResponseWriter, r *http.Request) error {
	cl, ok := s.b.(ConflictLister)
	if !ok {
		return fmt.Errorf("conflicts: %w", ErrNotImplemented)
	}
	c, err := cl.Conflicts(r.Context())
	if err != nil {
		return err
	}
	if c.Conflicts == nil {
		c.Conflicts = []Conflict{}
	}
	writeJSON(w, http.StatusOK, c)
	return nil
}

func (s *Server) versioner() (Versioner, error) {
	v, ok := s.b.(Versioner)
	if !ok {
		return nil, fmt.Errorf("versions: %w", ErrNotImplemented)
	}
	return v, nil
}

func (s *Server) handleVersions(w http.ResponseWriter, r *http.Request) error {
	v, err := s.versioner()
	if err != nil {
		return err
	}
	q := r.URL.Query()
	req := VersionsRequest{Path: q.Get("path"), Deleted: q.Get("deleted") == "1"}
	if since := q.Get("since"); since != "" {
		if req.Since, err = time.Parse(time.RFC3339Nano, since); err != nil {
			writeError(w, http.StatusBadRequest, "invalid", "versions: since must be an RFC 3339 time")
			return nil
		}
	}
	if !req.Deleted && req.Path == "" {
		writeError(w, http.StatusBadRequest, "invalid", "versions: give a path, or deleted=1")
		return nil
	}
	vs, err := v.Versions(r.Context(), req)
	if err != nil {
		return err
	}
	if vs.Versions == nil {
		vs.Versions = []Version{}
	}
	writeJSON(w, http.StatusOK, vs)
	return nil
}

func (s *Server) handleRestore(w http.ResponseWriter, r *http.Request) error {
	v, err := s.versioner()
	if err != nil {
		return err
	}
	var req RestoreRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "restore: bad request body: "+err.Error())
		return nil
	}
	if req.Deleted == (req.Path != "") {
		writeError(w, http.StatusBadRequest, "invalid", "restore: give a path, or deleted")
		return nil
	}
	res, err := v.Restore(r.Context(), req)
	if err != nil {
		return err
	}
	if res.Restored == nil {
		res.Restored = []Version{}
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) error {
	var opts LoginOptions
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody))
	if err := dec.Decode(&opts); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "", "login: bad request body: "+err.Error())
		return nil
	}
	ls, err := s.b.Login(r.Context(), opts)
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

// handleWatch streams events as one JSON object per line, the first a full
// snapshot, until the client or the server goes away, or the backend drops
// a reader that fell behind.
func (s *Server) handleWatch(w http.ResponseWriter, r *http.Request) error {
	ew, ok := s.b.(EventWatcher)
	if !ok {
		return fmt.Errorf("watch: %w", ErrNotImplemented)
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ch := ew.WatchEvents(ctx)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-ch:
			if !ok {
				return nil
			}
			// A reader that stops reading blocks this write; bound it so the
			// handler (and the subscription) goes away.
			_ = rc.SetWriteDeadline(time.Now().Add(watchWriteTimeout))
			if err := enc.Encode(ev); err != nil {
				return nil // client gone; the status line is already sent
			}
			if err := rc.Flush(); err != nil {
				return nil
			}
		}
	}
}

// watchWriteTimeout bounds one write of a stream to a client that stopped
// reading.
const watchWriteTimeout = 10 * time.Second

// handleLogs streams log records as JSON lines.
func (s *Server) handleLogs(w http.ResponseWriter, r *http.Request) error {
	ls, ok := s.b.(LogSource)
	if !ok {
		return fmt.Errorf("logs: %w", ErrNotImplemented)
	}
	req := LogsRequest{Lines: DefaultLogLines}
	q := r.URL.Query()
	if v := q.Get("lines"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "", "logs: lines must be a number >= 0")
			return nil
		}
		req.Lines = n
	}
	switch q.Get("follow") {
	case "", "0", "false":
	case "1", "true":
		req.Follow = true
	default:
		writeError(w, http.StatusBadRequest, "", "logs: follow must be 0 or 1")
		return nil
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	_ = rc.Flush()
	err := ls.Logs(r.Context(), req, func(l LogLine) error {
		_ = rc.SetWriteDeadline(time.Now().Add(watchWriteTimeout))
		if err := enc.Encode(l); err != nil {
			return err
		}
		return rc.Flush()
	})
	if err != nil && r.Context().Err() == nil {
		s.log.Debug("ipc logs stream ended", "err", err)
	}
	return nil // the status line is sent: nothing more to say
}

func (s *Server) handleConfigGet(w http.ResponseWriter, r *http.Request) error {
	c, ok := s.b.(Configurer)
	if !ok {
		return fmt.Errorf("config: %w", ErrNotImplemented)
	}
	m, err := c.ConfigGet(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

func (s *Server) handleConfigSet(w http.ResponseWriter, r *http.Request) error {
	c, ok := s.b.(Configurer)
	if !ok {
		return fmt.Errorf("config: %w", ErrNotImplemented)
	}
	var req ConfigSetRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "config: bad request body: "+err.Error())
		return nil
	}
	if req.Key == "" {
		writeError(w, http.StatusBadRequest, "invalid", "config: a key is required")
		return nil
	}
	m, err := c.ConfigSet(r.Context(), req.Key, req.Value)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

func (s *Server) mounter() (Mounter, error) {
	m, ok := s.b.(Mounter)
	if !ok {
		return nil, fmt.Errorf("mount: %w", ErrNotImplemented)
	}
	return m, nil
}

func (s *Server) handleMountStatus(w http.ResponseWriter, r *http.Request) error {
	m, err := s.mounter()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, m.MountStatus(r.Context()))
	return nil
}

func (s *Server) handleMount(w http.ResponseWriter, r *http.Request) error {
	m, err := s.mounter()
	if err != nil {
		return err
	}
	var req MountRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "invalid", "mount: bad request body: "+err.Error())
		return nil
	}
	ms, err := m.Mount(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ms)
	return nil
}

func (s *Server) handleUnmount(w http.ResponseWriter, r *http.Request) error {
	m, err := s.mounter()
	if err != nil {
		return err
	}
	ms, err := m.Unmount(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ms)
	return nil
}

func (s *Server) handleDoctor(w http.ResponseWriter, r *http.Request) error {
	d, ok := s.b.(Doctor)
	if !ok {
		return fmt.Errorf("doctor: %w", ErrNotImplemented)
	}
	rep := d.Doctor(r.Context())
	if rep.Checks == nil {
		rep.Checks = []DoctorCheck{}
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, ErrorBody{Error: msg, Code: code})
}
