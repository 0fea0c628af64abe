package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/oauth2"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/cloudapi"
	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// tenantStatusEvery is how often a session asks the tenant API for the
// account's status (subscription, devices); a variable so tests can
// shorten it. Reading the daemon's status never asks.
var tenantStatusEvery = 5 * time.Minute

// loginTimeout bounds a login in progress (the device code's own expiry
// may end it sooner).
const loginTimeout = 15 * time.Minute

// loginFlow is a login in progress: what to show the person, and how to
// stop it.
type loginFlow struct {
	method   string // ipc.LoginBrowser or ipc.LoginDevice
	url      string
	userCode string
	cancel   context.CancelFunc
}

// resume builds a session from the stored token, or returns nil when there
// is none (logged out). It runs at start and after each login, so a
// restarted daemon carries on without asking the person again. A stored
// grant the issuer no longer honours fails with cloudapi.ErrLoginRequired.
func (d *Daemon) resume(ctx context.Context) (*session, error) {
	tok, err := d.creds.LoadToken()
	if errors.Is(err, cloudapi.ErrNotFound) || (err == nil && tok == nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load token: %w", err)
	}
	if d.cloud.Host == "" {
		return nil, errNotConfigured
	}
	d.store.Update(func(st *ipc.Status) {
		// a retry keeps saying what is wrong until it is put right
		if st.State == ipc.StateLoggedOut || st.State == ipc.StateLoginRequired {
			setStateOf(st, ipc.StateStarting, ipc.CodeNone, "")
		}
	})
	eps, err := cloudapi.Discover(ctx, d.hc, d.cloud.Domain)
	if err != nil {
		return nil, fmt.Errorf("discover issuer: %w", err)
	}
	ts := d.cloud.TokenSource(ctx, d.hc, eps, tok, d.creds.SaveToken)
	client, err := cloudapi.NewClient(d.cloud.Host, ts, d.hc, d.log.With("component", "cloudapi"))
	if err != nil {
		return nil, err
	}
	// The status route answers without a subscription: the person sees who
	// they are logged in as even when syncing is not allowed.
	if err := d.refreshTenantStatus(ctx, client); err != nil {
		return nil, err
	}
	info, err := client.MountInfo(ctx)
	if err != nil {
		var sub *cloudapi.SubscriptionRequiredError
		if errors.As(err, &sub) {
			d.store.Update(func(st *ipc.Status) { st.LoggedIn, st.SubscribeURL = true, sub.SubscribeURL })
		}
		return nil, fmt.Errorf("mount info: %w", err)
	}
	key, minted, err := d.ensureKey(ctx, client, info)
	if err != nil {
		return nil, err
	}
	if minted { // count this device's new key
		if err := d.refreshTenantStatus(ctx, client); err != nil {
			d.log.Debug("tenant status", "err", err)
		}
	}
	if err := d.prepareFolder(); err != nil {
		return nil, err
	}
	engine, err := d.newEngine(ctx, d, key, info.TenantID)
	if err != nil {
		return nil, err
	}
	d.store.Update(func(st *ipc.Status) {
		st.LoggedIn, st.TenantID, st.Bucket, st.Endpoint, st.SubscribeURL = true, info.TenantID, info.BucketName, key.Endpoint, ""
	})
	s := &session{client: client, key: key, done: make(chan struct{})}
	s.pairs = []*pair{d.newPair(s, engine)}
	go d.watchSession(ctx, s)
	return s, nil
}

// refreshTenantStatus asks GET /tenant/status and publishes the account,
// subscription, tenant, bucket and device count.
func (d *Daemon) refreshTenantStatus(ctx context.Context, client *cloudapi.Client) error {
	st, err := client.TenantStatus(ctx)
	if err != nil {
		return fmt.Errorf("tenant status: %w", err)
	}
	d.store.Update(func(s *ipc.Status) {
		s.LoggedIn, s.Account, s.TenantID, s.Bucket = true, st.Email, st.TenantID, st.BucketName
		s.SubscriptionStatus, s.SubscriptionTier, s.Devices = st.SubscriptionStatus, st.SubscriptionTier, st.Devices
	})
	d.rememberAccount(st.Email)
	return nil
}

// watchSession refreshes the tenant status every tenantStatusEvery for as
// long as s runs (a status read never asks the server). When the grant is gone for good (the
// refresh token expired or was revoked), it ends the session: the daemon
// then waits in state login_required for a login, and nothing retries.
func (d *Daemon) watchSession(ctx context.Context, s *session) {
	t := time.NewTicker(tenantStatusEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		case <-t.C:
		}
		err := d.refreshTenantStatus(ctx, s.client)
		switch {
		case err == nil:
		case errors.Is(err, cloudapi.ErrLoginRequired):
			d.log.Warn("the login expired or was revoked; log in again", "err", err)
			d.mu.Lock()
			cur := d.session
			d.mu.Unlock()
			if cur == s && s.cancel != nil {
				s.cancel()
				<-s.done
			}
			// Serve resumes, meets the same answer and waits for a login.
			return
		default:
			d.log.Debug("tenant status", "err", err)
		}
	}
}

// rememberAccount keeps who the stored login is for in the state file,
// so the status can name them while the server cannot be reached.
func (d *Daemon) rememberAccount(account string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.saved.Account == account {
		return
	}
	next := d.saved
	next.Account = account
	if err := saveState(d.cfg.Home, next); err != nil {
		d.log.Warn("save state", "err", err)
		return
	}
	d.saved = next
}

// ensureKey returns the device's bucket-scoped key, minting one at the
// server (minted true) when the keychain has none for this bucket.
func (d *Daemon) ensureKey(ctx context.Context, client *cloudapi.Client, info tenantapi.MountInfo) (key *cloudapi.S3Key, minted bool, err error) {
	key, err = d.creds.LoadS3Key()
	if err != nil && !errors.Is(err, cloudapi.ErrNotFound) {
		return nil, false, fmt.Errorf("load s3 key: %w", err)
	}
	if key != nil && key.Bucket == info.BucketName {
		return key, false, nil
	}
	key, err = d.mintKey(ctx, client)
	if err != nil {
		return nil, false, err
	}
	return key, true, nil
}

// mintKey asks the tenant API for a new bucket-scoped key for this device
// and saves it in the keychain, in place of any stored one.
func (d *Daemon) mintKey(ctx context.Context, client *cloudapi.Client) (*cloudapi.S3Key, error) {
	mc, err := client.CreateCredentials(ctx, "bm-agent on "+d.cfg.Device)
	if err != nil {
		return nil, fmt.Errorf("mint s3 key: %w", err)
	}
	key := &cloudapi.S3Key{
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

// newEngine builds a pair's sync engine for a key (Daemon.newEngine;
// tests put a fake there).
func newEngine(ctx context.Context, d *Daemon, key *cloudapi.S3Key, tenantID string) (passer, error) {
	engine, err := syncer.New(ctx, syncer.Config{
		LocalDir: d.cfg.Folder,
		Remote: syncer.Remote{
			Endpoint:  key.Endpoint,
			Region:    key.Region,
			AccessKey: key.AccessKey,
			SecretKey: key.SecretKey,
			Bucket:    key.Bucket,
		},
		WorkDir:     filepath.Join(d.cfg.Home, "bisync", tenantID),
		VersionsDir: filepath.Join(d.cfg.Home, "versions", tenantID),
		NoVersions:  d.versionSettings().days == 0,
		Device:      d.cfg.Device,
		Logger:      d.log.With("component", "sync"),
	})
	if err != nil {
		return nil, fmt.Errorf("sync engine: %w", err)
	}
	return engine, nil
}

// triggerKeyReplaced is the trigger of the pass run again after the daemon
// replaced a key S3 rejected: the history shows each replacement by it.
const triggerKeyReplaced = "key-replaced"

// Waits between key replacements within one failure burst (doubling).
var (
	keyRotationBackoff    = time.Minute
	keyRotationMaxBackoff = time.Hour
)

// keyRotation allows one key replacement per failure burst (the passes
// that fail in a row), and further ones only after a backoff that doubles,
// so a server that keeps handing out keys S3 refuses is not asked in a loop.
type keyRotation struct {
	tried   bool      // a replacement was tried in this burst
	next    time.Time // the earliest next try
	backoff time.Duration
}

func (k *keyRotation) allow(now time.Time) bool { return !k.tried || !now.Before(k.next) }

func (k *keyRotation) attempted(now time.Time) {
	if k.backoff == 0 {
		k.backoff = keyRotationBackoff
	} else {
		k.backoff = min(2*k.backoff, keyRotationMaxBackoff)
	}
	k.tried = true
	k.next = now.Add(k.backoff)
}

// reset ends the burst: a pass succeeded.
func (k *keyRotation) reset() { *k = keyRotation{} }

// recoverKey answers a pass that failed because S3 rejected the device's
// key: when kr allows, it replaces the key and reports true (run the pass
// again); otherwise, or when no key could be minted, it sets a state that
// says so and reports false (the loop's retry backoff runs the next pass).
func (p *pair) recoverKey(ctx context.Context, kr *keyRotation) bool {
	d, s := p.d, p.s
	now := time.Now()
	if !kr.allow(now) {
		d.setState(ipc.StateError, ipc.CodeKeyRejected, "S3 still rejects the device's key; the next attempt to mint a new one is at "+
			kr.next.Format(time.TimeOnly)+" (or run `bm-agent logout` and `bm-agent login`)")
		return false
	}
	kr.attempted(now)
	if err := d.replaceKey(ctx, s); err != nil {
		if ctx.Err() != nil {
			return false
		}
		d.log.Error("S3 rejected the device's key and no new key could be minted", "err", err)
		state, code, ok := stateFor(err)
		if !ok {
			code = ipc.CodeKeyRejected
		}
		d.setState(state, code, "S3 rejected the device's key and a new one could not be minted: "+err.Error()+
			"; the daemon tries again at "+kr.next.Format(time.TimeOnly)+", or run `bm-agent logout` and `bm-agent login`")
		return false
	}
	return true
}

// replaceKey mints a new key for s, saves it in place of the rejected one,
// rebuilds the engine on it and revokes the old key at the server (best
// effort: S3 already refuses it).
func (d *Daemon) replaceKey(ctx context.Context, s *session) error {
	if s.client == nil {
		return errors.New("replace key: no tenant API client")
	}
	d.mu.Lock()
	old := s.key
	d.mu.Unlock()
	tenantID := d.store.Get().TenantID
	key, err := d.mintKey(ctx, s.client)
	if err != nil {
		return fmt.Errorf("replace key: %w", err)
	}
	engine, err := d.newEngine(ctx, d, key, tenantID)
	if err != nil {
		return fmt.Errorf("replace key: %w", err)
	}
	d.mu.Lock()
	s.key, s.folderPair().engine = key, engine
	d.mu.Unlock()
	d.store.Update(func(st *ipc.Status) { st.Endpoint = key.Endpoint })
	oldID := ""
	if old != nil {
		oldID = old.CredentialID
	}
	d.log.Warn("S3 rejected the device's key: replaced it with a new one", "old_credential", oldID, "credential", key.CredentialID)
	if d.mounts != nil {
		go d.remount(context.WithoutCancel(ctx))
	}
	d.store.Notify(ipc.Notification{
		Level: ipc.LevelInfo, Title: "Storage key replaced",
		Message: "The cloud storage refused this device's key, so bm-agent minted a new one and carried on syncing.",
	})
	if oldID != "" && oldID != key.CredentialID {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := s.client.RevokeCredential(rctx, oldID); err != nil {
			d.log.Debug("revoke the rejected key at the server", "credential", oldID, "err", err)
		}
	}
	return nil
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

// Login implements ipc.Backend: it starts a login (the browser flow, or the
// device flow with opts.Device), publishes what to open in the status and
// completes it in the background. A login of the same method already in
// progress is returned as is; one of the other method is replaced.
func (d *Daemon) Login(ctx context.Context, opts ipc.LoginOptions) (ipc.LoginStart, error) {
	method := ipc.LoginBrowser
	if opts.Device {
		method = ipc.LoginDevice
	}
	d.mu.Lock()
	if f := d.login; f != nil {
		if f.method == method {
			d.mu.Unlock()
			return ipc.LoginStart{URL: f.url, UserCode: f.userCode, Method: f.method}, nil
		}
		f.cancel()
		d.login = nil
	}
	d.mu.Unlock()

	fctx, cancel := context.WithTimeout(context.Background(), loginTimeout)
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	defer scancel()
	flow := &loginFlow{method: method, cancel: cancel}
	var wait func(context.Context) (*oauth2.Token, error)
	switch method {
	case ipc.LoginDevice:
		dl, err := cloudapi.StartDeviceLogin(sctx, d.hc, d.cloud)
		if err != nil {
			cancel()
			return ipc.LoginStart{}, fmt.Errorf("login: %w", err)
		}
		flow.url, flow.userCode, wait = dl.VerificationURIComplete(), dl.UserCode(), dl.Wait
	default:
		p, err := cloudapi.StartLogin(sctx, d.hc, d.cloud)
		if err != nil {
			cancel()
			return ipc.LoginStart{}, fmt.Errorf("login: %w", err)
		}
		flow.url = p.URL()
		wait = func(ctx context.Context) (*oauth2.Token, error) {
			defer p.Close()
			return p.Wait(ctx)
		}
	}
	d.mu.Lock()
	if d.login != nil { // a concurrent Login won the race
		d.login.cancel()
	}
	d.login = flow
	d.mu.Unlock()
	d.store.Update(func(st *ipc.Status) {
		st.LoginURL, st.LoginUserCode, st.LoginMethod = flow.url, flow.userCode, flow.method
		if st.Code == ipc.CodeLoginFailed {
			st.Code, st.Error = ipc.CodeNone, ""
		}
	})
	d.log.Info("login started", "method", method)
	go d.finishLogin(fctx, flow, wait)
	return ipc.LoginStart{URL: flow.url, UserCode: flow.userCode, Method: method}, nil
}

func (d *Daemon) finishLogin(ctx context.Context, flow *loginFlow, wait func(context.Context) (*oauth2.Token, error)) {
	defer flow.cancel()
	tok, err := wait(ctx)
	d.mu.Lock()
	current := d.login == flow
	if current {
		d.login = nil
	}
	d.mu.Unlock()
	if !current {
		return // replaced or cancelled: the new flow's fields stand; not worth a message
	}
	if err == nil {
		if err = d.creds.SaveToken(tok); err != nil {
			d.log.Error("save token", "err", err)
		}
	}
	d.store.Update(func(st *ipc.Status) {
		st.LoginURL, st.LoginUserCode, st.LoginMethod = "", "", ""
		if err != nil {
			st.Code, st.Error = ipc.CodeLoginFailed, "login: "+err.Error()
		}
	})
	if err != nil {
		d.log.Warn("login did not complete", "method", flow.method, "err", err)
		return
	}
	d.log.Info("logged in", "method", flow.method)
	select {
	case d.loggedIn <- struct{}{}:
	default:
	}
}

// Logout implements ipc.Backend: it revokes this device's key at the server
// and removes the tokens and the key from the keychain.
func (d *Daemon) Logout(ctx context.Context) error {
	d.mu.Lock()
	s := d.session
	var key *cloudapi.S3Key
	if s != nil {
		key = s.key // replaceKey swaps it under d.mu
	}
	if d.login != nil {
		d.login.cancel()
		d.login = nil
	}
	d.mu.Unlock()
	d.store.Update(func(st *ipc.Status) { st.LoginURL, st.LoginUserCode, st.LoginMethod = "", "", "" })
	if s != nil {
		if key != nil && key.CredentialID != "" && s.client != nil {
			if _, err := s.client.RevokeCredential(ctx, key.CredentialID); err != nil {
				d.log.Warn("revoke this device's key at the server", "err", err)
			}
		}
	} else {
		d.revokeStoredKey(ctx)
	}
	// Clear before ending the session: the daemon resumes a session as
	// soon as one ends, and must find nothing to resume.
	clearErr := d.creds.Clear()
	if s != nil {
		s.cancel()
		<-s.done
	}
	if clearErr != nil {
		return fmt.Errorf("logout: %w", clearErr)
	}
	d.rememberAccount("")
	d.store.Update(func(st *ipc.Status) {
		st.LoggedIn = false
		st.Account, st.TenantID, st.Bucket, st.Endpoint = "", "", "", ""
		st.SubscriptionStatus, st.SubscriptionTier, st.Devices, st.SubscribeURL = "", "", 0, ""
		setStateOf(st, ipc.StateLoggedOut, ipc.CodeNone, "")
	})
	d.log.Info("logged out")
	return nil
}

// revokeStoredKey revokes the stored key when no session runs (offline at
// start, say), as far as the stored token still allows; failures are
// logged: the key is removed locally either way.
func (d *Daemon) revokeStoredKey(ctx context.Context) {
	key, err := d.creds.LoadS3Key()
	if err != nil || key == nil || key.CredentialID == "" || d.cloud.Host == "" {
		return
	}
	tok, err := d.creds.LoadToken()
	if err != nil || tok == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	eps, err := cloudapi.Discover(ctx, d.hc, d.cloud.Domain)
	if err != nil {
		d.log.Warn("revoke this device's key at the server", "err", err)
		return
	}
	client, err := cloudapi.NewClient(d.cloud.Host, d.cloud.TokenSource(ctx, d.hc, eps, tok, nil), d.hc, d.log)
	if err != nil {
		return
	}
	client.MaxAttempts = 1
	if _, err := client.RevokeCredential(ctx, key.CredentialID); err != nil {
		d.log.Warn("revoke this device's key at the server", "err", err)
	}
}
