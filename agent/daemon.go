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

	"golang.org/x/oauth2"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/agent/watch"
	"github.com/basicmachines-co/bm-agent/cloudapi"
	"github.com/basicmachines-co/bm-agent/cloudapi/tenantapi"
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

// resume builds a session from the stored token, or returns nil when there
// is none (logged out).
func (d *Daemon) resume(ctx context.Context) (*session, error) {
	tok, err := d.creds.LoadToken()
	if errors.Is(err, cloudapi.ErrNotFound) || (err == nil && tok == nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load token: %w", err)
	}
	if d.cloud.Host == "" {
		return nil, errors.New("no cloud host configured: set BASIC_MEMORY_CLOUD_HOST or cloud_host in the config")
	}
	d.setState(StateStarting, "")
	eps, err := cloudapi.Discover(ctx, d.hc, d.cloud.Domain)
	if err != nil {
		return nil, fmt.Errorf("discover issuer: %w", err)
	}
	ts := d.cloud.TokenSource(ctx, d.hc, eps, tok, d.creds.SaveToken)
	client, err := cloudapi.NewClient(d.cloud.Host, ts, d.hc, d.log.With("component", "cloudapi"))
	if err != nil {
		return nil, err
	}
	info, err := client.MountInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("mount info: %w", err)
	}
	key, err := d.ensureKey(ctx, client, info)
	if err != nil {
		return nil, err
	}
	if err := d.prepareFolder(); err != nil {
		return nil, err
	}
	engine, err := syncer.New(ctx, syncer.Config{
		LocalDir: d.cfg.Folder,
		Remote: syncer.Remote{
			Endpoint:  key.Endpoint,
			Region:    key.Region,
			AccessKey: key.AccessKey,
			SecretKey: key.SecretKey,
			Bucket:    key.Bucket,
		},
		WorkDir: filepath.Join(d.cfg.Home, "bisync", info.TenantID),
		Device:  d.cfg.Device,
		Logger:  d.log.With("component", "sync"),
	})
	if err != nil {
		return nil, fmt.Errorf("sync engine: %w", err)
	}
	account := ""
	if st, err := client.TenantStatus(ctx); err == nil {
		account = st.Email
	}
	d.mu.Lock()
	d.status.LoggedIn = true
	d.status.Account = account
	d.status.TenantID = info.TenantID
	d.status.Bucket = info.BucketName
	d.status.Endpoint = key.Endpoint
	d.status.LoginURL = ""
	d.mu.Unlock()
	return &session{client: client, key: key, engine: engine, syncReq: make(chan syncCall, 8), done: make(chan struct{})}, nil
}

// ensureKey returns the device's bucket-scoped key, minting one at the
// server when the keychain has none for this bucket.
func (d *Daemon) ensureKey(ctx context.Context, client *cloudapi.Client, info tenantapi.MountInfo) (*cloudapi.S3Key, error) {
	key, err := d.creds.LoadS3Key()
	if err != nil && !errors.Is(err, cloudapi.ErrNotFound) {
		return nil, fmt.Errorf("load s3 key: %w", err)
	}
	if key != nil && key.Bucket == info.BucketName {
		return key, nil
	}
	mc, err := client.CreateCredentials(ctx, "bm-agent on "+d.cfg.Device)
	if err != nil {
		return nil, fmt.Errorf("mint s3 key: %w", err)
	}
	key = &cloudapi.S3Key{
		AccessKey:    mc.AccessKey,
		SecretKey:    mc.SecretKey,
		CredentialID: mc.CredentialID,
		Endpoint:     mc.EndpointURL,
		Region:       mc.Region,
		Bucket:       mc.BucketName,
	}
	if err := d.creds.SaveS3Key(key); err != nil {
		return nil, fmt.Errorf("save s3 key: %w", err)
	}
	d.log.Info("minted a bucket-scoped key for this device", "bucket", key.Bucket, "credential", key.CredentialID)
	return key, nil
}

// prepareFolder creates the notes folder on the very first run only: a
// folder that vanished after a baseline exists is a missing drive, and the
// engine refuses to sync it rather than delete the bucket's notes.
func (d *Daemon) prepareFolder() error {
	if _, err := os.Stat(d.cfg.Folder); err == nil {
		return nil
	}
	if _, err := os.Stat(filepath.Join(d.cfg.Home, "bisync")); err == nil {
		return nil // let the engine report the missing root
	}
	if err := os.MkdirAll(d.cfg.Folder, 0o700); err != nil {
		return fmt.Errorf("create notes folder: %w", err)
	}
	return nil
}

// runSession runs the sync loop until ctx ends or the session is logged out.
func (d *Daemon) runSession(ctx context.Context, s *session) {
	sctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	d.mu.Lock()
	d.session = s
	d.mu.Unlock()
	defer func() {
		cancel()
		d.mu.Lock()
		d.session = nil
		d.mu.Unlock()
		close(s.done)
	}()

	var batches <-chan watch.Batch
	w, err := watch.New(d.cfg.Folder, watch.Options{
		Delay:   time.Duration(d.cfg.Debounce),
		MaxWait: time.Duration(d.cfg.MaxWait),
	}, d.log.With("component", "watch"))
	if err != nil {
		d.log.Warn("file watcher unavailable; syncing on the interval only", "err", err)
	} else {
		go func() {
			if err := w.Run(sctx); err != nil && sctx.Err() == nil {
				d.log.Warn("file watcher stopped; syncing on the interval only", "err", err)
			}
		}()
		batches = w.Batches()
	}

	interval := time.Duration(d.cfg.Interval)
	timer := time.NewTimer(0) // first pass at once
	defer timer.Stop()
	for {
		var call *syncCall
		trigger := ""
		select {
		case <-sctx.Done():
			return
		case b := <-batches:
			trigger = "watch"
			d.log.Debug("local changes", "count", b.Count)
		case <-timer.C:
			trigger = "interval"
		case c := <-s.syncReq:
			call, trigger = &c, "manual"
		}
		if d.isPaused() && (call == nil || call.reply == nil) {
			timer.Reset(interval)
			continue
		}
		opt := syncer.PassOptions{Trigger: trigger}
		if call != nil {
			opt.Resync, opt.DryRun = call.req.Resync, call.req.DryRun
		}
		if w != nil {
			w.Suppress()
		}
		sum, res, err := d.pass(sctx, s, opt)
		followUp := false
		if w != nil {
			// Changes seen during a pass that wrote nothing locally were the
			// user's, not ours: they get a pass of their own at once.
			if dropped := w.Resume(); !dropped.Empty() && !res.LocalChanged {
				followUp = true
			}
		}
		if call != nil && call.reply != nil {
			call.reply <- syncReply{summary: sum, err: err}
		}
		// Coalesce: sync requests that queued during the pass are answered
		// by the next pass, which starts at once.
		if len(s.syncReq) > 0 || followUp {
			timer.Reset(0)
		} else {
			timer.Reset(interval)
		}
		d.mu.Lock()
		next := time.Now().Add(interval)
		d.status.NextSync = &next
		d.mu.Unlock()
	}
}

func (d *Daemon) pass(ctx context.Context, s *session, opt syncer.PassOptions) (ipc.PassSummary, syncer.Result, error) {
	d.setState(StateSyncing, "")
	res, err := s.engine.Pass(ctx, opt)
	sum := ipc.PassSummary{
		Start:         res.Start,
		DurationMS:    res.Duration.Milliseconds(),
		Trigger:       opt.Trigger,
		Uploaded:      res.Uploaded,
		Downloaded:    res.Downloaded,
		DeletedLocal:  res.DeletedLocal,
		DeletedRemote: res.DeletedRemote,
		Conflicts:     res.Conflicts,
		Resync:        res.Resync,
		Skipped:       res.Skipped,
	}
	if err != nil {
		sum.Error = err.Error()
		if ctx.Err() == nil {
			d.log.Error("sync pass failed", "trigger", opt.Trigger, "err", err)
			d.setState(StateError, err.Error())
		}
	} else {
		d.log.Info("sync pass", "trigger", opt.Trigger, "up", res.Uploaded, "down", res.Downloaded,
			"deleted_local", res.DeletedLocal, "deleted_remote", res.DeletedRemote, "conflicts", res.Conflicts,
			"resync", res.Resync, "took", res.Duration.Round(time.Millisecond))
		if d.isPaused() {
			d.setState(StatePaused, "")
		} else {
			d.setState(StateIdle, "")
		}
		if res.RemoteChanged && !opt.DryRun {
			go d.notifyChanged(ctx, s)
		}
	}
	if !opt.DryRun {
		d.mu.Lock()
		d.status.LastSync = &sum
		d.mu.Unlock()
	}
	return sum, res, err
}

// notifyChanged tells the server that this tenant's bucket changed, so its
// other devices learn about it at once.
func (d *Daemon) notifyChanged(ctx context.Context, s *session) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := s.client.NotifySync(ctx, tenantapi.SyncRequest{Device: d.cfg.Device, Reason: "bisync"}); err != nil {
		d.log.Warn("notify server of bucket change", "err", err)
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

// Sync implements ipc.Backend: a pass now, coalesced with one already queued.
func (d *Daemon) Sync(ctx context.Context, req ipc.SyncRequest) (ipc.PassSummary, error) {
	d.mu.Lock()
	s := d.session
	d.mu.Unlock()
	if s == nil {
		return ipc.PassSummary{}, errors.New("not logged in: run `bm-agent login`")
	}
	call := syncCall{req: req}
	if req.Wait {
		call.reply = make(chan syncReply, 1)
	}
	select {
	case s.syncReq <- call:
	case <-ctx.Done():
		return ipc.PassSummary{}, ctx.Err()
	case <-s.done:
		return ipc.PassSummary{}, errors.New("sync: logged out")
	}
	if call.reply == nil {
		return ipc.PassSummary{}, nil
	}
	select {
	case r := <-call.reply:
		return r.summary, r.err
	case <-ctx.Done():
		return ipc.PassSummary{}, ctx.Err()
	case <-s.done:
		return ipc.PassSummary{}, errors.New("sync: logged out")
	}
}

// Login implements ipc.Backend: it starts the browser login and returns the
// URL to open; the daemon completes it in the background.
func (d *Daemon) Login(ctx context.Context) (ipc.LoginStart, error) {
	d.mu.Lock()
	if d.login != nil {
		u := d.login.URL()
		d.mu.Unlock()
		return ipc.LoginStart{URL: u}, nil
	}
	d.mu.Unlock()
	p, err := cloudapi.StartLogin(context.WithoutCancel(ctx), d.hc, d.cloud)
	if err != nil {
		return ipc.LoginStart{}, fmt.Errorf("login: %w", err)
	}
	d.mu.Lock()
	d.login = p
	d.mu.Unlock()
	go d.finishLogin(p)
	return ipc.LoginStart{URL: p.URL()}, nil
}

func (d *Daemon) finishLogin(p *cloudapi.PendingLogin) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tok, err := p.Wait(ctx)
	p.Close()
	d.mu.Lock()
	d.login = nil
	d.mu.Unlock()
	if err != nil {
		d.log.Warn("login did not complete", "err", err)
		d.mu.Lock()
		d.status.Error = "login: " + err.Error()
		d.mu.Unlock()
		return
	}
	if err := d.saveToken(tok); err != nil {
		d.log.Error("save token", "err", err)
		return
	}
	d.log.Info("logged in")
	select {
	case d.loggedIn <- struct{}{}:
	default:
	}
}

func (d *Daemon) saveToken(tok *oauth2.Token) error {
	// A new login replaces any old session's key only if the bucket differs;
	// ensureKey checks that.
	return d.creds.SaveToken(tok)
}

// Logout implements ipc.Backend: it revokes this device's key at the server
// and removes the tokens and the key from the keychain.
func (d *Daemon) Logout(ctx context.Context) error {
	d.mu.Lock()
	s := d.session
	d.mu.Unlock()
	if s != nil {
		if s.key != nil && s.key.CredentialID != "" {
			if _, err := s.client.RevokeCredential(ctx, s.key.CredentialID); err != nil {
				d.log.Warn("revoke this device's key at the server", "err", err)
			}
		}
		s.cancel()
		<-s.done
	}
	if err := d.creds.Clear(); err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	d.mu.Lock()
	d.status.LoggedIn = false
	d.status.Account, d.status.TenantID, d.status.Bucket = "", "", ""
	d.mu.Unlock()
	d.setState(StateLoggedOut, "")
	return nil
}

// Pause implements ipc.Backend.
func (d *Daemon) Pause(context.Context) error {
	d.mu.Lock()
	d.status.Paused = true
	d.mu.Unlock()
	d.setState(StatePaused, "")
	return nil
}

// Resume implements ipc.Backend.
func (d *Daemon) Resume(context.Context) error {
	d.mu.Lock()
	d.status.Paused = false
	s := d.session
	d.mu.Unlock()
	d.setState(StateIdle, "")
	if s != nil {
		select {
		case s.syncReq <- syncCall{}:
		default:
		}
	}
	return nil
}
