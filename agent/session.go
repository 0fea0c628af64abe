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
	"github.com/basicmachines-co/bm-agent/cloudapi/tenantapi"
	"github.com/basicmachines-co/bm-agent/ipc"
)

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
