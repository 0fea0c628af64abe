// Package s3iam is the storage.Provider over an S3 service with an IAM API:
// Tigris (S3 at https://fly.storage.tigris.dev, IAM at
// https://iam.storage.tigris.dev, region "auto") or AWS (the SDK's default
// endpoints for a region). Buckets are made with the admin credentials; each
// minted key belongs to its own IAM user, as SPEC-8 describes:
//
//	CreateUser → CreatePolicy (storage.BucketPolicy(bucket)) → AttachUserPolicy → CreateAccessKey
//
// and revoking a key undoes all four:
//
//	DeleteAccessKey (every key of the user) → DetachUserPolicy → DeletePolicy → DeleteUser
//
// Each revoke step treats "already gone" (IAM's NoSuchEntity) as done, so a
// revocation that failed half-way converges when retried. A mint that fails
// half-way undoes what it created; if even that fails, the error comes with
// a Key whose Ref names the leftovers, for the caller to revoke later.
//
// Key.Ref is a URL query string: v=1&user=NAME&policy=ARN&key=ACCESSKEYID.
//
// S3 has no bucket quota: bm-server's storage quotas are enforced by its
// embedded S3 endpoint only, and this provider reports no usage.
package s3iam

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/basicmachines-co/bm-agent/server/storage"
)

// Tigris endpoints and region.
const (
	TigrisS3Endpoint  = "https://fly.storage.tigris.dev"
	TigrisIAMEndpoint = "https://iam.storage.tigris.dev"
	TigrisRegion      = "auto"
)

// DefaultRegion is the region used when none is configured.
const DefaultRegion = "us-east-1"

// cleanupTimeout bounds the undoing of a mint that failed half-way.
const cleanupTimeout = 30 * time.Second

// DefaultNamePrefix starts the names of the IAM users and policies the
// provider creates.
const DefaultNamePrefix = "bm-agent-"

// Config is what the provider needs to reach the S3 and IAM services.
type Config struct {
	// S3Endpoint is the S3 API URL; empty means AWS's endpoint for Region.
	S3Endpoint string
	// IAMEndpoint is the IAM API URL; empty means AWS's global IAM endpoint.
	IAMEndpoint string
	// PublicEndpoint is the S3 URL handed to clients with their keys; empty
	// means S3Endpoint, or https://s3.REGION.amazonaws.com.
	PublicEndpoint string
	// Region signs the requests and is handed to clients; empty means
	// "us-east-1". Tigris uses "auto".
	Region string
	// PathStyle makes S3 requests path-style (bucket in the path), which
	// most S3-compatible services other than AWS want.
	PathStyle bool
	// AccessKey and SecretKey are the admin credentials: allowed to create
	// buckets, IAM users, policies and access keys.
	AccessKey, SecretKey string
	// NamePrefix starts the IAM user and policy names; empty means
	// DefaultNamePrefix.
	NamePrefix string
	// HTTPClient sends every request; nil means the SDK's default.
	HTTPClient *http.Client
	// Logger is where the provider logs (minted and revoked keys, a
	// failed cleanup); nil means nowhere.
	Logger *slog.Logger
}

// Tigris returns the Config for Tigris with the given admin credentials.
func Tigris(accessKey, secretKey string) Config {
	return Config{
		S3Endpoint:  TigrisS3Endpoint,
		IAMEndpoint: TigrisIAMEndpoint,
		Region:      TigrisRegion,
		AccessKey:   accessKey,
		SecretKey:   secretKey,
	}
}

// Provider is a storage.Provider over S3 + IAM.
type Provider struct {
	cfg Config
	s3  *s3.Client
	iam *iam.Client
	log *slog.Logger
}

var _ storage.Provider = (*Provider)(nil)

// New checks cfg and builds the S3 and IAM clients. It sends no request.
func New(cfg Config) (*Provider, error) {
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return nil, errors.New("s3iam: new: admin access key and secret key are required")
	}
	for _, e := range []string{cfg.S3Endpoint, cfg.IAMEndpoint, cfg.PublicEndpoint} {
		if e == "" {
			continue
		}
		if u, err := url.Parse(e); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("s3iam: new: endpoint %q must be an http(s) URL", e)
		}
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if cfg.NamePrefix == "" {
		cfg.NamePrefix = DefaultNamePrefix
	}
	cfg.S3Endpoint = strings.TrimSuffix(cfg.S3Endpoint, "/")
	cfg.IAMEndpoint = strings.TrimSuffix(cfg.IAMEndpoint, "/")
	if cfg.PublicEndpoint == "" {
		cfg.PublicEndpoint = cfg.S3Endpoint
		if cfg.PublicEndpoint == "" {
			cfg.PublicEndpoint = "https://s3." + cfg.Region + ".amazonaws.com"
		}
	}
	cfg.PublicEndpoint = strings.TrimSuffix(cfg.PublicEndpoint, "/")
	creds := credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, "")
	return &Provider{
		cfg: cfg,
		s3:  s3.New(s3Options(cfg, creds)),
		iam: iam.New(iam.Options{
			Region:       cfg.Region,
			BaseEndpoint: optional(cfg.IAMEndpoint),
			Credentials:  creds,
			HTTPClient:   httpClient(cfg.HTTPClient),
		}),
		log: storage.Logger(cfg.Logger, "storage/s3iam"),
	}, nil
}

func s3Options(cfg Config, creds aws.CredentialsProvider) s3.Options {
	o := s3.Options{
		Region:       cfg.Region,
		BaseEndpoint: optional(cfg.S3Endpoint),
		UsePathStyle: cfg.PathStyle,
		Credentials:  creds,
		HTTPClient:   httpClient(cfg.HTTPClient),
	}
	if cfg.S3Endpoint != "" {
		// S3-compatible services do not all know the SDK's default
		// request checksums.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}
	return o
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}

// httpClient keeps a nil *http.Client from becoming a non-nil interface.
func httpClient(c *http.Client) s3.HTTPClient {
	if c == nil {
		return nil
	}
	return c
}

// Name implements storage.Provider.
func (p *Provider) Name() string { return "s3" }

// Endpoint implements storage.Provider.
func (p *Provider) Endpoint() (url, region string) { return p.cfg.PublicEndpoint, p.cfg.Region }

// CreateBucket implements storage.Provider; a bucket the admin already owns
// is fine.
func (p *Provider) CreateBucket(ctx context.Context, bucket string) error {
	in := &s3.CreateBucketInput{Bucket: aws.String(bucket)}
	if r := p.cfg.Region; r != "us-east-1" && r != TigrisRegion {
		in.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{
			LocationConstraint: s3types.BucketLocationConstraint(r),
		}
	}
	_, err := p.s3.CreateBucket(ctx, in)
	if err != nil {
		if errorCode(err) == "BucketAlreadyOwnedByYou" {
			return nil
		}
		return fmt.Errorf("s3iam: create bucket %q: %w", bucket, err)
	}
	return nil
}

// DeleteBucket implements storage.Provider. The bucket must be empty; a
// missing bucket is storage.ErrNotFound.
func (p *Provider) DeleteBucket(ctx context.Context, bucket string) error {
	_, err := p.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)})
	if err != nil {
		if errorCode(err) == "NoSuchBucket" {
			return fmt.Errorf("s3iam: delete bucket %q: %w", bucket, storage.ErrNotFound)
		}
		return fmt.Errorf("s3iam: delete bucket %q: %w", bucket, err)
	}
	return nil
}

// ListBuckets implements storage.Provider.
func (p *Provider) ListBuckets(ctx context.Context) ([]string, error) {
	var names []string
	pager := s3.NewListBucketsPaginator(p.s3, &s3.ListBucketsInput{})
	for pager.HasMorePages() {
		out, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("s3iam: list buckets: %w", err)
		}
		for _, b := range out.Buckets {
			names = append(names, aws.ToString(b.Name))
		}
	}
	return names, nil
}

// ref is what RevokeKey needs: the user, its policy and its access key.
type ref struct {
	User, PolicyARN, AccessKeyID string
}

func (r ref) String() string {
	v := url.Values{"v": {"1"}, "user": {r.User}}
	if r.PolicyARN != "" {
		v.Set("policy", r.PolicyARN)
	}
	if r.AccessKeyID != "" {
		v.Set("key", r.AccessKeyID)
	}
	return v.Encode()
}

func parseRef(s string) (ref, error) {
	v, err := url.ParseQuery(s)
	if err != nil || v.Get("v") != "1" || v.Get("user") == "" {
		return ref{}, fmt.Errorf("bad key ref %q", s)
	}
	return ref{User: v.Get("user"), PolicyARN: v.Get("policy"), AccessKeyID: v.Get("key")}, nil
}

// names returns a fresh IAM user (and policy) name for a key of bucket:
// prefix, as much of the bucket name as fits, and 12 random characters;
// at most 64 characters, IAM's limit for user names.
func (p *Provider) names(bucket string) string {
	id := strings.ToLower(rand.Text()[:12])
	room := 64 - len(p.cfg.NamePrefix) - 1 - len(id)
	b := bucket
	if room < 0 {
		room = 0
	}
	if len(b) > room {
		b = b[:room]
	}
	if b == "" {
		return p.cfg.NamePrefix + id
	}
	return p.cfg.NamePrefix + b + "-" + id
}

// MintKey implements storage.Provider: a new IAM user with a policy
// limited to bucket and one access key. A missing bucket is
// storage.ErrNotFound. See the package doc for what a failure leaves.
func (p *Provider) MintKey(ctx context.Context, bucket string) (storage.Key, error) {
	doc, err := storage.BucketPolicy(bucket)
	if err != nil {
		return storage.Key{}, fmt.Errorf("s3iam: mint key: %w", err)
	}
	if _, err := p.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
		if isNotFound(err) {
			return storage.Key{}, fmt.Errorf("s3iam: mint key for bucket %q: %w", bucket, storage.ErrNotFound)
		}
		return storage.Key{}, fmt.Errorf("s3iam: mint key: check bucket %q: %w", bucket, err)
	}
	name := p.names(bucket)
	r := ref{User: name}
	if _, err := p.iam.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name)}); err != nil {
		return storage.Key{}, fmt.Errorf("s3iam: mint key: create user: %w", err)
	}
	fail := func(step string, err error) (storage.Key, error) {
		err = fmt.Errorf("s3iam: mint key: %s: %w", step, err)
		// Undo with a context of its own: ctx may be what failed.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if cerr := p.revoke(cctx, r); cerr != nil {
			p.log.Warn("mint failed and its cleanup too: IAM user left behind",
				"user", r.User, "err", cerr)
			return storage.Key{Ref: r.String()}, errors.Join(err, fmt.Errorf("s3iam: mint key: cleanup: %w", cerr))
		}
		return storage.Key{}, err
	}
	pol, err := p.iam.CreatePolicy(ctx, &iam.CreatePolicyInput{
		PolicyName:     aws.String(name),
		PolicyDocument: aws.String(string(doc)),
		Description:    aws.String("bm-agent key for bucket " + bucket),
	})
	if err != nil {
		return fail("create policy", err)
	}
	if pol.Policy == nil || aws.ToString(pol.Policy.Arn) == "" {
		return fail("create policy", errors.New("no policy ARN in the answer"))
	}
	r.PolicyARN = aws.ToString(pol.Policy.Arn)
	if _, err := p.iam.AttachUserPolicy(ctx, &iam.AttachUserPolicyInput{
		UserName: aws.String(name), PolicyArn: aws.String(r.PolicyARN),
	}); err != nil {
		return fail("attach user policy", err)
	}
	ak, err := p.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(name)})
	if err != nil {
		return fail("create access key", err)
	}
	if ak.AccessKey == nil || aws.ToString(ak.AccessKey.AccessKeyId) == "" || aws.ToString(ak.AccessKey.SecretAccessKey) == "" {
		return fail("create access key", errors.New("no key in the answer"))
	}
	r.AccessKeyID = aws.ToString(ak.AccessKey.AccessKeyId)
	p.log.Info("minted bucket key", "bucket", bucket, "user", name, "access_key", r.AccessKeyID)
	return storage.Key{
		AccessKey: r.AccessKeyID,
		SecretKey: aws.ToString(ak.AccessKey.SecretAccessKey),
		Ref:       r.String(),
	}, nil
}

// RevokeKey implements storage.Provider: it deletes the user's access
// keys, detaches and deletes its policy and deletes the user. Parts that
// are already gone count as done.
func (p *Provider) RevokeKey(ctx context.Context, key storage.Key) error {
	r, err := parseRef(key.Ref)
	if err != nil {
		return fmt.Errorf("s3iam: revoke key %s: %w", key.AccessKey, err)
	}
	if err := p.revoke(ctx, r); err != nil {
		return fmt.Errorf("s3iam: revoke key %s: %w", key.AccessKey, err)
	}
	p.log.Info("revoked bucket key", "user", r.User, "access_key", key.AccessKey)
	return nil
}

// revoke removes everything r names, in the order IAM requires (a user
// with keys or attached policies cannot be deleted, nor an attached
// policy). It stops at the first real error; a retry picks up from there.
func (p *Provider) revoke(ctx context.Context, r ref) error {
	user := aws.String(r.User)
	keys := []string{}
	if r.AccessKeyID != "" {
		keys = append(keys, r.AccessKeyID)
	}
	// A key created by a CreateAccessKey whose answer was lost is not in
	// r: list them all.
	list, err := p.iam.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: user})
	switch {
	case gone(err):
	case err != nil:
		return fmt.Errorf("list access keys: %w", err)
	default:
		for _, m := range list.AccessKeyMetadata {
			if id := aws.ToString(m.AccessKeyId); id != r.AccessKeyID {
				keys = append(keys, id)
			}
		}
	}
	for _, id := range keys {
		_, err := p.iam.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: user, AccessKeyId: aws.String(id)})
		if err != nil && !gone(err) {
			return fmt.Errorf("delete access key %s: %w", id, err)
		}
	}
	if r.PolicyARN != "" {
		_, err := p.iam.DetachUserPolicy(ctx, &iam.DetachUserPolicyInput{UserName: user, PolicyArn: aws.String(r.PolicyARN)})
		if err != nil && !gone(err) {
			return fmt.Errorf("detach user policy: %w", err)
		}
		_, err = p.iam.DeletePolicy(ctx, &iam.DeletePolicyInput{PolicyArn: aws.String(r.PolicyARN)})
		if err != nil && !gone(err) {
			return fmt.Errorf("delete policy: %w", err)
		}
	}
	if _, err := p.iam.DeleteUser(ctx, &iam.DeleteUserInput{UserName: user}); err != nil && !gone(err) {
		return fmt.Errorf("delete user: %w", err)
	}
	return nil
}

// TestKey implements storage.Provider: it lists at most one object of
// bucket with key.
func (p *Provider) TestKey(ctx context.Context, key storage.Key, bucket string) error {
	c := s3.New(s3Options(p.cfg, credentials.NewStaticCredentialsProvider(key.AccessKey, key.SecretKey, "")))
	_, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), MaxKeys: aws.Int32(1)})
	if err != nil {
		return fmt.Errorf("s3iam: test key on bucket %q: %w", bucket, err)
	}
	return nil
}

// errorCode is the service's error code in err, or "".
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// gone reports whether err is IAM's "no such entity".
func gone(err error) bool { return err != nil && errorCode(err) == "NoSuchEntity" }

// isNotFound reports whether an S3 HEAD said the bucket does not exist.
func isNotFound(err error) bool {
	switch errorCode(err) {
	case "NotFound", "NoSuchBucket":
		return true
	}
	return false
}
