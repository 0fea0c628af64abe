// Package minio is the storage.Provider over a MinIO server: buckets are
// made with minio-go using the admin (root) credentials, and each minted key
// is a MinIO service account of the admin user with an inline policy that
// restricts it to one bucket.
//
// The inline policy (see storage.BucketPolicy) allows, on arn:aws:s3:::BUCKET,
// s3:ListBucket and s3:ListBucketMultipartUploads, and on
// arn:aws:s3:::BUCKET/*, s3:GetObject, s3:PutObject, s3:DeleteObject,
// s3:AbortMultipartUpload and s3:ListMultipartUploadParts. The three
// multipart actions are there because rclone uploads files above its
// upload cutoff (200 MiB by default) in parts and aborts a failed upload;
// creating and completing a multipart upload are covered by s3:PutObject,
// HEAD and server-side copy (rclone's rename) by s3:GetObject and
// s3:PutObject. A key can neither create nor delete buckets nor see any
// other bucket.
//
// Revoking a key deletes its service account; MinIO rejects the key on the
// next request.
//
// With Config.NotifyARN, each bucket the provider creates sends its object
// events to that MinIO notification target (bm-server's storage webhook,
// see the server's POST /webhooks/storage).
//
// SetBucketQuota (storage.QuotaSetter) sets a bucket's hard quota at the
// MinIO server, which then refuses writes past it with its own error
// (XMinioAdminBucketQuotaExceeded); bm-server sets the tier's quota when it
// provisions a tenant's bucket. The provider reports no usage (it is not a
// storage.UsageReporter: MinIO's figure comes from its scanner and lags).
package minio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/minio/madmin-go/v3"
	miniogo "github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/notification"

	"github.com/basicmachines-co/bm-agent/server/storage"
)

// DefaultRegion is the region used when none is configured (MinIO's own
// default).
const DefaultRegion = "us-east-1"

// Config is what the provider needs to reach a MinIO server.
type Config struct {
	// Endpoint is the MinIO server's URL, http:// or https://, host and
	// port only (e.g. "http://127.0.0.1:9000").
	Endpoint string
	// PublicEndpoint is the URL handed to clients with their keys; empty
	// means Endpoint.
	PublicEndpoint string
	// Region is the region clients sign with; empty means "us-east-1".
	Region string
	// AccessKey and SecretKey are the admin credentials (MINIO_ROOT_USER and
	// MINIO_ROOT_PASSWORD, or a user allowed to manage buckets and service
	// accounts).
	AccessKey, SecretKey string
	// Transport is the HTTP transport for every request; nil means the
	// default.
	Transport http.RoundTripper
	// Logger is where the provider logs (minted and revoked keys); nil
	// means nowhere.
	Logger *slog.Logger
	// NotifyARN, if set, is a notification target of the MinIO server
	// (arn:minio:sqs::ID:webhook for `notify_webhook:ID`): CreateBucket has
	// each bucket send its object created and removed events there, as
	// `mc event add ALIAS/BUCKET ARN --event put,delete` does.
	NotifyARN string
}

// Provider is a storage.Provider over MinIO.
type Provider struct {
	cfg    Config
	host   string
	secure bool
	s3     *miniogo.Client
	admin  *madmin.AdminClient
	log    *slog.Logger
	notify *notification.Arn // nil without NotifyARN
}

var (
	_ storage.Provider    = (*Provider)(nil)
	_ storage.QuotaSetter = (*Provider)(nil)
)

// New checks cfg and builds the S3 and admin clients. It sends no request.
func New(cfg Config) (*Provider, error) {
	u, err := url.Parse(strings.TrimSuffix(cfg.Endpoint, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("minio: new: endpoint %q must be http(s)://host[:port]", cfg.Endpoint)
	}
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return nil, errors.New("minio: new: admin access key and secret key are required")
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	var notify *notification.Arn
	if cfg.NotifyARN != "" {
		arn, err := notification.NewArnFromString(cfg.NotifyARN)
		if err != nil {
			return nil, fmt.Errorf("minio: new: notify ARN %q: %w", cfg.NotifyARN, err)
		}
		notify = &arn
	}
	cfg.Endpoint = u.Scheme + "://" + u.Host
	if cfg.PublicEndpoint == "" {
		cfg.PublicEndpoint = cfg.Endpoint
	}
	cfg.PublicEndpoint = strings.TrimSuffix(cfg.PublicEndpoint, "/")
	secure := u.Scheme == "https"
	s3c, err := miniogo.New(u.Host, &miniogo.Options{
		Creds:     credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:    secure,
		Region:    cfg.Region,
		Transport: cfg.Transport,
	})
	if err != nil {
		return nil, fmt.Errorf("minio: new s3 client: %w", err)
	}
	adm, err := madmin.NewWithOptions(u.Host, &madmin.Options{
		Creds:     credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:    secure,
		Transport: cfg.Transport,
	})
	if err != nil {
		return nil, fmt.Errorf("minio: new admin client: %w", err)
	}
	return &Provider{
		cfg:    cfg,
		host:   u.Host,
		secure: secure,
		s3:     s3c,
		admin:  adm,
		log:    storage.Logger(cfg.Logger, "storage/minio"),
		notify: notify,
	}, nil
}

// Name implements storage.Provider.
func (p *Provider) Name() string { return "minio" }

// Endpoint implements storage.Provider.
func (p *Provider) Endpoint() (url, region string) { return p.cfg.PublicEndpoint, p.cfg.Region }

// CreateBucket implements storage.Provider; a bucket the admin already owns
// is fine. With Config.NotifyARN the bucket's object events go to that
// target (an unknown target is an error: MinIO refuses the configuration).
func (p *Provider) CreateBucket(ctx context.Context, bucket string) error {
	err := p.s3.MakeBucket(ctx, bucket, miniogo.MakeBucketOptions{Region: p.cfg.Region})
	if err != nil && miniogo.ToErrorResponse(err).Code != "BucketAlreadyOwnedByYou" {
		return fmt.Errorf("minio: create bucket %q: %w", bucket, err)
	}
	if err := p.notifyBucket(ctx, bucket); err != nil {
		return fmt.Errorf("minio: create bucket %q: %w", bucket, err)
	}
	return nil
}

// SetBucketQuota implements storage.QuotaSetter: a hard quota of bytes on
// bucket (storage.Unlimited removes it), as `mc quota set ALIAS/BUCKET
// --size N` does.
func (p *Provider) SetBucketQuota(ctx context.Context, bucket string, bytes int64) error {
	q := &madmin.BucketQuota{}
	if bytes >= 0 {
		n := uint64(bytes)
		q = &madmin.BucketQuota{Size: n, Quota: n, Type: madmin.HardQuota}
	}
	if err := p.admin.SetBucketQuota(ctx, bucket, q); err != nil {
		return fmt.Errorf("minio: set quota of bucket %q: %w", bucket, err)
	}
	return nil
}

// notifyBucket has bucket send its object created and removed events to
// the NotifyARN target, unless it already sends them there, keeping the
// bucket's other notification rules.
func (p *Provider) notifyBucket(ctx context.Context, bucket string) error {
	if p.notify == nil {
		return nil
	}
	conf, err := p.s3.GetBucketNotification(ctx, bucket)
	if err != nil {
		return fmt.Errorf("get notification: %w", err)
	}
	for _, q := range conf.QueueConfigs {
		if q.Queue == p.notify.String() {
			return nil
		}
	}
	q := notification.NewConfig(*p.notify)
	q.AddEvents(notification.ObjectCreatedAll, notification.ObjectRemovedAll)
	conf.AddQueue(q)
	if err := p.s3.SetBucketNotification(ctx, bucket, conf); err != nil {
		return fmt.Errorf("notify %s: %w", p.notify, err)
	}
	p.log.Info("bucket notifications on", "bucket", bucket, "target", p.notify.String())
	return nil
}

// DeleteBucket implements storage.Provider. The bucket must be empty; a
// missing bucket is storage.ErrNotFound.
func (p *Provider) DeleteBucket(ctx context.Context, bucket string) error {
	err := p.s3.RemoveBucket(ctx, bucket)
	if err != nil {
		if miniogo.ToErrorResponse(err).Code == "NoSuchBucket" {
			return fmt.Errorf("minio: delete bucket %q: %w", bucket, storage.ErrNotFound)
		}
		return fmt.Errorf("minio: delete bucket %q: %w", bucket, err)
	}
	return nil
}

// ListBuckets implements storage.Provider.
func (p *Provider) ListBuckets(ctx context.Context) ([]string, error) {
	infos, err := p.s3.ListBuckets(ctx)
	if err != nil {
		return nil, fmt.Errorf("minio: list buckets: %w", err)
	}
	names := make([]string, 0, len(infos))
	for _, b := range infos {
		names = append(names, b.Name)
	}
	return names, nil
}

// MintKey implements storage.Provider: a service account whose inline
// policy is storage.BucketPolicy(bucket). A missing bucket is storage.ErrNotFound.
// Ref is the service account's access key.
func (p *Provider) MintKey(ctx context.Context, bucket string) (storage.Key, error) {
	ok, err := p.s3.BucketExists(ctx, bucket)
	if err != nil {
		return storage.Key{}, fmt.Errorf("minio: mint key: check bucket %q: %w", bucket, err)
	}
	if !ok {
		return storage.Key{}, fmt.Errorf("minio: mint key for bucket %q: %w", bucket, storage.ErrNotFound)
	}
	policy, err := storage.BucketPolicy(bucket)
	if err != nil {
		return storage.Key{}, fmt.Errorf("minio: mint key: %w", err)
	}
	desc := "bm-agent key for bucket " + bucket
	if len(desc) > 256 {
		desc = desc[:256]
	}
	creds, err := p.admin.AddServiceAccount(ctx, madmin.AddServiceAccountReq{
		Policy:      policy,
		Description: desc,
	})
	if err != nil {
		return storage.Key{}, fmt.Errorf("minio: mint key: add service account: %w", err)
	}
	p.log.Info("minted bucket key", "bucket", bucket, "access_key", creds.AccessKey)
	return storage.Key{AccessKey: creds.AccessKey, SecretKey: creds.SecretKey, Ref: creds.AccessKey}, nil
}

// RevokeKey implements storage.Provider: it deletes the service account
// named by key.Ref (key.AccessKey when Ref is empty). A service account
// that is already gone is success.
func (p *Provider) RevokeKey(ctx context.Context, key storage.Key) error {
	name := key.Ref
	if name == "" {
		name = key.AccessKey
	}
	if name == "" {
		return errors.New("minio: revoke key: no access key")
	}
	err := p.admin.DeleteServiceAccount(ctx, name)
	if err != nil && !serviceAccountGone(err) {
		return fmt.Errorf("minio: revoke key %s: %w", name, err)
	}
	p.log.Info("revoked bucket key", "access_key", name)
	return nil
}

// serviceAccountGone reports whether err says the service account does not
// exist.
func serviceAccountGone(err error) bool {
	var resp madmin.ErrorResponse
	if !errors.As(err, &resp) {
		return false
	}
	switch resp.Code {
	case "XMinioAdminServiceAccountNotFound", "XMinioAdminNoSuchServiceAccount", "XMinioAdminNoSuchUser":
		return true
	case "XMinioInvalidIAMCredentials":
		// MinIO answers a missing service account with this code and a
		// 404; the same code with a 403 means "not eligible", and madmin
		// keeps only the message to tell them apart.
		return strings.Contains(strings.ToLower(resp.Message), "not found")
	}
	return false
}

// TestKey implements storage.Provider: it lists at most one object of
// bucket with key.
func (p *Provider) TestKey(ctx context.Context, key storage.Key, bucket string) error {
	c, err := miniogo.New(p.host, &miniogo.Options{
		Creds:     credentials.NewStaticV4(key.AccessKey, key.SecretKey, ""),
		Secure:    p.secure,
		Region:    p.cfg.Region,
		Transport: p.cfg.Transport,
	})
	if err != nil {
		return fmt.Errorf("minio: test key: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The first item is an object or the listing's error; stop there.
	obj, ok := <-c.ListObjects(ctx, bucket, miniogo.ListObjectsOptions{MaxKeys: 1})
	if ok && obj.Err != nil {
		return fmt.Errorf("minio: test key on bucket %q: %w", bucket, obj.Err)
	}
	return nil
}
