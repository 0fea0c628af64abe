// Package agent is the bm-agent daemon core: it owns every piece of
// client-side state (the session with the cloud, the sync pairs, their
// engines, watchers and schedules) and serves it to the CLI and the tray
// through ipc.
//
//	          Daemon (daemon.go): the local API's backend
//	         /        |                      \
//	session.go     status.go                  loop.go, pair.go
//	login, key,    statusStore: the only       pair.Serve: one loop per
//	tenant API     owner of ipc.Status;        notes folder (engine,
//	               Update(func(*Status))       watcher, schedule, holds,
//	               publishes on the bus        history); reports through
//	               (ipc.Hub) with the          the store
//	               transition {from, to,
//	               since, reason}
//	                        |
//	            ipc.Hub -> GET /v0/watch -> tray, `status --watch`
//
// Every state change goes through statusStore.Update, so the one place to
// read to see where a state changes is the callers of setState and
// Update; reads (Status, GET /v0/status) never call the server and
// publish nothing. The states and their reason codes are ipc.State and
// ipc.Code; a refusal of the local API is an ipc sentinel error with a
// code (Daemon.refusal), which the CLI maps to its exit code.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/cloudapi"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// Version is the agent's version, set by the main package.
var Version = "dev"

// Daemon is a running bm-agent.
type Daemon struct {
	cfg   Config
	log   *slog.Logger
	hc    *http.Client
	cloud cloudapi.Config
	creds cloudapi.Store

	// store owns the status (status.go); mu guards the rest.
	store   *statusStore
	mu      sync.Mutex
	login   *loginFlow // the login in progress, if any
	session *session

	loggedIn chan struct{} // signalled when a login completes
	// pauseTimer ends a timed pause (under mu).
	pauseTimer *time.Timer
	// pairHooks and newEngine are what tests change: the hooks of the
	// pairs the daemon makes, and how it builds a pair's engine.
	pairHooks pairHooks
	newEngine func(ctx context.Context, d *Daemon, key *cloudapi.S3Key, tenantID string) (passer, error)

	history *History
	saved   persisted // the state that survives a restart; under mu

	hub  *ipc.Hub // the watch stream's event bus
	logs *LogRing // recent log records for `bm-agent logs`
	// live holds the settings ConfigSet changes while running (under mu);
	// cfgChanged wakes the sync loop to apply them.
	live       liveSettings
	cfgChanged chan struct{}
	cfgMu      sync.Mutex // serializes ConfigSet's read-modify-write of the file
	mounts     mountManager
	// versions are the version stores' settings (under mu);
	// versionsChanged wakes the session's pruner to apply them.
	versions        versionSettings
	versionsChanged chan struct{}
}

// session is what a logged-in daemon holds for as long as the login
// lasts: the tenant API client, the bucket-scoped key and the sync pairs
// (pair.go).
type session struct {
	cancel context.CancelFunc
	client *cloudapi.Client
	key    *cloudapi.S3Key // a key replacement swaps it (under d.mu)
	// pairs are the session's sync pairs (pair.go): one per notes folder,
	// one folder today.
	pairs []*pair
	done  chan struct{} // closed when the session ends
	// pushLive: the tenant's change events flow (followRemote), so the
	// pairs' interval passes are only a safety net (pair.canRest).
	pushLive atomic.Bool
	// pushUp counts the times they came up (see pair.canQuick).
	pushUp atomic.Int64
}

// folderPair is the pair of the configured notes folder, which the local
// API's requests (sync, versions, resolve) are for.
func (s *session) folderPair() *pair { return s.pairs[0] }

// passer runs sync passes: the engine (*syncer.Engine), or a fake in tests.
type passer interface {
	Pass(ctx context.Context, opt syncer.PassOptions) (syncer.Result, error)
}

type syncCall struct {
	req   ipc.SyncRequest
	reply chan syncReply // nil when the caller does not wait
}

type syncReply struct {
	summary ipc.PassSummary
	err     error
}

// New prepares a daemon; Serve runs it.
func New(cfg Config, logger *slog.Logger) (*Daemon, error) {
	if logger == nil {
		logger = slog.Default()
	}
	ring := NewLogRing(0)
	logger = slog.New(NewLogTee(logger.Handler(), ring))
	cfg = cfg.withDefaults()
	if !validProfile(cfg.Profile) {
		return nil, fmt.Errorf("agent: profile %q: want safe, balanced or fast", cfg.Profile)
	}
	if cfg.Home == "" {
		return nil, errors.New("agent: a home dir is required")
	}
	if err := os.MkdirAll(cfg.Home, 0o700); err != nil {
		return nil, fmt.Errorf("agent: home: %w", err)
	}
	if cfg.SocketPath == "" {
		cfg.SocketPath = ipc.DefaultSocketPath()
	}
	abs, err := filepath.Abs(cfg.Folder)
	if err != nil {
		return nil, fmt.Errorf("agent: folder: %w", err)
	}
	cfg.Folder = abs
	d := &Daemon{
		cfg: cfg,
		log: logger,
		hc:  &http.Client{Timeout: 60 * time.Second},
		cloud: cloudapi.LoadConfig(cloudapi.Config{
			Host:     cfg.CloudHost,
			Domain:   cfg.CloudDomain,
			ClientID: cfg.ClientID,
		}),
		loggedIn:   make(chan struct{}, 1),
		hub:        ipc.NewHub(0),
		logs:       ring,
		cfgChanged: make(chan struct{}, 1),

		versions:        versionSettings{days: cfg.versionsDays(), maxBytes: cfg.versionsMaxBytes()},
		versionsChanged: make(chan struct{}, 1),
	}
	d.live = liveSettings{interval: time.Duration(cfg.Interval), debounce: time.Duration(cfg.Debounce), maxWait: time.Duration(cfg.MaxWait), profile: cfg.Profile}
	d.mounts = newMountManager(cfg.Home, logger)
	d.creds = cloudapi.OpenStore(cfg.Home, logger.With("component", "keyring"))
	d.history = OpenHistory(filepath.Join(cfg.Home, "history.jsonl"), 0)
	saved, err := loadState(cfg.Home)
	if err != nil {
		logger.Warn("state file unreadable; starting unpaused", "err", err)
	}
	d.saved = saved
	initial := ipc.Status{
		State:          ipc.StateStarting,
		Since:          time.Now(),
		Folder:         cfg.Folder,
		KeyringBackend: d.creds.Backend(),
		Version:        Version,
		Profile:        cfg.Profile,
	}
	if last, err := d.history.Last(1); err == nil && len(last) > 0 {
		initial.LastSync = &last[0] // "last sync 2h ago", not "never", after a restart
	}
	d.applySaved(&initial, time.Now())
	d.store = newStatusStore(initial, d.hub, logger)
	d.pairHooks, d.newEngine = defaultPairHooks(), newEngine
	return d, nil
}

// Serve runs the daemon until ctx is cancelled: the local API, the session
// with the cloud and the sync loop. Cancellation is not an error.
func (d *Daemon) Serve(ctx context.Context) error {
	unlock, err := lockHome(d.cfg.Home)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer unlock()
	d.mu.Lock()
	d.armPauseTimerLocked()
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		if d.pauseTimer != nil {
			d.pauseTimer.Stop()
		}
		d.mu.Unlock()
	}()
	ln, err := ipc.Listen(d.cfg.SocketPath)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	srv := ipc.NewServer(d, d.log.With("component", "ipc"))
	ipcErr := make(chan error, 1)
	go func() { ipcErr <- srv.Serve(ctx, ln) }()
	if err := d.mounts.CleanupOrphans(ctx); err != nil {
		d.log.Warn("clean up orphaned mounts", "err", err)
	}
	defer func() {
		if err := d.mounts.Close(); err != nil {
			d.log.Warn("unmount at stop", "err", err)
		}
	}()
	d.log.Info("bm-agent running", "folder", d.cfg.Folder, "socket", d.cfg.SocketPath, "keyring", d.creds.Backend(), "host", d.cloud.Host)

	for ctx.Err() == nil {
		sess, err := d.resume(ctx)
		switch {
		case err != nil:
			d.log.Warn("session", "err", err)
			d.sessionFailed(ctx, err)
		case sess != nil:
			d.runSession(ctx, sess)
			continue
		default:
			d.setState(ipc.StateLoggedOut, ipc.CodeNone, "")
		}
		select {
		case <-ctx.Done():
		case <-d.loggedIn:
		case <-time.After(backoffAfter(err)):
		}
	}
	d.log.Info("bm-agent stopping")
	return <-ipcErr
}

func backoffAfter(err error) time.Duration {
	var sub *cloudapi.SubscriptionRequiredError
	switch {
	case err == nil, errors.Is(err, cloudapi.ErrLoginRequired):
		return 24 * time.Hour // only a login wakes us
	case errors.As(err, &sub):
		return 10 * time.Minute // a subscription may start any time
	}
	return 30 * time.Second
}

// errNotConfigured: no server to log in to or to sync with.
var errNotConfigured = errors.New("no server configured: run `bm-agent login --server URL`, or set cloud_host with `bm-agent config set`")

// stateFor is the state (and its code) a session that failed with err is
// in; ok is false for an error none of them explains.
func stateFor(err error) (state ipc.State, code ipc.Code, ok bool) {
	var sub *cloudapi.SubscriptionRequiredError
	switch {
	case errors.Is(err, cloudapi.ErrLoginRequired), errors.Is(err, cloudapi.ErrUnauthorized):
		return ipc.StateLoginRequired, ipc.CodeLoginRequired, true
	case errors.As(err, &sub):
		return ipc.StateSubscriptionRequired, ipc.CodeSubscriptionRequired, true
	case errors.Is(err, cloudapi.ErrTenantSuspended):
		return ipc.StateError, ipc.CodeTenantSuspended, true
	case errors.Is(err, errNotConfigured):
		return ipc.StateError, ipc.CodeNotConfigured, true
	}
	return ipc.StateError, ipc.CodeSyncFailed, false
}

// sessionFailed sets the state after a session could not start: a login
// or a subscription to get, the server (or everything) unreachable, an
// error. With the server unreachable, the stored login still stands: the
// status says who is logged in, and since when the server is gone.
func (d *Daemon) sessionFailed(ctx context.Context, err error) {
	if isOffline(err) {
		u := d.serverUnreachable(ctx, err)
		d.mu.Lock()
		account := d.saved.Account
		d.mu.Unlock()
		d.store.Update(func(st *ipc.Status) {
			setUnreachableOf(st, u)
			st.LoggedIn = true
			if st.Account == "" {
				st.Account = account
			}
		})
		return
	}
	state, code, _ := stateFor(err)
	d.setState(state, code, err.Error())
}

// refusal is the error a request that needs a running session gets while
// none runs, named for why: a login to make, a subscription to get, the
// server unreachable, no server configured, or a session still starting.
func (d *Daemon) refusal(op string) error {
	st := d.store.Get()
	var err error
	switch {
	case st.State == ipc.StateSubscriptionRequired:
		err = ipc.ErrSubscriptionRequired
	case st.State.Unreachable():
		err = fmt.Errorf("%w: %s", ipc.ErrOffline, st.Error)
	case st.Code == ipc.CodeNotConfigured:
		err = ipc.ErrNotConfigured
	case st.State == ipc.StateLoggedOut, st.State == ipc.StateLoginRequired:
		err = ipc.ErrLoginRequired
	case st.State == ipc.StateError && st.Error != "":
		err = fmt.Errorf("%w: %s", ipc.ErrNoSession, st.Error)
	default:
		err = fmt.Errorf("%w: the daemon is starting; try again in a moment", ipc.ErrBusy)
		if tok, terr := d.creds.LoadToken(); tok == nil && (terr == nil || errors.Is(terr, cloudapi.ErrNotFound)) {
			err = ipc.ErrLoginRequired // nothing to start: no login stored
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// setState sets the state, why (code) and what to tell the person (msg).
func (d *Daemon) setState(state ipc.State, code ipc.Code, msg string) {
	d.store.Update(func(st *ipc.Status) { setStateOf(st, state, code, msg) })
}

// setStateOf is setState inside a store update.
func setStateOf(st *ipc.Status, state ipc.State, code ipc.Code, msg string) {
	st.State, st.Code, st.Error = state, code, msg
	if state == ipc.StateLoggedOut || state == ipc.StateLoginRequired {
		st.LoggedIn = false
	}
	if !state.Unreachable() && state != ipc.StateStarting {
		st.OfflineSince = nil
	}
}

// isPaused reports whether sync is paused.
func (d *Daemon) isPaused() bool {
	var paused bool
	d.store.View(func(st *ipc.Status) { paused = st.Paused })
	return paused
}

// Status implements ipc.Backend: a snapshot of the status. It has no
// side effects (no request to the server, nothing published).
func (d *Daemon) Status(context.Context) ipc.Status {
	return d.store.Get()
}
