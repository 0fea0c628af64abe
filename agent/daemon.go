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
	StateIdle          = "idle"
	StateSyncing       = "syncing"
	StatePaused        = "paused"
	StateOffline       = "offline"
	StateError         = "error"
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
	login   *cloudapi.PendingLogin
	session *session

	loggedIn chan struct{} // signalled when a login completes
}

// session is what a logged-in daemon holds: the tenant API client, the
// bucket-scoped key and the sync engine, for as long as the login lasts.
type session struct {
	cancel  context.CancelFunc
	client  *cloudapi.Client
	key     *cloudapi.S3Key
	engine  *syncer.Engine
	syncReq chan syncCall
	done    chan struct{}
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
	cfg = cfg.withDefaults()
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
		loggedIn: make(chan struct{}, 1),
	}
	d.creds = cloudapi.OpenStore(cfg.Home, logger.With("component", "keyring"))
	d.status = ipc.Status{
		State:          StateStarting,
		Since:          time.Now(),
		Folder:         cfg.Folder,
		KeyringBackend: d.creds.Backend(),
		Version:        Version,
	}
	return d, nil
}

// Serve runs the daemon until ctx is cancelled: the local API, the session
// with the cloud and the sync loop. Cancellation is not an error.
func (d *Daemon) Serve(ctx context.Context) error {
	ln, err := ipc.Listen(d.cfg.SocketPath)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	srv := ipc.NewServer(d, d.log.With("component", "ipc"))
	ipcErr := make(chan error, 1)
	go func() { ipcErr <- srv.Serve(ctx, ln) }()
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
	if err == nil || errors.Is(err, cloudapi.ErrLoginRequired) {
		return 24 * time.Hour // only a login wakes us
	}
	return 30 * time.Second
}

func stateFor(err error) string {
	var sub *cloudapi.SubscriptionRequiredError
	switch {
	case errors.Is(err, cloudapi.ErrLoginRequired), errors.Is(err, cloudapi.ErrUnauthorized):
		return StateLoginRequired
	case errors.As(err, &sub):
		return StateError
	default:
		return StateOffline
	}
}

func (d *Daemon) setState(state, msg string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.status.State != state {
		d.log.Debug("state", "from", d.status.State, "to", state, "after", time.Since(d.status.Since).Round(time.Millisecond))
		d.status.Since = time.Now()
	}
	d.status.State = state
	d.status.Error = msg
	if state == StateLoggedOut || state == StateLoginRequired {
		d.status.LoggedIn = false
	}
}

func (d *Daemon) isPaused() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.status.Paused
}

// Status implements ipc.Backend.
func (d *Daemon) Status(context.Context) ipc.Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.status
	if d.login != nil {
		st.LoginURL = d.login.URL()
	}
	return st
}
