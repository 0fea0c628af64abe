// Package server is bm-server: it wires the tenant API, the built-in OAuth
// issuer, the SQL store and a storage provider (the embedded S3 endpoint by
// default) into one process with two listeners: the API and the S3 endpoint.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/basicmachines-co/bm-agent/cloudapi/tenantapi"
	"github.com/basicmachines-co/bm-agent/server/api"
	"github.com/basicmachines-co/bm-agent/server/issuer"
	"github.com/basicmachines-co/bm-agent/server/s3embed"
	"github.com/basicmachines-co/bm-agent/server/storage"
	"github.com/basicmachines-co/bm-agent/server/storage/embedded"
	"github.com/basicmachines-co/bm-agent/server/store"
)

// Config configures a Server. Zero values take the embedded defaults.
type Config struct {
	// Addr is the API listen address (default 127.0.0.1:8787; port 0 picks one).
	Addr string
	// S3Addr is the embedded S3 endpoint's listen address (default 127.0.0.1:8788).
	S3Addr string
	// PublicURL is the API's base URL as clients see it (default http://Addr).
	PublicURL string
	// S3PublicURL is the S3 endpoint as clients see it (default http://S3Addr).
	S3PublicURL string
	// DataDir holds the SQLite file, the embedded buckets and the keys.
	DataDir string
	// Region is what the embedded endpoint reports (default us-east-1).
	Region string
	// SubscribeURL is shown to tenants without an active subscription.
	SubscribeURL string
	// DemoEmail and DemoPassword, when set, create that account (and its
	// tenant and bucket) at start if it does not exist.
	DemoEmail, DemoPassword string
	Logger                  *slog.Logger
}

// Server is a running bm-server.
type Server struct {
	cfg      Config
	log      *slog.Logger
	store    *store.Store
	s3       *s3embed.Server
	provider storage.Provider
	issuer   *issuer.Issuer
	apiLn    net.Listener
	s3Ln     net.Listener
	apiURL   string
	s3URL    string
}

// New opens the store, the storage provider and the listeners. Call Serve to
// start answering, Close to release everything if Serve is never called.
func New(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.DataDir == "" {
		return nil, errors.New("server: a data dir is required")
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8787"
	}
	if cfg.S3Addr == "" {
		cfg.S3Addr = "127.0.0.1:8788"
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.SubscribeURL == "" {
		cfg.SubscribeURL = "https://basicmemory.com/subscribe"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: data dir: %w", err)
	}
	if s.apiLn, err = net.Listen("tcp", cfg.Addr); err != nil {
		return nil, fmt.Errorf("server: listen api: %w", err)
	}
	if s.s3Ln, err = net.Listen("tcp", cfg.S3Addr); err != nil {
		return nil, fmt.Errorf("server: listen s3: %w", err)
	}
	s.apiURL = publicURL(cfg.PublicURL, s.apiLn)
	s.s3URL = publicURL(cfg.S3PublicURL, s.s3Ln)

	if s.store, err = store.Open(ctx, filepath.Join(cfg.DataDir, "bm-server.db")); err != nil {
		return nil, fmt.Errorf("server: open store: %w", err)
	}
	master, err := issuer.LoadOrCreateSecret(filepath.Join(cfg.DataDir, "master.key"), 32)
	if err != nil {
		return nil, fmt.Errorf("server: master key: %w", err)
	}
	// The provider checks the endpoint's keys and the endpoint holds the
	// provider's buckets: build one, then the other, then join them.
	prov := embedded.New(nil, master, s.store, s.s3URL, cfg.Region)
	s.s3, err = s3embed.New(filepath.Join(cfg.DataDir, "buckets"), prov, cfg.Logger.With("component", "s3"))
	if err != nil {
		return nil, fmt.Errorf("server: embedded s3: %w", err)
	}
	prov.SetServer(s.s3)
	s.s3.OnKeyUsed = func(accessKey string) {
		if err := s.store.TouchAccessKey(context.Background(), accessKey, time.Now()); err != nil {
			s.log.Warn("track key use", "err", err)
		}
	}
	s.provider = prov

	signing, err := issuer.LoadOrCreateKey(filepath.Join(cfg.DataDir, "issuer.pem"))
	if err != nil {
		return nil, fmt.Errorf("server: issuer key: %w", err)
	}
	oauthSecret, err := issuer.LoadOrCreateSecret(filepath.Join(cfg.DataDir, "oauth.secret"), 32)
	if err != nil {
		return nil, fmt.Errorf("server: oauth secret: %w", err)
	}
	s.issuer, err = issuer.New(issuer.Config{
		IssuerURL:    s.apiURL,
		SigningKey:   signing,
		Accounts:     accounts{s.store},
		GlobalSecret: oauthSecret,
		Logger:       cfg.Logger.With("component", "issuer"),
	})
	if err != nil {
		return nil, fmt.Errorf("server: issuer: %w", err)
	}
	if cfg.DemoEmail != "" {
		if _, err := s.store.AccountByEmail(ctx, cfg.DemoEmail); errors.Is(err, store.ErrNotFound) {
			if _, err := s.CreateAccount(ctx, cfg.DemoEmail, cfg.DemoPassword); err != nil {
				return nil, fmt.Errorf("server: demo account: %w", err)
			}
			s.log.Info("created demo account", "email", cfg.DemoEmail)
		} else if err != nil {
			return nil, fmt.Errorf("server: demo account: %w", err)
		}
	}
	return s, nil
}

func publicURL(configured string, ln net.Listener) string {
	if configured != "" {
		return strings.TrimRight(configured, "/")
	}
	return "http://" + ln.Addr().String()
}

// URL is the API's base URL (also the OAuth issuer).
func (s *Server) URL() string { return s.apiURL }

// S3URL is the embedded S3 endpoint's URL.
func (s *Server) S3URL() string { return s.s3URL }

// Store is the server's SQL store.
func (s *Server) Store() *store.Store { return s.store }

// S3 is the embedded S3 endpoint (request counters for tests and benchmarks).
func (s *Server) S3() *s3embed.Server { return s.s3 }

// CreateAccount creates an account with a new tenant and provisions its bucket.
func (s *Server) CreateAccount(ctx context.Context, email, password string) (store.Account, error) {
	if email == "" || len(password) < 8 {
		return store.Account{}, errors.New("create account: an email and a password of at least 8 characters are required")
	}
	hash, err := store.HashPassword(password)
	if err != nil {
		return store.Account{}, fmt.Errorf("create account: %w", err)
	}
	tenantID := uuid.NewString()
	t := store.Tenant{
		ID:                 tenantID,
		BucketName:         "basic-memory-" + tenantID,
		Status:             "active",
		SubscriptionStatus: "active",
		SubscriptionTier:   "basic",
		CreatedAt:          time.Now().UTC(),
	}
	if err := s.provider.CreateBucket(ctx, t.BucketName); err != nil {
		return store.Account{}, fmt.Errorf("create account: bucket: %w", err)
	}
	a := store.Account{ID: uuid.NewString(), Email: email, PasswordHash: hash, TenantID: tenantID, CreatedAt: t.CreatedAt}
	if err := s.store.CreateTenantWithAccount(ctx, t, a); err != nil {
		return store.Account{}, fmt.Errorf("create account: %w", err)
	}
	_ = s.store.AddAudit(ctx, tenantID, "tenant.created", "bucket "+t.BucketName)
	return a, nil
}

// Handler is the API's HTTP handler: tenant API, issuer and operations.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.issuer.Register(mux)
	h := &api.Handler{
		Store:        s.store,
		Storage:      s.provider,
		Auth:         s.issuer,
		Logger:       s.log.With("component", "api"),
		SubscribeURL: s.cfg.SubscribeURL,
		Now:          time.Now,
		OnSync: func(ctx context.Context, tenantID string, req tenantapi.SyncRequest) {
			s.log.Info("bucket changed", "tenant", tenantID, "device", req.Device)
		},
	}
	h.Register(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	return mux
}

// Serve answers on both listeners until ctx is cancelled, then shuts down
// gracefully. Cancellation is not an error.
func (s *Server) Serve(ctx context.Context) error {
	defer s.Close()
	apiSrv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	s3Srv := &http.Server{Handler: s.s3.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- apiSrv.Serve(s.apiLn) }()
	go func() { errc <- s3Srv.Serve(s.s3Ln) }()
	s.log.Info("bm-server listening", "api", s.apiURL, "s3", s.s3URL, "data", s.cfg.DataDir)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = apiSrv.Shutdown(shutCtx)
	_ = s3Srv.Shutdown(shutCtx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Close releases the listeners and the store.
func (s *Server) Close() {
	if s.apiLn != nil {
		s.apiLn.Close()
	}
	if s.s3Ln != nil {
		s.s3Ln.Close()
	}
	if s.store != nil {
		s.store.Close()
		s.store = nil
	}
}

// accounts adapts the store to the issuer's view of accounts.
type accounts struct{ st *store.Store }

func (a accounts) Authenticate(ctx context.Context, email, password string) (string, error) {
	acc, err := a.st.AccountByEmail(ctx, email)
	if err != nil {
		// Same answer for an unknown email and a wrong password.
		_ = store.CheckPassword("$2a$10$invalidinvalidinvalidinvalidinvalidinvalidinvalidinva", password)
		return "", errors.New("authenticate: invalid email or password")
	}
	if err := store.CheckPassword(acc.PasswordHash, password); err != nil {
		return "", errors.New("authenticate: invalid email or password")
	}
	return acc.ID, nil
}

func (a accounts) Claims(ctx context.Context, subject string) (tenantapi.Claims, error) {
	acc, err := a.st.AccountByID(ctx, subject)
	if err != nil {
		return tenantapi.Claims{}, fmt.Errorf("claims: account: %w", err)
	}
	t, err := a.st.TenantByID(ctx, acc.TenantID)
	if err != nil {
		return tenantapi.Claims{}, fmt.Errorf("claims: tenant: %w", err)
	}
	return tenantapi.Claims{
		Subject:            acc.ID,
		Email:              acc.Email,
		TenantID:           t.ID,
		SubscriptionStatus: t.SubscriptionStatus,
		SubscriptionTier:   t.SubscriptionTier,
	}, nil
}
