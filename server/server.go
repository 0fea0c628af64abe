// Package server is bm-server: it wires the tenant API, the SQL store, a
// storage provider (the embedded S3 endpoint by default; MinIO, S3 + IAM or
// Tigris), token verification (the built-in OAuth issuer, or an external
// OIDC issuer), the change-event hub, the refresh hook and the credential
// lifecycle jobs into one process. It listens for the API and, with the
// embedded provider only, for S3.
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
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/basicmachines-co/bm-agent/server/api"
	"github.com/basicmachines-co/bm-agent/server/auth"
	"github.com/basicmachines-co/bm-agent/server/events"
	"github.com/basicmachines-co/bm-agent/server/events/pgevents"
	"github.com/basicmachines-co/bm-agent/server/hooks"
	"github.com/basicmachines-co/bm-agent/server/issuer"
	"github.com/basicmachines-co/bm-agent/server/lifecycle"
	"github.com/basicmachines-co/bm-agent/server/limit"
	"github.com/basicmachines-co/bm-agent/server/ops"
	"github.com/basicmachines-co/bm-agent/server/s3embed"
	"github.com/basicmachines-co/bm-agent/server/storage"
	"github.com/basicmachines-co/bm-agent/server/storage/embedded"
	"github.com/basicmachines-co/bm-agent/server/storage/minio"
	"github.com/basicmachines-co/bm-agent/server/storage/s3iam"
	"github.com/basicmachines-co/bm-agent/server/store"
	"github.com/basicmachines-co/bm-agent/tenantapi"
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
	// MetricsAddr, when set, is a listen address that serves GET /metrics
	// alone (bind it to loopback or a private network). Off by default.
	MetricsAddr string
	// MetricsTokenFile, when set, names a file holding a bearer token that
	// GET /metrics requires, on the API listener and on MetricsAddr. On
	// the API listener, /metrics is 404 without it: it is never open to
	// anyone there.
	MetricsTokenFile string
	// DataDir holds the SQLite file, the embedded buckets and the keys.
	DataDir string
	// MasterKey (from BM_SERVER_MASTER_KEY only) or MasterKeyFile (mode
	// 0600) is the master key: 32 bytes in base64 or hex. With one, the
	// built-in issuer's signing keys and OAuth secret live in the
	// database, sealed with it, rather than in DataDir's issuer.pem and
	// oauth.secret (which the first start imports): give every replica
	// the same one. See issuerKeys.
	MasterKey, MasterKeyFile string
	// Region is what the embedded endpoint reports (default us-east-1).
	Region string
	// SubscribeURL is shown to tenants without an active subscription.
	SubscribeURL string
	// DB is the store's DSN (see store.Open): a SQLite path or sqlite://PATH,
	// or postgres://... (default DataDir/bm-server.db).
	DB string
	// DemoEmail and DemoPassword, when set, create that account (and its
	// tenant and bucket) at start if it does not exist.
	DemoEmail, DemoPassword string
	// ShutdownTimeout bounds how long Serve waits for in-flight requests
	// once its context is cancelled (default 10 s).
	ShutdownTimeout time.Duration
	// DrainDelay is how long Serve, once its context is cancelled
	// (SIGTERM), goes on serving with /readyz answering 503 and no
	// keep-alive before it stops accepting connections and tells the
	// event streams' clients to reconnect, so that a load balancer takes
	// the replica out first (see drain.go). Zero or negative: none, the
	// Config default; bm-server's --drain-delay defaults to
	// DefaultDrainDelay. A shutdown takes up to DrainDelay plus
	// ShutdownTimeout.
	DrainDelay time.Duration
	// ReadHeaderTimeout bounds reading a request's header, and how long a
	// new connection may stay silent (default 10 s). ReadTimeout and
	// WriteTimeout bound reading a whole API request and writing its
	// answer (default 1 min; GET /tenant/events is exempt: it sets a
	// deadline per write and sends heartbeats); S3ReadTimeout and
	// S3WriteTimeout the same at the embedded S3 endpoint, whose bodies
	// are files (default 30 min). IdleTimeout closes a keep-alive
	// connection that sent no request for that long (default 2 min).
	// Negative: no timeout.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout time.Duration
	S3ReadTimeout, S3WriteTimeout, IdleTimeout   time.Duration
	// MaxConns bounds the connections held at once over both listeners
	// (default limit.DefaultMaxConns: three quarters of the open-files
	// limit), MaxConnsPerClient those of one client address (an IPv4
	// address or an IPv6 /64; default DefaultMaxConnsPerClient). A
	// connection past either is answered 503 with Retry-After and closed.
	// Negative: no bound. Behind a reverse proxy every connection comes
	// from the proxy: bound them there and set MaxConnsPerClient to -1.
	MaxConns, MaxConnsPerClient int
	// Limits are the issuer's rate limits of anonymous callers (device
	// codes, the verification page, sign-in attempts; see issuer.Limits).
	Limits issuer.Limits
	// localLimits keeps Limits in this process's memory on PostgreSQL
	// too, as before they were shared (tests; see limitBackend).
	localLimits bool
	// SessionCacheTTL is how long the built-in issuer trusts what the
	// store said of an access token's session, except on the routes that
	// mint, list and revoke keys, which ask the store (default
	// issuer.DefaultSessionCacheTTL; negative: ask it on every request).
	// An ended session is refused at once by the process that ended it;
	// the TTL bounds how long other replicas (or the server, when the
	// admin command ended it) still accept its access tokens.
	SessionCacheTTL time.Duration
	// AnonLogPerSecond bounds the log lines of requests without
	// credentials (and refused ones) per second, with bursts of ten times
	// that (default DefaultAnonLogPerSecond; negative: no bound); the
	// lines left out are counted in a summary line.
	AnonLogPerSecond float64
	// LogJSON asks the command for JSON logs; the server uses Logger as given.
	LogJSON bool
	// Logger is the server's logger (default slog.Default()). Records
	// logged with a request's context carry its request id.
	Logger *slog.Logger

	// Storage names the storage provider: StorageEmbedded (the default),
	// StorageMinIO, StorageS3 (AWS or another S3 + IAM service) or
	// StorageTigris. Only the embedded one opens the S3 listener (S3Addr);
	// the others reach StorageEndpoint with the admin credentials
	// StorageAccessKey and StorageSecretKey (from the environment only), and
	// hand clients S3PublicURL (default: the endpoint) and Region.
	Storage string
	// StorageEndpoint is the S3 API of minio (required), s3 (default AWS's
	// endpoint of Region) or tigris (default Tigris's).
	StorageEndpoint string
	// StorageIAMEndpoint is the IAM API of s3 (default AWS's) or tigris
	// (default Tigris's).
	StorageIAMEndpoint string
	// StoragePathStyle addresses s3's buckets in the path (most S3
	// services other than AWS want it).
	StoragePathStyle bool
	// StorageAccessKey and StorageSecretKey are the provider's admin
	// credentials (see SecretsFromEnv).
	StorageAccessKey, StorageSecretKey string
	// StorageNotifyARN (minio only) is a MinIO notification target, such
	// as arn:minio:sqs::bm:webhook for a webhook target aimed at
	// POST /webhooks/storage: each bucket the server creates sends its
	// object events there (see api's storageNotifications for the MinIO
	// side).
	StorageNotifyARN string
	// KeyCacheTTL is how long the embedded S3 endpoint trusts what the
	// store said of an access key (default embedded.DefaultKeyCacheTTL;
	// negative: ask the store on every request). A key revoked through
	// this server is refused at once whatever the TTL; with several
	// replicas, the TTL bounds how long the others still accept it.
	KeyCacheTTL time.Duration

	// AuthMode is how bearer tokens are verified: AuthBuiltin (the default:
	// the built-in OAuth issuer signs them and its routes are served) or
	// AuthOIDC (an external issuer at OIDCIssuer; the built-in issuer's
	// routes are not served).
	AuthMode string
	// OIDCIssuer is the external issuer exactly as in the tokens' iss claim.
	OIDCIssuer string
	// OIDCAudience is what the tokens' aud claim must contain (default
	// OIDCClientID, which defaults to tenantapi.DefaultClientID).
	OIDCAudience, OIDCClientID string
	// OIDCTokenType is how ID tokens are told from access tokens (see
	// auth.Config.TokenType; default auth.TokenTypeAuto).
	OIDCTokenType string
	// OIDCJWKSTTL and OIDCJWKSMaxTTL: how long the issuer's keys are used
	// without a Cache-Control max-age, and at most (see auth.Config).
	OIDCJWKSTTL, OIDCJWKSMaxTTL time.Duration
	// OIDCTenantClaim, OIDCSubscriptionStatusClaim and
	// OIDCSubscriptionTierClaim name the claims (defaults: auth's). A status
	// claim of "-" means the tokens carry none and the store decides.
	OIDCTenantClaim, OIDCSubscriptionStatusClaim, OIDCSubscriptionTierClaim string
	// OIDCAlgs is the allow-list of signature algorithms (default RS256, ES256).
	OIDCAlgs []string
	// OIDCLeeway is the clock skew tolerated (default 60 s).
	OIDCLeeway time.Duration
	// OIDCAutoProvision creates the tenant and its bucket the first time a
	// valid token names an unknown tenant.
	OIDCAutoProvision bool
	// SubscriptionClaimOptional makes a token without a subscription status
	// claim defer to the store.
	SubscriptionClaimOptional bool

	// EventsBuffer is how many change events a GET /tenant/events client
	// may lag before it is dropped (default events.DefaultBuffer).
	EventsBuffer int
	// EventsHeartbeat is the keep-alive comment interval of the event
	// stream (default events.DefaultHeartbeat).
	EventsHeartbeat time.Duration
	// StorageWebhookSecret authenticates POST /webhooks/storage and
	// POST /webhooks/storage/{tenant}; empty disables the routes. From the
	// environment only.
	StorageWebhookSecret string
	// ChangeDelay and ChangeMaxWait coalesce the changes storage reports
	// (the embedded S3 endpoint's own writes, the storage webhooks): a
	// tenant's event goes out once no change came for ChangeDelay, or
	// ChangeMaxWait after the first (defaults events.DefaultDelay and
	// events.DefaultMaxWait; see events.Coalescer).
	ChangeDelay, ChangeMaxWait time.Duration

	// HookCommand is the refresh hook command, split on white space (no
	// shell quoting; use a script for more). It gets the event in
	// BM_TENANT_ID, BM_DEVICE, BM_REASON and BM_EVENT_AT.
	HookCommand string
	// HookWebhookURL receives a signed POST per bucket change, signed with
	// HookWebhookSecret (from the environment only).
	HookWebhookURL, HookWebhookSecret string
	// HookTimeout, HookAttempts, HookBackoff and HookWorkers tune the hook
	// runner (defaults: hooks').
	HookTimeout  time.Duration
	HookAttempts int
	HookBackoff  time.Duration
	HookWorkers  int

	// MintPerHour and MintBurst bound how fast one tenant mints keys
	// (defaults DefaultMintPerHour, DefaultMintBurst); a negative
	// MintPerHour disables the limit.
	MintPerHour float64
	MintBurst   int

	// DeletionRetryInterval is how often failed key deletions at the
	// provider are retried (default 1 min).
	DeletionRetryInterval time.Duration
	// OrphanAfter revokes keys unused that long (0, the default, disables
	// it). Only the embedded provider tracks use; with the others a key in
	// use would look unused.
	OrphanAfter time.Duration
	// OrphanInterval is how often unused keys are looked for (default 1 h).
	OrphanInterval time.Duration
	// FallbackInterval is how often bucket fingerprints are compared to
	// catch changes nobody announced (default 5 min; negative disables).
	FallbackInterval time.Duration

	// Quotas are the storage quotas of the subscription tiers, enforced
	// by the embedded S3 endpoint and reported by GET /tenant/status
	// (nil: storage.DefaultQuotas, Pro 10 GB, Team 100 GB, nothing on
	// Free, no quota on other tiers). MinIO, S3 and Tigris enforce none.
	Quotas *storage.Quotas
	// UploadMaxAge is how long a multipart upload at the embedded
	// endpoint may stay unfinished before it is aborted and its parts
	// deleted (default lifecycle.DefaultUploadMaxAge; negative: never).
	UploadMaxAge time.Duration
}

// Storage providers and auth modes of Config.
const (
	StorageEmbedded = "embedded"
	StorageMinIO    = "minio"
	StorageS3       = "s3"
	StorageTigris   = "tigris"

	AuthBuiltin = "builtin"
	AuthOIDC    = "oidc"
)

// Defaults of the mint rate limit: generous enough for a person setting
// up a few devices (and for the end-to-end tests and the demo), tight
// enough to stop a runaway client.
const (
	DefaultMintPerHour = 30
	DefaultMintBurst   = 10
)

// Defaults of the connection bounds and timeouts of Config.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = time.Minute
	DefaultWriteTimeout      = time.Minute
	DefaultS3ReadTimeout     = 30 * time.Minute
	DefaultS3WriteTimeout    = 30 * time.Minute
	DefaultIdleTimeout       = 2 * time.Minute
	// DefaultMaxConnsPerClient leaves room for several devices behind one
	// address (an agent holds a few API connections and up to a dozen S3
	// ones during a pass).
	DefaultMaxConnsPerClient = 256
	DefaultAnonLogPerSecond  = 20
)

// Defaults of Config.
const (
	DefaultAddr            = "127.0.0.1:8787"
	DefaultS3Addr          = "127.0.0.1:8788"
	DefaultRegion          = "us-east-1"
	DefaultSubscribeURL    = "https://basicmemory.com/subscribe"
	DefaultShutdownTimeout = 10 * time.Second
	// DefaultDrainDelay is --drain-delay's default: a load balancer
	// checking /readyz every second or two sees it fail twice.
	DefaultDrainDelay = 5 * time.Second
	// ReadyTimeout bounds each check of /readyz.
	ReadyTimeout = 2 * time.Second
)

// StoreDSN is the store's DSN of cfg: DB, or the SQLite file in DataDir.
func (cfg Config) StoreDSN() string {
	if cfg.DB != "" {
		return cfg.DB
	}
	return filepath.Join(cfg.DataDir, "bm-server.db")
}

func durDef(v, d time.Duration) time.Duration {
	if v != 0 {
		return v
	}
	return d
}

// Server is a running bm-server.
type Server struct {
	cfg      Config
	log      *slog.Logger
	store    *store.Store
	s3       *s3embed.Server // nil unless the provider is embedded
	provider storage.Provider
	issuer   *issuer.Issuer // nil in OIDC mode
	limits   limit.Backend  // where the rate limits count (see limitBackend)
	auth     api.Authenticator
	hub      *events.Hub
	bus      *pgevents.Bus     // the hub's relay on PostgreSQL; nil on SQLite
	changes  *events.Coalescer // storage changes on their way to hub and hook
	hook     *hooks.Runner
	jobs     *lifecycle.Worker
	apiLn    net.Listener
	s3Ln     net.Listener // nil unless the provider is embedded
	apiURL   string
	s3URL    string
	metrics  *ops.Metrics
	// metricsLn serves /metrics alone (nil unless MetricsAddr is set);
	// metricsToken, if set, is the bearer token /metrics requires.
	metricsLn    net.Listener
	metricsURL   string
	metricsToken string
	conns        *limit.Conns    // the connection bounds of both listeners
	anonLog      *ops.LogLimiter // bounds the log lines of anonymous requests
	// closing is closed when Serve starts shutting down; event streams
	// end then instead of holding the shutdown to its deadline.
	closing chan struct{}
	// draining is set when Serve's context ends, DrainDelay before
	// closing: /readyz answers 503 from then on (see drain.go).
	draining atomic.Bool
	// drainAfter, when set (by tests), replaces time.After for the drain.
	drainAfter func(time.Duration) <-chan time.Time
	// wrap, when set (by tests), wraps the API handler Serve uses.
	wrap func(http.Handler) http.Handler
}

// New opens the store, the storage provider and the listeners. Call Serve to
// start answering, Close to release everything if Serve is never called.
func New(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.DataDir == "" {
		return nil, errors.New("server: a data dir is required")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.S3Addr == "" {
		cfg.S3Addr = DefaultS3Addr
	}
	if cfg.SubscribeURL == "" {
		cfg.SubscribeURL = DefaultSubscribeURL
	}
	if cfg.Storage == "" {
		cfg.Storage = StorageEmbedded
	}
	if cfg.AuthMode == "" {
		cfg.AuthMode = AuthBuiltin
	}
	switch cfg.Storage {
	case StorageEmbedded, StorageMinIO, StorageS3, StorageTigris:
	default:
		return nil, fmt.Errorf("server: unknown storage %q (want embedded, minio, s3 or tigris)", cfg.Storage)
	}
	switch cfg.AuthMode {
	case AuthBuiltin, AuthOIDC:
	default:
		return nil, fmt.Errorf("server: unknown auth mode %q (want builtin or oidc)", cfg.AuthMode)
	}
	cfg.ShutdownTimeout = durDef(cfg.ShutdownTimeout, DefaultShutdownTimeout)
	cfg.ReadHeaderTimeout = durDef(cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	cfg.ReadTimeout = durDef(cfg.ReadTimeout, DefaultReadTimeout)
	cfg.WriteTimeout = durDef(cfg.WriteTimeout, DefaultWriteTimeout)
	cfg.S3ReadTimeout = durDef(cfg.S3ReadTimeout, DefaultS3ReadTimeout)
	cfg.S3WriteTimeout = durDef(cfg.S3WriteTimeout, DefaultS3WriteTimeout)
	cfg.IdleTimeout = durDef(cfg.IdleTimeout, DefaultIdleTimeout)
	cfg.MaxConns = intDef(cfg.MaxConns, limit.DefaultMaxConns())
	cfg.MaxConnsPerClient = intDef(cfg.MaxConnsPerClient, DefaultMaxConnsPerClient)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if _, ok := cfg.Logger.Handler().(ops.ContextHandler); !ok {
		cfg.Logger = slog.New(ops.ContextHandler{Handler: cfg.Logger.Handler()})
	}
	anonLog := ops.NewLogLimiter(floatDef(cfg.AnonLogPerSecond, DefaultAnonLogPerSecond))
	cfg.Logger = slog.New(anonLog.Handler(cfg.Logger.Handler(), anonymousLine))
	s := &Server{cfg: cfg, log: cfg.Logger, metrics: ops.NewMetrics(), closing: make(chan struct{}), anonLog: anonLog,
		conns: limit.NewConns(cfg.MaxConns, cfg.MaxConnsPerClient)}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	s.metrics.Registry().MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bm_connections_open", Help: "Client connections held, API and S3."},
			func() float64 { return float64(s.conns.Open()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bm_connections_refused_total", Help: "Connections refused past --max-conns or --max-conns-per-client."},
			func() float64 { return float64(s.conns.Refused()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bm_log_lines_suppressed_total", Help: "Log lines of anonymous or refused requests left out past --anon-log-per-second."},
			func() float64 { return float64(s.anonLog.Suppressed()) }))
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: data dir: %w", err)
	}
	if s.apiLn, err = net.Listen("tcp", cfg.Addr); err != nil {
		return nil, fmt.Errorf("server: listen api: %w", err)
	}
	s.apiURL = publicURL(cfg.PublicURL, s.apiLn)
	if err := s.openMetrics(); err != nil {
		return nil, err
	}

	if s.store, err = store.Open(ctx, cfg.StoreDSN()); err != nil {
		return nil, fmt.Errorf("server: open store: %w", err)
	}
	if err := s.openStorage(); err != nil {
		return nil, err
	}
	if err := s.openAuth(ctx); err != nil {
		return nil, err
	}
	if err := s.openJobs(ctx); err != nil {
		return nil, err
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

// openStorage builds the configured storage provider; for the embedded
// one it also opens the S3 listener and the endpoint.
func (s *Server) openStorage() error {
	cfg := s.cfg
	region := cfg.Region
	if region == "" {
		region = DefaultRegion
	}
	var err error
	switch cfg.Storage {
	case StorageMinIO:
		if cfg.StorageEndpoint == "" {
			return errors.New("server: storage minio needs --storage-endpoint")
		}
		if cfg.StorageAccessKey == "" || cfg.StorageSecretKey == "" {
			return fmt.Errorf("server: storage minio needs admin credentials in %s and %s", EnvStorageAccessKey, EnvStorageSecretKey)
		}
		s.provider, err = minio.New(minio.Config{
			Endpoint:       cfg.StorageEndpoint,
			PublicEndpoint: cfg.S3PublicURL,
			Region:         region,
			AccessKey:      cfg.StorageAccessKey,
			SecretKey:      cfg.StorageSecretKey,
			Logger:         s.log,
			NotifyARN:      cfg.StorageNotifyARN,
		})
		if err != nil {
			return fmt.Errorf("server: storage minio: %w", err)
		}
		s.s3URL = strings.TrimRight(firstOf(cfg.S3PublicURL, cfg.StorageEndpoint), "/")
		return nil
	case StorageS3, StorageTigris:
		if cfg.StorageNotifyARN != "" {
			return fmt.Errorf("server: --storage-notify-arn is for storage minio, not %s", cfg.Storage)
		}
		if cfg.StorageAccessKey == "" || cfg.StorageSecretKey == "" {
			return fmt.Errorf("server: storage %s needs admin credentials in %s and %s", cfg.Storage, EnvStorageAccessKey, EnvStorageSecretKey)
		}
		c := s3iam.Config{Region: region, PathStyle: cfg.StoragePathStyle, AccessKey: cfg.StorageAccessKey, SecretKey: cfg.StorageSecretKey}
		if cfg.Storage == StorageTigris {
			c = s3iam.Tigris(cfg.StorageAccessKey, cfg.StorageSecretKey)
			if cfg.Region != "" && cfg.Region != DefaultRegion {
				c.Region = cfg.Region
			}
			c.PathStyle = c.PathStyle || cfg.StoragePathStyle
		}
		if cfg.StorageEndpoint != "" {
			c.S3Endpoint = cfg.StorageEndpoint
		}
		if cfg.StorageIAMEndpoint != "" {
			c.IAMEndpoint = cfg.StorageIAMEndpoint
		}
		if cfg.S3PublicURL != "" {
			c.PublicEndpoint = cfg.S3PublicURL
		}
		c.Logger = s.log
		p, err := s3iam.New(c)
		if err != nil {
			return fmt.Errorf("server: storage %s: %w", cfg.Storage, err)
		}
		s.provider = p
		s.s3URL, _ = p.Endpoint()
		return nil
	}

	if cfg.StorageNotifyARN != "" {
		return errors.New("server: --storage-notify-arn is for storage minio; the embedded S3 announces its changes itself")
	}
	if s.s3Ln, err = net.Listen("tcp", cfg.S3Addr); err != nil {
		return fmt.Errorf("server: listen s3: %w", err)
	}
	s.s3URL = publicURL(cfg.S3PublicURL, s.s3Ln)
	master, err := issuer.LoadOrCreateSecret(filepath.Join(cfg.DataDir, "master.key"), 32)
	if err != nil {
		return fmt.Errorf("server: master key: %w", err)
	}
	// The provider checks the endpoint's keys and the endpoint holds the
	// provider's buckets: build one, then the other, then join them.
	prov := embedded.New(nil, master, s.store, s.s3URL, region, s.log)
	s.s3, err = s3embed.New(filepath.Join(cfg.DataDir, "buckets"), prov, cfg.Logger.With("component", "s3"), s3embed.WithRegion(region))
	if err != nil {
		return fmt.Errorf("server: embedded s3: %w", err)
	}
	prov.SetServer(s.s3)
	if cfg.KeyCacheTTL != 0 {
		prov.SetKeyCacheTTL(max(cfg.KeyCacheTTL, 0))
	}
	// A bucket's quota is its tenant's tier's, as the store has it now
	// (cached for as long as a key is: see s3embed.SetQuota).
	s.s3.SetQuota(s.bucketQuota, cfg.KeyCacheTTL)
	s.s3.OnKeyUsed = func(accessKey string) {
		if err := s.store.TouchAccessKey(context.Background(), accessKey, time.Now()); err != nil {
			s.log.Warn("track key use", "err", err)
		}
	}
	// Every write through the endpoint, by any client, is a change of the
	// key's tenant (coalesced: see openJobs).
	s.s3.OnChange = func(c s3embed.Change) {
		rec, ok := prov.KeyRecord(context.Background(), c.AccessKey) // cached by the request's own check
		if !ok || rec.TenantID == "" {
			return
		}
		var keys []string // none: a change of several objects
		if c.Key != "" {
			keys = []string{c.Key}
		}
		s.storageChanges().Add(events.Event{TenantID: rec.TenantID, Device: keyDevice(rec.Description), Reason: "embedded:" + c.Op, Keys: keys}, 1)
	}
	s.provider = prov
	if err := s.metrics.RegisterS3Stats(s.s3.Stats); err != nil {
		return fmt.Errorf("server: metrics: %w", err)
	}
	return nil
}

// quotas are the tiers' storage quotas of the configuration.
func (s *Server) quotas() storage.Quotas {
	if s.cfg.Quotas != nil {
		return *s.cfg.Quotas
	}
	return storage.DefaultQuotas()
}

// bucketQuota is the storage quota of bucket: that of its tenant's
// subscription tier. A bucket no tenant has is not limited (the endpoint
// only serves keys of tenants' buckets).
func (s *Server) bucketQuota(ctx context.Context, bucket string) (int64, error) {
	t, err := s.store.TenantByBucket(ctx, bucket)
	if errors.Is(err, store.ErrNotFound) {
		return storage.Unlimited, nil
	}
	if err != nil {
		return 0, fmt.Errorf("bucket quota: %w", err)
	}
	return s.quotas().For(t.SubscriptionTier), nil
}

// provisionQuota sets the quota of tier on bucket at a provider that holds
// buckets to one itself (MinIO); with the others (the embedded endpoint
// looks the tier up on each write) and for a tier without a quota it does
// nothing.
func (s *Server) provisionQuota(ctx context.Context, bucket, tier string) error {
	qs, ok := s.provider.(storage.QuotaSetter)
	if !ok {
		return nil
	}
	q := s.quotas().For(tier)
	if q < 0 {
		return nil
	}
	if err := qs.SetBucketQuota(ctx, bucket, q); err != nil {
		return fmt.Errorf("bucket quota: %w", err)
	}
	return nil
}

// openAuth builds the built-in issuer, or the external OIDC verifier.
func (s *Server) openAuth(ctx context.Context) error {
	cfg := s.cfg
	if cfg.AuthMode == AuthOIDC {
		if cfg.OIDCIssuer == "" {
			return errors.New("server: auth mode oidc needs --oidc-issuer")
		}
		ac := auth.Config{
			IssuerURL:               cfg.OIDCIssuer,
			Audience:                cfg.OIDCAudience,
			ClientID:                firstOf(cfg.OIDCClientID, tenantapi.DefaultClientID),
			TokenType:               cfg.OIDCTokenType,
			JWKSTTL:                 cfg.OIDCJWKSTTL,
			JWKSMaxTTL:              cfg.OIDCJWKSMaxTTL,
			TenantClaim:             cfg.OIDCTenantClaim,
			SubscriptionStatusClaim: cfg.OIDCSubscriptionStatusClaim,
			SubscriptionTierClaim:   cfg.OIDCSubscriptionTierClaim,
			AllowedAlgs:             cfg.OIDCAlgs,
			Leeway:                  cfg.OIDCLeeway,
			Logger:                  cfg.Logger.With("component", "oidc"),
		}
		if cfg.OIDCAutoProvision {
			provision := auth.StoreProvisioner(s.store, s.provider, nil)
			// Once per tenant and process: the quota of the tier the
			// store has then.
			ac.AutoProvision = func(ctx context.Context, c tenantapi.Claims) error {
				if err := provision(ctx, c); err != nil {
					return err
				}
				t, err := s.store.TenantByID(ctx, c.TenantID)
				if err != nil {
					return fmt.Errorf("provision tenant: %w", err)
				}
				if err := s.provisionQuota(ctx, t.BucketName, t.SubscriptionTier); err != nil {
					return fmt.Errorf("provision tenant: %w", err)
				}
				return nil
			}
		}
		v, err := auth.NewOIDCVerifier(ctx, ac)
		if err != nil {
			return fmt.Errorf("server: oidc: %w", err)
		}
		s.auth = v
		// The mint limit counts for the fleet in OIDC mode too. Its keys
		// are tenant ids, which the database holds in the clear anyway:
		// a fixed hash key does (there is no OAuth secret in this mode).
		if s.limits, err = s.limitBackend([]byte(oidcLimitsKey)); err != nil {
			return fmt.Errorf("server: rate limits: %w", err)
		}
		return nil
	}
	signing, keys, oauthSecret, err := s.issuerKeys(ctx) // see keys.go
	if err != nil {
		return err
	}
	limits, err := s.limitBackend(oauthSecret)
	if err != nil {
		return fmt.Errorf("server: rate limits: %w", err)
	}
	s.limits = limits
	s.issuer, err = issuer.New(issuer.Config{
		IssuerURL:    s.apiURL,
		SigningKey:   signing,
		Keys:         keys,
		Accounts:     accounts{s.store},
		GlobalSecret: oauthSecret,
		Storage:      s.store, // codes and token sessions survive restarts, shared by replicas
		Limits:       cfg.Limits,
		LimitBackend: limits, // shared by replicas on PostgreSQL
		Logger:       cfg.Logger.With("component", "issuer"),
		// The keys a session minted end with it.
		SessionCacheTTL: cfg.SessionCacheTTL,
		OnSessionsEnded: func(ctx context.Context, sids []string, reason string) {
			s.revokeSessionKeys(ctx, sids, reason)
		},
	})
	if err != nil {
		return fmt.Errorf("server: issuer: %w", err)
	}
	s.auth = s.issuer
	return nil
}

// openJobs builds the change-event hub (with its relay through
// PostgreSQL when the store is there, so that every replica's events
// reach every replica's devices), the refresh hook runner and the
// lifecycle worker; Serve runs them.
func (s *Server) openJobs(ctx context.Context) error {
	cfg := s.cfg
	s.hub = events.NewHub(cfg.EventsBuffer)
	if s.store.Dialect() == store.DialectPostgres {
		var err error
		if s.bus, err = pgevents.New(ctx, pgevents.Config{DB: s.store.DB(), Hub: s.hub, Logger: cfg.Logger.With("component", "events")}); err != nil {
			return fmt.Errorf("server: events: %w", err)
		}
	}
	s.changes = events.NewCoalescer(cfg.ChangeDelay, cfg.ChangeMaxWait, s.announceStorageChanges)
	var err error
	s.hook, err = hooks.New(hooks.Config{
		Command:       strings.Fields(cfg.HookCommand),
		WebhookURL:    cfg.HookWebhookURL,
		WebhookSecret: []byte(cfg.HookWebhookSecret),
		Timeout:       cfg.HookTimeout,
		Attempts:      cfg.HookAttempts,
		Backoff:       cfg.HookBackoff,
		Workers:       cfg.HookWorkers,
		Recorder:      s.store,
		Logger:        cfg.Logger.With("component", "hooks"),
	})
	if err != nil {
		return fmt.Errorf("server: hooks: %w", err)
	}
	if cfg.OrphanAfter > 0 && cfg.Storage != StorageEmbedded {
		s.log.Warn("orphan revocation relies on last-used tracking, which only the embedded storage has: keys in use may be revoked",
			"storage", cfg.Storage, "orphan_after", cfg.OrphanAfter.String())
	}
	s.jobs, err = lifecycle.New(lifecycle.Config{
		Store:            s.store,
		Storage:          s.provider,
		RetryInterval:    cfg.DeletionRetryInterval,
		OrphanAfter:      cfg.OrphanAfter,
		OrphanInterval:   cfg.OrphanInterval,
		FallbackInterval: cfg.FallbackInterval,
		UploadMaxAge:     cfg.UploadMaxAge,
		// replicas on one database run each job on one of them
		Holder: replicaName(),
		Events: s.hub,
		Hook:   s.hook,
		Logger: cfg.Logger.With("component", "lifecycle"),
	})
	if err != nil {
		return fmt.Errorf("server: lifecycle: %w", err)
	}
	return nil
}

// agentKeyPrefix starts the description bm-agent gives the keys it mints:
// "bm-agent on DEVICE" (agent/session.go), DEVICE being the device name
// its POST /sync carries and its change-event filter compares.
const agentKeyPrefix = "bm-agent on "

// keyDevice is the device of a key with description desc, if it is an
// agent's ("" otherwise): the embedded S3 endpoint's change events name
// it so that the agent that wrote ignores them, as it ignores the events
// of its own POST /sync.
func keyDevice(desc string) string {
	d, ok := strings.CutPrefix(desc, agentKeyPrefix)
	if !ok {
		return ""
	}
	return d
}

// storageChanges is where the changes storage reports go: the
// coalescer, with the hub told at once that an event is on its way (so
// that a fallback pass meanwhile does not announce the change again).
type storageChanges struct {
	hub *events.Hub
	c   *events.Coalescer
}

func (s *Server) storageChanges() storageChanges { return storageChanges{s.hub, s.changes} }

// Add implements api.ChangeSink.
func (sc storageChanges) Add(ev events.Event, n int) {
	if ev.At.IsZero() {
		ev.At = time.Now().UTC()
	}
	sc.hub.Expect(ev.TenantID, ev.At)
	sc.c.Add(ev, n)
}

// announceStorageChanges tells the tenant's devices and its refresh hook
// about a coalesced burst of changes storage reported (the embedded S3
// endpoint's writes, the storage webhooks), and records it in the audit
// trail: one record per burst, not per object.
func (s *Server) announceStorageChanges(ev events.Event, n int) {
	s.hub.Publish(ev)
	s.hook.Trigger(ev)
	source, _, _ := strings.Cut(ev.Reason, ":")
	if err := s.store.AddAudit(context.Background(), ev.TenantID, api.AuditBucketChanged,
		fmt.Sprintf("source=%s changes=%d device=%q reason=%q", source, n, ev.Device, ev.Reason)); err != nil {
		s.log.Warn("record storage change", "tenant", ev.TenantID, "err", err)
	}
	s.log.Debug("storage changed", "tenant", ev.TenantID, "device", ev.Device, "reason", ev.Reason, "changes", n)
}

// mintLimit is the api's rate limit of cfg's keys per hour.
func (cfg Config) mintLimit() (rate.Limit, int) {
	burst := cfg.MintBurst
	if burst <= 0 {
		burst = DefaultMintBurst
	}
	switch {
	case cfg.MintPerHour < 0:
		return -1, burst
	case cfg.MintPerHour == 0:
		return rate.Limit(DefaultMintPerHour / 3600.0), burst
	default:
		return rate.Limit(cfg.MintPerHour / 3600), burst
	}
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func publicURL(configured string, ln net.Listener) string {
	if configured != "" {
		return strings.TrimRight(configured, "/")
	}
	return "http://" + ln.Addr().String()
}

// URL is the API's base URL (also the OAuth issuer).
func (s *Server) URL() string { return s.apiURL }

// MetricsURL is the base URL of the metrics listener ("" unless
// MetricsAddr is set).
func (s *Server) MetricsURL() string { return s.metricsURL }

// S3URL is the S3 endpoint clients use: the embedded one's URL, or the
// configured provider's public endpoint.
func (s *Server) S3URL() string { return s.s3URL }

// Store is the server's SQL store.
func (s *Server) Store() *store.Store { return s.store }

// S3 is the embedded S3 endpoint (request counters for tests and
// benchmarks); nil with another storage provider.
func (s *Server) S3() *s3embed.Server { return s.s3 }

// Provider is the storage provider.
func (s *Server) Provider() storage.Provider { return s.provider }

// Events is the change-event hub that POST /sync, the storage webhooks,
// the embedded S3 endpoint's writes and the fallback publish to and
// GET /tenant/events streams.
func (s *Server) Events() *events.Hub { return s.hub }

// Jobs is the lifecycle worker (deletion retries, orphans, fallback) that
// Serve runs; its job methods can also be called directly.
func (s *Server) Jobs() *lifecycle.Worker { return s.jobs }

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
	if err := s.provisionQuota(ctx, t.BucketName, t.SubscriptionTier); err != nil {
		return store.Account{}, fmt.Errorf("create account: %w", err)
	}
	a := store.Account{ID: uuid.NewString(), Email: email, PasswordHash: hash, TenantID: tenantID, CreatedAt: t.CreatedAt}
	if err := s.store.CreateTenantWithAccount(ctx, t, a); err != nil {
		return store.Account{}, fmt.Errorf("create account: %w", err)
	}
	_ = s.store.AddAudit(ctx, tenantID, "tenant.created", "bucket "+t.BucketName)
	return a, nil
}

// Handler is the API's HTTP handler: tenant API, issuer (in builtin auth
// mode) and operations.
func (s *Server) Handler() http.Handler {
	return s.endStreamsAtShutdown(ops.Middleware(s.log.With("component", "http"), s.metrics, s.onRequest, s.mux()))
}

// endStreamsAtShutdown ends GET /tenant/events streams when Serve begins
// to shut down, telling their clients to reconnect (see serveStream), so
// that they do not hold the graceful shutdown to its deadline (clients
// reconnect to another replica or after the restart).
func (s *Server) endStreamsAtShutdown(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == tenantapi.PathTenantEvents {
			// A stream outlives the read and write timeouts: the handler
			// sets a deadline per write and sends heartbeats, which find
			// a dead client. (A read deadline passing would cancel the
			// request's context.)
			rc := http.NewResponseController(w)
			_ = rc.SetReadDeadline(time.Time{})
			_ = rc.SetWriteDeadline(time.Time{})
			s.serveStream(w, r, next) // ends it with a reconnect at shutdown
			return
		}
		next.ServeHTTP(w, r)
	})
}

// mux registers every route (see Routes) on a new mux.
func (s *Server) mux() *http.ServeMux {
	mux := http.NewServeMux()
	if s.issuer != nil {
		s.issuer.Register(mux)
	}
	mintRate, burst := s.cfg.mintLimit()
	var minting limit.Limiter
	if s.limits != nil && mintRate >= 0 {
		minting = s.limits.Rate("mint", limit.Rate{PerMinute: float64(mintRate) * 60, Burst: burst})
	}
	h := &api.Handler{
		Store:        s.store,
		Storage:      s.provider,
		Auth:         s.auth,
		Logger:       s.log.With("component", "api"),
		SubscribeURL: s.cfg.SubscribeURL,
		Now:          time.Now,
		OnSync: func(ctx context.Context, tenantID string, req tenantapi.SyncRequest) {
			s.log.Info("bucket changed", "tenant", tenantID, "device", req.Device)
		},
		Events:                    s.hub,
		Hook:                      s.hook,
		WebhookSecret:             s.cfg.StorageWebhookSecret,
		StorageChanges:            s.storageChanges(),
		MintLimit:                 mintRate,
		MintBurst:                 burst,
		MintLimiter:               minting,
		Heartbeat:                 s.cfg.EventsHeartbeat,
		SubscriptionClaimOptional: s.cfg.SubscriptionClaimOptional || s.cfg.OIDCSubscriptionStatusClaim == "-",
	}
	if s.issuer != nil { // an external issuer's tokens carry no session of ours
		h.Sessions = s.issuer
	}
	if s.s3 != nil { // only the embedded endpoint enforces the quotas
		h.Quota = s.quotas().For
	}
	h.Register(mux)
	s.registerOps(mux)
	return mux
}

// Serve answers on the listeners and runs the background jobs (refresh
// hook, lifecycle) until ctx is cancelled, then shuts down gracefully.
// Cancellation is not an error.
func (s *Server) Serve(ctx context.Context) error {
	defer s.Close()
	h := s.Handler()
	if s.wrap != nil {
		h = s.wrap(h)
	}
	jobsCtx, stopJobs := context.WithCancel(ctx)
	defer stopJobs()
	var jobs sync.WaitGroup
	jobs.Go(func() {
		if err := s.hook.Serve(jobsCtx); err != nil {
			s.log.Error("refresh hook runner stopped", "err", err)
		}
	})
	jobs.Go(func() {
		if err := s.jobs.Serve(jobsCtx); err != nil {
			s.log.Error("lifecycle worker stopped", "err", err)
		}
	})
	if s.bus != nil {
		jobs.Go(func() { _ = s.bus.Run(jobsCtx) }) // stopped after the last events are published
	}

	cfg := s.cfg
	servers := []*http.Server{s.httpServer(h, cfg.ReadTimeout, cfg.WriteTimeout)}
	lns := []net.Listener{s.conns.Listen(s.apiLn, apiRefusal)}
	if s.s3 != nil {
		servers = append(servers, s.httpServer(s.s3.Handler(), cfg.S3ReadTimeout, cfg.S3WriteTimeout))
		lns = append(lns, s.conns.Listen(s.s3Ln, s3Refusal))
	}
	if s.metricsLn != nil {
		servers = append(servers, s.httpServer(s.metricsHandler(), cfg.ReadTimeout, cfg.WriteTimeout))
		lns = append(lns, s.conns.Listen(s.metricsLn, apiRefusal))
	}
	errc := make(chan error, len(servers))
	for i, srv := range servers {
		go func() { errc <- srv.Serve(lns[i]) }()
	}
	s.log.Info("bm-server listening", "api", s.apiURL, "s3", s.s3URL, "storage", s.provider.Name(),
		"auth", s.cfg.AuthMode, "hook", s.hook.Enabled(), "data", s.cfg.DataDir,
		"store", s.store.Dialect(), "schema", s.store.SchemaVersion())
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	// Drain (not ready, still serving), stop accepting, end the event
	// streams, let in-flight requests finish within the deadline, then
	// cut what is left.
	s.drain(servers, err != nil)
	s.log.Info("bm-server shutting down", "deadline", s.cfg.ShutdownTimeout.String())
	close(s.closing)
	shutCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Go(func() {
			if serr := srv.Shutdown(shutCtx); serr != nil {
				s.log.Warn("shutdown deadline passed; closing connections", "err", serr)
				_ = srv.Close()
			}
		})
	}
	wg.Wait()
	s.changes.Close() // the last storage changes reach the hook before it stops
	stopJobs()
	jobs.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// anonymousLines are the messages, besides the request lines of
// anonymous requests, that every unauthenticated or refused request
// writes: what a guessing run multiplies (see Config.AnonLogPerSecond).
var anonymousLines = map[string]bool{
	"unauthenticated request":                                true, // api
	"s3embed: request refused":                               true,
	"s3embed: access denied":                                 true,
	"login failed":                                           true, // issuer
	"login refused: bad or missing CSRF token":               true,
	"authorize request refused":                              true,
	"device authorization refused":                           true,
	"device approval: login failed":                          true,
	"device approval refused: bad or missing CSRF token":     true,
	"device decision refused: bad or expired sign-in ticket": true,
}

// anonymousLine reports whether r is a line an anonymous request writes.
func anonymousLine(r slog.Record) bool { return anonymousLines[r.Message] || ops.IsAnonymous(r) }

// Refusals of a connection past the bounds (see limit.Conns): the API's
// error shape, S3's SlowDown (which S3 clients retry after a pause).
var (
	apiRefusal = limit.HTTPRefusal(5*time.Second, "application/json", `{"detail":"too many connections; retry later"}`)
	s3Refusal  = limit.HTTPRefusal(5*time.Second, "application/xml",
		`<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<Error><Code>SlowDown</Code><Message>Too many connections; reduce your request rate.</Message></Error>`)
)

// httpServer is an http.Server of h with the configured timeouts (read
// and write given: the API's or the S3 endpoint's; negative is none).
func (s *Server) httpServer(h http.Handler, read, write time.Duration) *http.Server {
	pos := func(d time.Duration) time.Duration { return max(d, 0) }
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: pos(s.cfg.ReadHeaderTimeout),
		ReadTimeout:       pos(read),
		WriteTimeout:      pos(write),
		IdleTimeout:       pos(s.cfg.IdleTimeout),
		ErrorLog:          slog.NewLogLogger(s.log.With("component", "http").Handler(), slog.LevelWarn),
	}
}

// Close releases the listeners and the store.
func (s *Server) Close() {
	if s.apiLn != nil {
		s.apiLn.Close()
	}
	if s.s3Ln != nil {
		s.s3Ln.Close()
	}
	if s.metricsLn != nil {
		s.metricsLn.Close()
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
	if acc.DisabledAt != nil {
		return "", errors.New("authenticate: account disabled")
	}
	return acc.ID, nil
}

func (a accounts) Claims(ctx context.Context, subject string) (tenantapi.Claims, error) {
	acc, err := a.st.AccountByID(ctx, subject)
	if err != nil {
		return tenantapi.Claims{}, fmt.Errorf("claims: account: %w", err)
	}
	if acc.DisabledAt != nil {
		return tenantapi.Claims{}, errors.New("claims: account disabled")
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

// replicaName names this process among the replicas sharing the database
// (the holder of its job leases): the host, the process and a random part
// so that a restart is another holder.
func replicaName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), uuid.NewString()[:8])
}
