package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/spf13/pflag"

	"github.com/basicmachines-co/bm-agent/server/storage"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

const mib = 1 << 20

// quotaTenant serves a server whose pro tier has quota bytes (free none),
// asking the store of each write's quota, and returns it with the demo
// account's token, tenant id and an S3 client with a key of it, the tenant
// moved to tier.
func quotaTenant(t *testing.T, tier string, quota int64, mod func(*Config)) (*running, string, string, *s3.Client) {
	t.Helper()
	r := serve(t, func(c *Config) {
		c.Quotas = &storage.Quotas{Tiers: map[string]int64{storage.TierPro: quota, storage.TierFree: 0}, Other: storage.Unlimited}
		c.KeyCacheTTL = -1 // a changed tier applies to the next write
		if mod != nil {
			mod(c)
		}
	})
	ctx := context.Background()
	a, err := r.Store().AccountByEmail(ctx, demoEmail)
	if err != nil {
		t.Fatal(err)
	}
	if err := SetSubscription(ctx, r.Store(), a.TenantID, "active", tier); err != nil {
		t.Fatal(err)
	}
	token := login(t, r.Server, demoEmail, demoPassword)
	return r, token, a.TenantID, s3Client(mint(t, r, token))
}

// tenantStatus is GET /tenant/status with token.
func tenantStatus(t *testing.T, r *running, token string) tenantapi.TenantStatus {
	t.Helper()
	resp, body := get(t, r.URL()+tenantapi.PathTenantStatus, token, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d %s", resp.StatusCode, body)
	}
	var st tenantapi.TenantStatus
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func wantFigures(t *testing.T, r *running, token string, used, quota int64) {
	t.Helper()
	st := tenantStatus(t, r, token)
	if st.StorageUsedBytes == nil || st.StorageQuotaBytes == nil || *st.StorageUsedBytes != used || *st.StorageQuotaBytes != quota {
		t.Fatalf("status reports used %v of %v, want %d of %d", fig(st.StorageUsedBytes), fig(st.StorageQuotaBytes), used, quota)
	}
}

func fig(p *int64) any {
	if p == nil {
		return "absent"
	}
	return *p
}

// refusedByQuota reports whether err is S3's 403 QuotaExceeded.
func refusedByQuota(err error) bool {
	var re *awshttp.ResponseError
	var ae smithy.APIError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusForbidden &&
		errors.As(err, &ae) && ae.ErrorCode() == "QuotaExceeded"
}

func putBytes(c *s3.Client, bucket, key string, n int) error {
	_, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
		Body: bytes.NewReader(bytes.Repeat([]byte{'q'}, n))})
	return err
}

// TestSecurityQuota: a Pro tenant with a small quota cannot pass it by a
// PUT, a multipart upload or a server-side copy; deleting frees room at
// once; GET /tenant/status reports the figures all along.
func TestSecurityQuota(t *testing.T) {
	const quota = 12 * mib
	r, token, tenantID, c := quotaTenant(t, storage.TierPro, quota, nil)
	ctx := context.Background()
	tn, err := r.Store().TenantByID(ctx, tenantID)
	if err != nil {
		t.Fatal(err)
	}
	bucket := tn.BucketName
	wantFigures(t, r, token, 0, quota)
	refused := 0
	refuse := func(what string, err error) {
		t.Helper()
		if !refusedByQuota(err) {
			t.Fatalf("%s: %v, want 403 QuotaExceeded", what, err)
		}
		refused++
	}

	// PUT
	if err := putBytes(c, bucket, "notes/a.md", 8*mib); err != nil {
		t.Fatal(err)
	}
	refuse("PUT past the quota", putBytes(c, bucket, "notes/b.md", 5*mib))
	if err := putBytes(c, bucket, "notes/a.md", 8*mib); err != nil {
		t.Fatalf("replacing an object with one of its size: %v", err)
	}
	wantFigures(t, r, token, 8*mib, quota)

	// Copy
	_, err = c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(bucket), Key: aws.String("notes/a-copy.md"), CopySource: aws.String(bucket + "/notes/a.md")})
	refuse("CopyObject past the quota", err)

	// Multipart: a part past the quota is refused, parts within it count.
	key := aws.String("big.bin")
	cr, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	part := func(n int32, size int) (*s3.UploadPartOutput, error) {
		return c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: key, UploadId: cr.UploadId,
			PartNumber: aws.Int32(n), Body: bytes.NewReader(bytes.Repeat([]byte{'p'}, size))})
	}
	_, err = part(1, 5*mib)
	refuse("UploadPart past the quota", err)
	p1, err := part(1, 4*mib)
	if err != nil {
		t.Fatalf("a part within the quota: %v", err)
	}
	wantFigures(t, r, token, quota, quota) // the part counts
	refuse("PUT while parts hold the room", putBytes(c, bucket, "notes/c.md", 1))
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucket), Key: key, UploadId: cr.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{ETag: p1.ETag, PartNumber: aws.Int32(1)}}}}); err != nil {
		t.Fatalf("completing at the quota: %v", err)
	}
	wantFigures(t, r, token, quota, quota)

	// A delete frees room at once.
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("notes/a.md")}); err != nil {
		t.Fatal(err)
	}
	wantFigures(t, r, token, 4*mib, quota)
	if _, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(bucket), Key: aws.String("big-copy.bin"), CopySource: aws.String(bucket + "/big.bin")}); err != nil {
		t.Fatalf("copy into the room a delete freed: %v", err)
	}
	if err := putBytes(c, bucket, "notes/b.md", 4*mib); err != nil {
		t.Fatalf("put into the room a delete freed: %v", err)
	}
	wantFigures(t, r, token, quota, quota)
	st := tenantStatus(t, r, token)
	t.Logf("FIGURE quota: %d writes past a %d-byte Pro quota refused (PUT, copy, part, put over parts); status reports %d of %d bytes",
		refused, int64(quota), *st.StorageUsedBytes, *st.StorageQuotaBytes)

	// Free has no cloud storage: nothing more may be written, what is
	// there may still be read and deleted.
	if err := SetSubscription(ctx, r.Store(), tenantID, "active", storage.TierFree); err != nil {
		t.Fatal(err)
	}
	refuse("PUT on the free tier", putBytes(c, bucket, "notes/free.md", 1))
	if out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("notes/b.md")}); err != nil {
		t.Errorf("reading on the free tier: %v", err)
	} else if n, err := io.Copy(io.Discard, out.Body); err != nil || n != 4*mib {
		t.Errorf("reading on the free tier: %d bytes, %v", n, err)
	} else {
		out.Body.Close()
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("notes/b.md")}); err != nil {
		t.Errorf("deleting on the free tier: %v", err)
	}
	wantFigures(t, r, token, quota-4*mib, 0)
}

// TestSecurityQuotaAbandonedUploads: the running server's lifecycle worker
// aborts a multipart upload left unfinished past --upload-max-age, and its
// parts stop counting.
func TestSecurityQuotaAbandonedUploads(t *testing.T) {
	r, token, tenantID, c := quotaTenant(t, storage.TierPro, 100*mib, func(c *Config) { c.UploadMaxAge = 5 * time.Second })
	ctx := context.Background()
	tn, err := r.Store().TenantByID(ctx, tenantID)
	if err != nil {
		t.Fatal(err)
	}
	bucket := aws.String(tn.BucketName)
	cr, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: bucket, Key: aws.String("abandoned.bin")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: bucket, Key: aws.String("abandoned.bin"), UploadId: cr.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader(bytes.Repeat([]byte{'p'}, 3*mib))}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	deadline := start.Add(90 * time.Second)
	for {
		st := tenantStatus(t, r, token)
		list, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: bucket})
		if err != nil {
			t.Fatal(err)
		}
		if st.StorageUsedBytes != nil && *st.StorageUsedBytes == 0 && len(list.Uploads) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("upload not expired after %s: used %v, %d uploads listed", time.Since(start), fig(st.StorageUsedBytes), len(list.Uploads))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("FIGURE quota: an upload abandoned with a 5 s max age was expired %s after its last part", time.Since(start).Round(100*time.Millisecond))
	_, err = c.UploadPart(ctx, &s3.UploadPartInput{Bucket: bucket, Key: aws.String("abandoned.bin"), UploadId: cr.UploadId,
		PartNumber: aws.Int32(2), Body: bytes.NewReader([]byte("late"))})
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusNotFound {
		t.Errorf("part for the expired upload: %v, want 404 NoSuchUpload", err)
	}
}

// TestSecurityQuotaFlags: the quotas are flags (and so environment
// variables and config keys) with Basic Memory's defaults.
func TestSecurityQuotaFlags(t *testing.T) {
	var cfg Config
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	BindFlags(fs, &cfg)
	if q := cfg.Quotas; q.For("pro") != 10_000_000_000 || q.For("team") != 100_000_000_000 || q.For("free") != 0 || q.For("basic") != storage.Unlimited {
		t.Errorf("default quotas = %+v", *q)
	}
	if err := fs.Parse([]string{"--quota-pro", "20GiB", "--quota-other", "1GB"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{EnvPrefix + "QUOTA_TEAM": "unlimited", EnvPrefix + "UPLOAD_MAX_AGE": "6h"}
	if err := ResolveConfig(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	q := cfg.Quotas
	if q.For("pro") != 20<<30 || q.For("team") != storage.Unlimited || q.For("basic") != 1_000_000_000 || q.For("free") != 0 || cfg.UploadMaxAge != 6*time.Hour {
		t.Errorf("quotas = %+v, upload max age %v", *q, cfg.UploadMaxAge)
	}
	if err := fs.Set("quota-free", "lots"); err == nil {
		t.Error("--quota-free lots accepted")
	}
}

// TestSecurityQuotaMinIO: with --storage minio the tier's quota is set as
// MinIO's hard bucket quota when the tenant's bucket is made, and MinIO
// refuses a write past it.
func TestSecurityQuotaMinIO(t *testing.T) {
	ctx := context.Background()
	url := startMinIO(t)
	r := serve(t, func(c *Config) {
		useMinIO(c, url)
		c.Quotas = &storage.Quotas{Tiers: map[string]int64{storage.TierPro: mib}, Other: storage.Unlimited}
	})
	pro, err := r.CreateTenant(ctx, storage.TierPro)
	if err != nil {
		t.Fatal(err)
	}
	key, err := r.Provider().MintKey(ctx, pro.BucketName)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Provider().RevokeKey(context.Background(), key) })
	c := s3Client(tenantapi.MountCredentials{AccessKey: key.AccessKey, SecretKey: key.SecretKey, EndpointURL: url, Region: "us-east-1"})
	if err := putBytes(c, pro.BucketName, "big.bin", 2*mib); err == nil {
		t.Fatal("MinIO stored 2 MiB in a Pro bucket with a 1 MiB quota")
	}
	if err := putBytes(c, pro.BucketName, "small.md", 1000); err != nil {
		t.Fatalf("a write within the quota: %v", err)
	}
	t.Logf("FIGURE quota minio: a 2 MiB write to a 1 MiB Pro bucket refused by MinIO's hard quota")
}
