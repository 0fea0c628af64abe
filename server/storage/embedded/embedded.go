// Package embedded is the storage.Provider over bm-server's own S3 endpoint
// (server/s3embed): buckets are directories on local disk and keys are
// checked against the server's store on every request.
//
// Keys: the access key is "bmk_" followed by 20 random base32 characters
// (crypto/rand). The secret is never stored anywhere: it is derived as
//
//	base64url-unpadded(HMAC-SHA256(masterKey, "s3-secret:" + accessKey))
//
// so whoever holds the master key can recompute it, and changing the master
// key invalidates every key. A key is accepted only while the store's
// KeyIndex says it is active.
//
// What the store says of a key (and its derived secret) is cached in
// memory for a short time (DefaultKeyCacheTTL), so that an S3 request costs
// no SQL query. RevokeKey drops the key from the cache at once, and the
// server's API revokes through it, so a key revoked through this server is
// refused on the very next request. A change the cache is not told about
// (a key revoked by another replica or by an admin command, which runs in
// its own process; a tenant suspended) reaches this process within the
// TTL: with several server replicas, the TTL bounds how long a revoked key
// still works on the others.
package embedded

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/server/s3embed"
	"github.com/basicmachines-co/bm-agent/server/storage"
)

// AccessKeyPrefix starts every access key this provider mints.
const AccessKeyPrefix = "bmk_"

// DefaultRegion is the region used when none is configured.
const DefaultRegion = "us-east-1"

// minMasterKey is the shortest master key accepted (bytes).
const minMasterKey = 16

// DefaultKeyCacheTTL is how long what the store said of a key is trusted
// without asking again (see the package doc).
const DefaultKeyCacheTTL = 30 * time.Second

// maxCachedKeys bounds the key cache; beyond it expired entries are
// dropped, and if none is, all of them.
const maxCachedKeys = 10000

// Provider is a storage.Provider and an s3embed.KeyResolver.
type Provider struct {
	srv      *s3embed.Server
	master   []byte
	index    storage.KeyIndex
	endpoint string
	region   string
	log      *slog.Logger

	ttl time.Duration // of the key cache; <= 0: no cache

	mu    sync.Mutex
	keys  map[string]cachedKey
	epoch uint64 // bumped by every invalidation (see lookup)
}

// cachedKey is a store answer about a key that is still good until expires.
type cachedKey struct {
	rec     storage.KeyRecord
	secret  string
	expires time.Time
}

var (
	_ storage.Provider      = (*Provider)(nil)
	_ storage.UsageReporter = (*Provider)(nil)
	_ s3embed.KeyResolver   = (*Provider)(nil)
)

// New returns the provider for srv. masterKey derives every secret and
// must be at least 16 bytes (shorter: no key is minted or accepted).
// endpointURL is what clients use to reach srv's handler; region defaults
// to "us-east-1". Pass the provider to s3embed.New as its KeyResolver (or
// wrap it) so the endpoint checks keys against index. log is where the
// provider logs (a failed key lookup); nil means nowhere.
func New(srv *s3embed.Server, masterKey []byte, index storage.KeyIndex, endpointURL, region string, log *slog.Logger) *Provider {
	if region == "" {
		region = DefaultRegion
	}
	return &Provider{
		srv:      srv,
		master:   slices.Clone(masterKey),
		index:    index,
		endpoint: strings.TrimSuffix(endpointURL, "/"),
		region:   region,
		log:      storage.Logger(log, "storage/embedded"),
		ttl:      DefaultKeyCacheTTL,
		keys:     map[string]cachedKey{},
	}
}

// SetKeyCacheTTL sets how long what the store says of a key is cached
// (default DefaultKeyCacheTTL); zero or negative turns the cache off, so
// that every request asks the store. Call it before serving.
func (p *Provider) SetKeyCacheTTL(ttl time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ttl = ttl
	clear(p.keys)
	p.epoch++
}

// ForgetKey drops accessKey from the key cache, so that the next request
// with it asks the store. RevokeKey calls it; so should anything else that
// changes what the store says of a key or of its tenant.
func (p *Provider) ForgetKey(accessKey string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.keys, accessKey)
	p.epoch++
}

// ForgetKeys empties the key cache.
func (p *Provider) ForgetKeys() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.keys)
	p.epoch++
}

// SetServer sets the endpoint server when it has to be built after the
// provider (s3embed.New takes the provider as its KeyResolver). Call it
// before serving.
func (p *Provider) SetServer(srv *s3embed.Server) { p.srv = srv }

// Name implements storage.Provider.
func (p *Provider) Name() string { return "embedded" }

// Endpoint implements storage.Provider.
func (p *Provider) Endpoint() (url, region string) { return p.endpoint, p.region }

// CreateBucket implements storage.Provider; an existing bucket is fine.
func (p *Provider) CreateBucket(ctx context.Context, bucket string) error {
	if err := p.srv.CreateBucket(ctx, bucket); err != nil {
		return fmt.Errorf("embedded: create bucket: %w", err)
	}
	return nil
}

// DeleteBucket implements storage.Provider. The bucket must be empty; a
// missing bucket is storage.ErrNotFound.
func (p *Provider) DeleteBucket(ctx context.Context, bucket string) error {
	err := p.srv.DeleteBucket(ctx, bucket)
	if errors.Is(err, s3embed.ErrNoSuchBucket) {
		return fmt.Errorf("embedded: delete bucket %q: %w", bucket, storage.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("embedded: delete bucket: %w", err)
	}
	return nil
}

// BucketUsage implements storage.UsageReporter: the bytes of bucket's
// objects and of the parts of its unfinished multipart uploads, which the
// endpoint's quota is compared with. A missing bucket is
// storage.ErrNotFound.
func (p *Provider) BucketUsage(ctx context.Context, bucket string) (int64, error) {
	n, err := p.srv.BucketUsage(ctx, bucket)
	if errors.Is(err, s3embed.ErrNoSuchBucket) {
		return 0, fmt.Errorf("embedded: usage of %q: %w", bucket, storage.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("embedded: usage: %w", err)
	}
	return n, nil
}

// ExpireUploads aborts the endpoint's multipart uploads begun before
// cutoff (see s3embed.Server.ExpireUploads); the lifecycle worker calls it.
func (p *Provider) ExpireUploads(ctx context.Context, cutoff time.Time) (int, error) {
	n, err := p.srv.ExpireUploads(ctx, cutoff)
	if err != nil {
		return n, fmt.Errorf("embedded: %w", err)
	}
	return n, nil
}

// ListBuckets implements storage.Provider.
func (p *Provider) ListBuckets(ctx context.Context) ([]string, error) {
	names, err := p.srv.ListBuckets(ctx)
	if err != nil {
		return nil, fmt.Errorf("embedded: list buckets: %w", err)
	}
	return names, nil
}

// MintKey implements storage.Provider. The key works once the caller has
// recorded it in the store as active for bucket (the endpoint asks the
// KeyIndex about keys it has not cached). Ref is empty: revocation is the
// store's.
func (p *Provider) MintKey(ctx context.Context, bucket string) (storage.Key, error) {
	if len(p.master) < minMasterKey {
		return storage.Key{}, errors.New("embedded: mint key: master key missing or shorter than 16 bytes")
	}
	names, err := p.srv.ListBuckets(ctx)
	if err != nil {
		return storage.Key{}, fmt.Errorf("embedded: mint key: %w", err)
	}
	if !slices.Contains(names, bucket) {
		return storage.Key{}, fmt.Errorf("embedded: mint key for bucket %q: %w", bucket, storage.ErrNotFound)
	}
	access := AccessKeyPrefix + rand.Text()[:20]
	return storage.Key{AccessKey: access, SecretKey: p.secret(access)}, nil
}

// RevokeKey implements storage.Provider. The endpoint accepts a key only
// while the store's KeyIndex reports it active, so revoking means setting
// the store's revoked flag (which the caller has done); here the key only
// leaves the cache, so that the next request with it is refused.
func (p *Provider) RevokeKey(ctx context.Context, key storage.Key) error {
	p.ForgetKey(key.AccessKey)
	return nil
}

// TestKey implements storage.Provider: it signs a real ListObjectsV2 of
// bucket with key and sends it to the endpoint.
func (p *Provider) TestKey(ctx context.Context, key storage.Key, bucket string) error {
	client := s3.New(s3.Options{
		Region:       p.region,
		BaseEndpoint: aws.String(p.endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(key.AccessKey, key.SecretKey, ""),
	})
	_, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), MaxKeys: aws.Int32(1)})
	if err != nil {
		return fmt.Errorf("embedded: test key on bucket %q: %w", bucket, err)
	}
	return nil
}

// ResolveKey implements s3embed.KeyResolver: a key is valid only if it has
// this provider's prefix and the store reports it active (within the
// cache's TTL, see the package doc).
func (p *Provider) ResolveKey(ctx context.Context, accessKey string) (secret, bucket string, ok bool) {
	k, ok := p.lookup(ctx, accessKey)
	if !ok || !k.rec.Active || k.rec.Bucket == "" {
		return "", "", false
	}
	return k.secret, k.rec.Bucket, true
}

// KeyRecord is what the store says of accessKey, through the cache: whose
// key it is and whether it is active. ok is false for a key that is not
// this provider's or that the store does not know.
func (p *Provider) KeyRecord(ctx context.Context, accessKey string) (storage.KeyRecord, bool) {
	k, ok := p.lookup(ctx, accessKey)
	return k.rec, ok
}

// lookup answers from the cache, or asks the store and caches the answer.
// Unknown keys and failed lookups are not cached (the cache holds only
// keys the store has, so guessed keys cannot fill it). An answer is cached
// only if no invalidation happened while the store was asked: otherwise a
// lookup that read the store just before a revocation could put the key
// back as active after RevokeKey dropped it.
func (p *Provider) lookup(ctx context.Context, accessKey string) (cachedKey, bool) {
	if len(p.master) < minMasterKey || !strings.HasPrefix(accessKey, AccessKeyPrefix) || p.index == nil {
		return cachedKey{}, false
	}
	p.mu.Lock()
	ttl, now, epoch := p.ttl, time.Now(), p.epoch
	if k, ok := p.keys[accessKey]; ok && now.Before(k.expires) {
		p.mu.Unlock()
		return k, true
	}
	p.mu.Unlock()

	rec, err := p.index.LookupKey(ctx, accessKey)
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			p.log.Warn("embedded: key lookup failed", "err", err)
		}
		return cachedKey{}, false
	}
	k := cachedKey{rec: rec, secret: p.secret(accessKey), expires: now.Add(ttl)}
	if ttl <= 0 {
		return k, true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.epoch != epoch {
		return k, true // answer this request, but do not keep it
	}
	if len(p.keys) >= maxCachedKeys {
		for ak, e := range p.keys {
			if !now.Before(e.expires) {
				delete(p.keys, ak)
			}
		}
		if len(p.keys) >= maxCachedKeys {
			clear(p.keys)
		}
	}
	p.keys[accessKey] = k
	return k, true
}

// secret derives the secret of accessKey from the master key.
func (p *Provider) secret(accessKey string) string {
	mac := hmac.New(sha256.New, p.master)
	mac.Write([]byte("s3-secret:" + accessKey))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}
