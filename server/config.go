package server

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/basicmachines-co/bm-agent/server/auth"
	"github.com/basicmachines-co/bm-agent/server/events"
	"github.com/basicmachines-co/bm-agent/server/issuer"
	"github.com/basicmachines-co/bm-agent/server/lifecycle"
	"github.com/basicmachines-co/bm-agent/server/storage"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// Configuration comes from four places, in this order of precedence:
// command-line flags, environment variables, a config file and the
// defaults. Every setting is a flag; its environment variable is
// EnvPrefix + the flag name in upper case with dashes as underscores
// (--data-dir: BM_SERVER_DATA_DIR) and its key in the config file (YAML or
// JSON, a flat map) is the flag name. The file is named by --config or
// BM_SERVER_CONFIG. Secrets (passwords, storage credentials, webhook
// secrets, the master key) are read from the environment only (see
// SecretsFromEnv); the master key may instead be a file's
// (--master-key-file).

// EnvPrefix starts the name of every environment variable of bm-server.
const EnvPrefix = "BM_SERVER_"

// Environment variables of the secrets (see SecretsFromEnv). They are not
// flags and a config file may not hold them.
const (
	EnvDemoPassword         = EnvPrefix + "DEMO_PASSWORD"
	EnvStorageAccessKey     = EnvPrefix + "STORAGE_ACCESS_KEY"
	EnvStorageSecretKey     = EnvPrefix + "STORAGE_SECRET_KEY"
	EnvStorageWebhookSecret = EnvPrefix + "STORAGE_WEBHOOK_SECRET"
	EnvHookWebhookSecret    = EnvPrefix + "HOOK_WEBHOOK_SECRET"
	EnvMasterKey            = EnvPrefix + "MASTER_KEY"
)

// secretEnv maps each secret's environment variable to its field.
var secretEnv = map[string]func(*Config) *string{
	EnvDemoPassword:         func(c *Config) *string { return &c.DemoPassword },
	EnvStorageAccessKey:     func(c *Config) *string { return &c.StorageAccessKey },
	EnvStorageSecretKey:     func(c *Config) *string { return &c.StorageSecretKey },
	EnvStorageWebhookSecret: func(c *Config) *string { return &c.StorageWebhookSecret },
	EnvHookWebhookSecret:    func(c *Config) *string { return &c.HookWebhookSecret },
	EnvMasterKey:            func(c *Config) *string { return &c.MasterKey },
}

// SecretsFromEnv fills cfg's secrets from the environment (getenv; nil
// means os.Getenv): the demo password, the storage provider's admin
// credentials, the two webhook secrets and the master key. A variable
// that is unset leaves its field as it is.
func SecretsFromEnv(cfg *Config, getenv func(string) string) {
	if getenv == nil {
		getenv = os.Getenv
	}
	for env, field := range secretEnv {
		if v := getenv(env); v != "" {
			*field(cfg) = v
		}
	}
}

// isSecret reports whether the config file key names a secret.
func isSecret(key string) bool {
	_, ok := secretEnv[EnvName(key)]
	return ok
}

// ConfigFlag is the flag (and file-less setting) naming the config file.
const ConfigFlag = "config"

// envAliases are older environment names still honoured, after the
// canonical one.
var envAliases = map[string][]string{"data-dir": {"BM_SERVER_DATA"}}

// EnvName is the environment variable of the flag named flag.
func EnvName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// BindFlags registers the settings of the API server on fs, with cfg's
// current values as defaults, except the store's (see BindStoreFlags).
func BindFlags(fs *pflag.FlagSet, cfg *Config) {
	def := func(v, d string) string {
		if v != "" {
			return v
		}
		return d
	}
	fs.StringVar(&cfg.Addr, "addr", def(cfg.Addr, DefaultAddr), "API listen address")
	fs.StringVar(&cfg.S3Addr, "s3-addr", def(cfg.S3Addr, DefaultS3Addr), "embedded S3 endpoint listen address")
	fs.StringVar(&cfg.PublicURL, "public-url", cfg.PublicURL, "API base URL as clients see it (default http://ADDR)")
	fs.StringVar(&cfg.S3PublicURL, "s3-public-url", cfg.S3PublicURL, "S3 endpoint URL as clients see it (default http://S3-ADDR)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "listen address serving GET /metrics alone, e.g. 127.0.0.1:9787 (default: none; keep it on loopback or a private network)")
	fs.StringVar(&cfg.MetricsTokenFile, "metrics-token-file", cfg.MetricsTokenFile, "file holding a bearer token GET /metrics requires; without it /metrics is not served on the API listener (404)")
	fs.StringVar(&cfg.SubscribeURL, "subscribe-url", def(cfg.SubscribeURL, DefaultSubscribeURL), "URL shown to tenants without an active subscription")
	fs.StringVar(&cfg.DemoEmail, "demo-email", cfg.DemoEmail, "create this account at start if missing (password from BM_SERVER_DEMO_PASSWORD)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", durDef(cfg.ShutdownTimeout, DefaultShutdownTimeout), "how long in-flight requests may take to finish at shutdown")
	fs.DurationVar(&cfg.DrainDelay, "drain-delay", durDef(cfg.DrainDelay, DefaultDrainDelay), "at shutdown, how long /readyz answers 503 while requests are still served, so that a load balancer takes the server out before it stops accepting connections (0: none)")
	fs.BoolVar(&cfg.LogJSON, "log-json", cfg.LogJSON, "write logs as JSON")

	// limits (negative: none)
	fs.DurationVar(&cfg.ReadHeaderTimeout, "read-header-timeout", durDef(cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout), "time to read a request's header; a new connection silent this long is closed")
	fs.DurationVar(&cfg.ReadTimeout, "read-timeout", durDef(cfg.ReadTimeout, DefaultReadTimeout), "time to read a whole API request")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", durDef(cfg.WriteTimeout, DefaultWriteTimeout), "time to write an API answer (GET /tenant/events is exempt: it has heartbeats)")
	fs.DurationVar(&cfg.S3ReadTimeout, "s3-read-timeout", durDef(cfg.S3ReadTimeout, DefaultS3ReadTimeout), "time to read a whole request at the embedded S3 endpoint (an upload)")
	fs.DurationVar(&cfg.S3WriteTimeout, "s3-write-timeout", durDef(cfg.S3WriteTimeout, DefaultS3WriteTimeout), "time to write an answer at the embedded S3 endpoint (a download)")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", durDef(cfg.IdleTimeout, DefaultIdleTimeout), "keep-alive connections idle this long are closed")
	fs.IntVar(&cfg.MaxConns, "max-conns", cfg.MaxConns, "connections held at once, API and S3 (default: 3/4 of the open-files limit)")
	fs.IntVar(&cfg.MaxConnsPerClient, "max-conns-per-client", intDef(cfg.MaxConnsPerClient, DefaultMaxConnsPerClient), "connections held at once per client address (IPv6: per /64); -1 behind a proxy")
	fs.Float64Var(&cfg.Limits.DeviceAuthPerMinute, "device-auth-per-minute", floatDef(cfg.Limits.DeviceAuthPerMinute, issuer.DefaultDeviceAuthPerMinute), "device logins one client address may start a minute")
	fs.IntVar(&cfg.Limits.DeviceAuthBurst, "device-auth-burst", intDef(cfg.Limits.DeviceAuthBurst, issuer.DefaultDeviceAuthBurst), "device logins one client address may start at once")
	fs.IntVar(&cfg.Limits.MaxPendingDevices, "max-pending-devices", intDef(cfg.Limits.MaxPendingDevices, issuer.DefaultMaxPendingDevices), "device logins pending at once, in all")
	fs.Float64Var(&cfg.Limits.VerifyPerMinute, "device-verify-per-minute", floatDef(cfg.Limits.VerifyPerMinute, issuer.DefaultVerifyPerMinute), "device codes one client address may look up or submit a minute at the verification page")
	fs.Float64Var(&cfg.Limits.CodePerMinute, "device-code-per-minute", floatDef(cfg.Limits.CodePerMinute, issuer.DefaultCodePerMinute), "submissions for one device code a minute, from anyone")
	fs.Float64Var(&cfg.Limits.LoginPerMinute, "login-per-minute", floatDef(cfg.Limits.LoginPerMinute, issuer.DefaultLoginPerMinute), "sign-in attempts one client address may make a minute")
	fs.IntVar(&cfg.Limits.LoginFreeFailures, "login-free-failures", intDef(cfg.Limits.LoginFreeFailures, issuer.DefaultLoginFreeFailures), "wrong passwords for one account before each further one makes it wait (a client address gets twice as many)")
	fs.DurationVar(&cfg.Limits.LoginBackoffMax, "login-backoff-max", durDef(cfg.Limits.LoginBackoffMax, issuer.DefaultLoginBackoffMax), "longest wait after wrong passwords (from 1 s, doubled per failure)")
	fs.DurationVar(&cfg.SessionCacheTTL, "session-cache-ttl", durDef(cfg.SessionCacheTTL, issuer.DefaultSessionCacheTTL), "how long an access token's session is trusted as live without asking the store, except when minting or listing keys (bounds how long another replica accepts an ended session)")
	fs.Float64Var(&cfg.AnonLogPerSecond, "anon-log-per-second", floatDef(cfg.AnonLogPerSecond, DefaultAnonLogPerSecond), "log lines a second of requests without credentials or refused (more are counted in a summary line)")

	// auth
	fs.StringVar(&cfg.AuthMode, "auth-mode", def(cfg.AuthMode, AuthBuiltin), "token verification: builtin (the built-in OAuth issuer) or oidc (an external issuer; the built-in one is not served)")
	fs.StringVar(&cfg.OIDCIssuer, "oidc-issuer", cfg.OIDCIssuer, "external OIDC issuer URL, exactly as in the tokens' iss claim")
	fs.StringVar(&cfg.OIDCAudience, "oidc-audience", cfg.OIDCAudience, "audience the access tokens' aud claim must contain (default: the client id, --oidc-client-id); set it to what the issuer puts in aud for this API (e.g. bm-server, or a WorkOS resource indicator), which also keeps ID tokens out")
	fs.StringVar(&cfg.OIDCTokenType, "oidc-token-type", def(cfg.OIDCTokenType, auth.TokenTypeAuto), "how ID tokens are told from access tokens and refused: auto (ID-token claims, a typ other than at+jwt, or the client as audience without scope/scp/client_id), at+jwt (only RFC 9068 tokens) or jwt (only ID-token claims: for issuers whose access tokens look like ID tokens)")
	fs.DurationVar(&cfg.OIDCJWKSTTL, "oidc-jwks-ttl", durDef(cfg.OIDCJWKSTTL, auth.DefaultJWKSTTL), "how long the issuer's keys are used before they are fetched again, when its JWKS answer has no Cache-Control max-age")
	fs.DurationVar(&cfg.OIDCJWKSMaxTTL, "oidc-jwks-max-ttl", durDef(cfg.OIDCJWKSMaxTTL, auth.DefaultJWKSMaxTTL), "longest the issuer's max-age may keep its keys: how long a key it withdrew may still be accepted")
	fs.StringVar(&cfg.OIDCClientID, "oidc-client-id", cfg.OIDCClientID, "OAuth client id of the agents (default "+tenantapi.DefaultClientID+")")
	fs.StringVar(&cfg.OIDCTenantClaim, "oidc-tenant-claim", def(cfg.OIDCTenantClaim, auth.DefaultTenantClaim), "claim holding the tenant id (org_id for WorkOS organisations; dotted for nested)")
	fs.StringVar(&cfg.OIDCSubscriptionStatusClaim, "oidc-subscription-status-claim", def(cfg.OIDCSubscriptionStatusClaim, auth.DefaultSubscriptionStatusClaim), `claim holding the subscription status ("-": none, the store decides)`)
	fs.StringVar(&cfg.OIDCSubscriptionTierClaim, "oidc-subscription-tier-claim", def(cfg.OIDCSubscriptionTierClaim, auth.DefaultSubscriptionTierClaim), "claim holding the subscription tier")
	fs.StringSliceVar(&cfg.OIDCAlgs, "oidc-algs", cfg.OIDCAlgs, "allowed token signature algorithms (default RS256,ES256)")
	fs.DurationVar(&cfg.OIDCLeeway, "oidc-leeway", durDef(cfg.OIDCLeeway, auth.DefaultLeeway), "clock skew tolerated on exp, nbf and iat")
	fs.BoolVar(&cfg.OIDCAutoProvision, "oidc-auto-provision", cfg.OIDCAutoProvision, "create the tenant and its bucket on the first valid token naming an unknown tenant")
	fs.BoolVar(&cfg.SubscriptionClaimOptional, "subscription-claim-optional", cfg.SubscriptionClaimOptional, "let tokens without a subscription status claim defer to the store")

	// change events and the refresh hook
	fs.IntVar(&cfg.EventsBuffer, "events-buffer", intDef(cfg.EventsBuffer, events.DefaultBuffer), "change events a /tenant/events client may lag before it is dropped")
	fs.DurationVar(&cfg.EventsHeartbeat, "events-heartbeat", durDef(cfg.EventsHeartbeat, events.DefaultHeartbeat), "keep-alive interval of the /tenant/events stream")
	fs.StringVar(&cfg.HookCommand, "hook-command", cfg.HookCommand, "refresh hook command, split on spaces; gets BM_TENANT_ID, BM_DEVICE, BM_REASON, BM_EVENT_AT")
	fs.StringVar(&cfg.HookWebhookURL, "hook-webhook-url", cfg.HookWebhookURL, "refresh hook URL, POSTed a JSON event signed with "+EnvHookWebhookSecret+": X-BM-Timestamp (Unix seconds) and X-BM-Signature-256: sha256=HEX, the HMAC-SHA256 of the timestamp, '.', and the body; refuse one 5 min off your clock or seen before")
	fs.DurationVar(&cfg.HookTimeout, "hook-timeout", durDef(cfg.HookTimeout, 30*time.Second), "time limit of one run of the refresh hook")
	fs.IntVar(&cfg.HookAttempts, "hook-attempts", intDef(cfg.HookAttempts, 3), "tries of the refresh hook per change")
	fs.DurationVar(&cfg.HookBackoff, "hook-backoff", durDef(cfg.HookBackoff, time.Second), "wait after the hook's first failure, doubled after each further one")
	fs.IntVar(&cfg.HookWorkers, "hook-workers", intDef(cfg.HookWorkers, 2), "refresh hooks run at once")

	// credential lifecycle
	fs.Float64Var(&cfg.MintPerHour, "mint-per-hour", floatDef(cfg.MintPerHour, DefaultMintPerHour), "keys one tenant may mint per hour (negative: no limit)")
	fs.IntVar(&cfg.MintBurst, "mint-burst", intDef(cfg.MintBurst, DefaultMintBurst), "keys one tenant may mint at once")
	fs.DurationVar(&cfg.DeletionRetryInterval, "deletion-retry-interval", durDef(cfg.DeletionRetryInterval, time.Minute), "how often failed key deletions at the provider are retried")
	fs.DurationVar(&cfg.OrphanAfter, "orphan-after", cfg.OrphanAfter, "revoke keys unused this long (0: never; needs the embedded storage's last-used tracking)")
	fs.DurationVar(&cfg.OrphanInterval, "orphan-interval", durDef(cfg.OrphanInterval, time.Hour), "how often unused keys are looked for")
	fs.DurationVar(&cfg.FallbackInterval, "fallback-interval", durDef(cfg.FallbackInterval, 5*time.Minute), "how often buckets are checked for changes nobody announced (negative: never)")

	// storage quotas (enforced by the embedded S3 endpoint)
	if cfg.Quotas == nil {
		q := storage.DefaultQuotas()
		cfg.Quotas = &q
	}
	if cfg.Quotas.Tiers == nil {
		cfg.Quotas.Tiers = map[string]int64{}
	}
	for _, tier := range []string{storage.TierFree, storage.TierPro, storage.TierTeam} {
		usage := "storage quota of the " + tier + " tier: a size such as 10GB or 10GiB, 0 (nothing may be stored) or unlimited; enforced by the embedded S3 endpoint only"
		if tier == storage.TierFree {
			usage += " (default 0: Free has no cloud sync)"
		}
		fs.Var(tierQuota{cfg.Quotas, tier}, "quota-"+tier, usage)
	}
	fs.Var(otherQuota{cfg.Quotas}, "quota-other", "storage quota of every other tier (such as basic, the tier of the tenants bm-server creates)")
	fs.DurationVar(&cfg.UploadMaxAge, "upload-max-age", durDef(cfg.UploadMaxAge, lifecycle.DefaultUploadMaxAge), "multipart uploads unfinished this long after they began are aborted and their parts deleted (negative: never)")
}

// tierQuota is the flag of one tier's quota in q.
type tierQuota struct {
	q    *storage.Quotas
	tier string
}

func (v tierQuota) String() string {
	if v.q == nil {
		return ""
	}
	if n, ok := v.q.Tiers[v.tier]; ok {
		return storage.FormatQuota(n)
	}
	return storage.FormatQuota(v.q.Other)
}

func (v tierQuota) Set(s string) error {
	n, err := storage.ParseQuota(s)
	if err != nil {
		return err
	}
	v.q.Tiers[v.tier] = n
	return nil
}

func (tierQuota) Type() string { return "size" }

// otherQuota is the flag of q.Other.
type otherQuota struct{ q *storage.Quotas }

func (v otherQuota) String() string {
	if v.q == nil {
		return ""
	}
	return storage.FormatQuota(v.q.Other)
}

func (v otherQuota) Set(s string) error {
	n, err := storage.ParseQuota(s)
	if err != nil {
		return err
	}
	v.q.Other = n
	return nil
}

func (otherQuota) Type() string { return "size" }

func intDef(v, d int) int {
	if v != 0 {
		return v
	}
	return d
}

func floatDef(v, d float64) float64 {
	if v != 0 {
		return v
	}
	return d
}

// BindStoreFlags registers the settings every command needs: the config
// file, the data dir, the database and the storage provider (the admin
// commands create buckets and revoke keys).
func BindStoreFlags(fs *pflag.FlagSet, cfg *Config) {
	def := func(v, d string) string {
		if v != "" {
			return v
		}
		return d
	}
	fs.String(ConfigFlag, "", "config file, YAML or JSON, keys are flag names (env BM_SERVER_CONFIG)")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "where the database, buckets and keys live")
	fs.StringVar(&cfg.DB, "db", cfg.DB, "database: a SQLite path or sqlite://PATH, or postgres://... (default DATA-DIR/bm-server.db)")
	fs.StringVar(&cfg.MasterKeyFile, "master-key-file", cfg.MasterKeyFile, "file (mode 0600) holding the master key, 32 bytes in base64 or hex (or set "+EnvMasterKey+"): the issuer's signing keys and OAuth secret then live in the database, sealed with it; give every replica the same one")
	fs.StringVar(&cfg.Region, "region", def(cfg.Region, DefaultRegion), "region of the storage endpoint (the embedded one reports it; tigris uses auto unless set)")
	fs.StringVar(&cfg.Storage, "storage", def(cfg.Storage, StorageEmbedded), "storage provider: embedded, minio, s3 or tigris (admin credentials in "+EnvStorageAccessKey+" and "+EnvStorageSecretKey+")")
	fs.StringVar(&cfg.StorageEndpoint, "storage-endpoint", cfg.StorageEndpoint, "S3 API URL of minio (required), s3 or tigris (default: AWS's or Tigris's)")
	fs.StringVar(&cfg.StorageIAMEndpoint, "storage-iam-endpoint", cfg.StorageIAMEndpoint, "IAM API URL of s3 or tigris (default: AWS's or Tigris's)")
	fs.BoolVar(&cfg.StoragePathStyle, "storage-path-style", cfg.StoragePathStyle, "address s3 buckets path-style (most non-AWS services)")
	fs.StringVar(&cfg.StorageNotifyARN, "storage-notify-arn", cfg.StorageNotifyARN, "minio: notification target new buckets send their object events to, e.g. arn:minio:sqs::bm:webhook for a webhook aimed at /webhooks/storage")
}

// ResolveConfig fills the flags of fs that were not given on the command
// line from the environment (getenv; nil means os.Getenv), then from the
// config file. A key of the file that names no flag is an error, so is a
// value a flag does not accept.
func ResolveConfig(fs *pflag.FlagSet, getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	path := ""
	if f := fs.Lookup(ConfigFlag); f != nil && f.Changed {
		path = f.Value.String()
	} else {
		path = getenv(EnvName(ConfigFlag))
	}
	file := map[string]any{}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read config: %w", err)
		}
		if err := yaml.Unmarshal(b, &file); err != nil {
			return fmt.Errorf("read config %s: %w", path, err)
		}
	}
	var unknown []string
	for k := range file {
		if isSecret(k) {
			return fmt.Errorf("read config %s: %s is a secret: set it in %s, never in a file", path, k, EnvName(k))
		}
		if k == ConfigFlag || (fs.Lookup(k) == nil && !isSetting(k)) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("read config %s: unknown settings %s", path, strings.Join(unknown, ", "))
	}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == ConfigFlag || f.Name == "help" {
			return
		}
		for _, env := range append([]string{EnvName(f.Name)}, envAliases[f.Name]...) {
			if v := getenv(env); v != "" {
				if err := fs.Set(f.Name, v); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", env, err))
				}
				return
			}
		}
		if v, ok := file[f.Name]; ok {
			if err := fs.Set(f.Name, fileValue(v)); err != nil {
				errs = append(errs, fmt.Errorf("config %s: %s: %w", path, f.Name, err))
			}
		}
	})
	return errors.Join(errs...)
}

// fileValue renders a value of the config file as a flag would read it.
func fileValue(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case float64: // JSON numbers; integers print without an exponent
		if v == float64(int64(v)) {
			return fmt.Sprint(int64(v))
		}
		return fmt.Sprint(v)
	case []any: // a list, for a list flag (--oidc-algs): comma-separated
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = fileValue(e)
		}
		return strings.Join(parts, ",")
	default:
		return fmt.Sprint(v)
	}
}

// isSetting reports whether name is a setting of any bm-server command, so
// that one config file serves the server and the admin commands alike.
func isSetting(name string) bool {
	fs := pflag.NewFlagSet("all", pflag.ContinueOnError)
	var cfg Config
	BindFlags(fs, &cfg)
	BindStoreFlags(fs, &cfg)
	return fs.Lookup(name) != nil
}
