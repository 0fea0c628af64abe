// Package agent is the bm-agent daemon core: it owns every piece of
// client-side state (the session with the cloud, the sync pair, its engine,
// watcher and schedule) and serves it to the CLI and the tray through ipc.
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
	"time"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/cloudapi"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// Version is the agent's version, set by the main package.
var Version = "dev"

// States of the daemon as ipc.Status.State reports them.
const (
	StateStarting      = "starting"
	StateLoggedOut     = "logged_out"
	StateLoginRequired = "login_required"
	// StateSubscriptionRequired: logged in, but the account has no active
	// subscription; a login or a new session start checks again.
	StateSubscriptionRequired = ipc.StateSubscriptionRequired
	StateIdle                 = "idle"
	StateSyncing              = "syncing"
	StatePaused               = "paused"
	StateOffline              = "offline"
	StateError                = "error"
)

// Daemon is a running bm-agent.
type Daemon struct {
	cfg   Config
	log   *slog.Logger
	hc    *http.Client
	cloud cloudapi.Config
	creds cloudapi.Store

	mu      sync.Mutex
	status  ipc.Status
	login   *loginFlow // the login in progress, if any
	session *session

	loggedIn chan struct{} // signalled when a login completes
	// statusKick asks the session for a fresh GET /tenant/status;
	// statusAt is when the last one answered (under mu).
	statusKick chan struct{}
	statusAt   time.Time

	history *History
	saved   persisted // the state that survives a restart; under mu

	hub   *ipc.Hub      // the watch stream's event bus
	dirty chan struct{} // wakes the status publisher
	logs  *LogRing      // recent log records for `bm-agent logs`
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

// session is what a logged-in daemon holds: the tenant API client, the
// bucket-scoped key and the sync engine, for as long as the login lasts.
type session struct {
	cancel  context.CancelFunc
	client  *cloudapi.Client
	key     *cloudapi.S3Key
	engine  passer
	syncReq chan syncCall
	done    chan struct{}
	// remote receives "another device changed the bucket" wake-ups.
	remote chan struct{}
}

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
		statusKick: make(chan struct{}, 1),
		hub:        ipc.NewHub(0),
		dirty:      make(chan struct{}, 1),
		logs:       ring,
		cfgChanged: make(chan struct{}, 1),

		versions:        versionSettings{days: cfg.versionsDays(), maxBytes: cfg.versionsMaxBytes()},
		versionsChanged: make(chan struct{}, 1),
	}
	d.live = liveSettings{interval: time.Duration(cfg.Interval), debounce: time.Duration(cfg.Debounce), maxWait: time.Duration(cfg.MaxWait), profile: cfg.Profile}
	d.mounts = newMountManager(cfg.Home, logger)
	d.creds = cloudapi.OpenStore(cfg.Home, logger.With("component", "keyring"))
	d.status = ipc.Status{
		State:          StateStarting,
		Since:          time.Now(),
		Folder:         cfg.Folder,
		KeyringBackend: d.creds.Backend(),
		Version:        Version,
		Profile:        cfg.Profile,
	}
	d.history = OpenHistory(filepath.Join(cfg.Home, "history.jsonl"), 0)
	saved, err := loadState(cfg.Home)
	if err != nil {
		logger.Warn("state file unreadable; starting unpaused", "err", err)
	}
	d.saved = saved
	d.applySavedLocked(time.Now())
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
	ln, err := ipc.Listen(d.cfg.SocketPath)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	srv := ipc.NewServer(d, d.log.With("component", "ipc"))
	ipcErr := make(chan error, 1)
	go func() { ipcErr <- srv.Serve(ctx, ln) }()
	go d.publish(ctx)
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
			d.setState(stateFor(err), err.Error())
		case sess != nil:
			d.runSession(ctx, sess)
			continue
		default:
			d.setState(StateLoggedOut, "")
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

func stateFor(err error) string {
	var sub *cloudapi.SubscriptionRequiredError
	switch {
	case errors.Is(err, cloudapi.ErrLoginRequired), errors.Is(err, cloudapi.ErrUnauthorized):
		return StateLoginRequired
	case errors.As(err, &sub):
		return StateSubscriptionRequired
	case isOffline(err):
		return StateOffline
	default:
		return StateError
	}
}

func (d *Daemon) setState(state, msg string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.setStateLocked(state, msg)
}

// setStateLocked is setState with d.mu held.
func (d *Daemon) setStateLocked(state, msg string) {
	if d.status.State != state {
		d.log.Info("state", "from", d.status.State, "to", state, "after", time.Since(d.status.Since).Round(time.Millisecond))
		d.status.Since = time.Now()
	}
	d.status.State = state
	d.status.Error = msg
	d.markDirty()
	if state == StateLoggedOut || state == StateLoginRequired {
		d.status.LoggedIn = false
	}
}

// isPaused reports whether sync is paused, ending a `pause --for` whose
// time is up.
func (d *Daemon) isPaused() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expirePauseLocked(time.Now())
	return d.status.Paused
}

// Status implements ipc.Backend.
func (d *Daemon) Status(context.Context) ipc.Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expirePauseLocked(time.Now())
	st := d.status
	if d.login != nil {
		st.LoginURL, st.LoginUserCode, st.LoginMethod = d.login.url, d.login.userCode, d.login.method
	}
	if d.session != nil && time.Since(d.statusAt) > tenantStatusStale {
		select { // on demand: the session's status refresher fetches it
		case d.statusKick <- struct{}{}:
		default:
		}
	}
	return st
}
