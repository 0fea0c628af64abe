package server

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/server/storage"
	"github.com/basicmachines-co/bm-agent/server/storage/minio/miniotest"
	"github.com/basicmachines-co/bm-agent/server/store"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

const (
	minioRootUser     = miniotest.RootUser
	minioRootPassword = miniotest.RootPassword
)

// startMinIO runs a real MinIO server until the test ends and returns its
// URL.
func startMinIO(t *testing.T) string { return miniotest.Start(t).URL }

// useMinIO points c at the MinIO at url with its root credentials.
func useMinIO(c *Config, url string) {
	c.Storage = StorageMinIO
	c.StorageEndpoint = url
	c.StorageAccessKey, c.StorageSecretKey = minioRootUser, minioRootPassword
}

// TestMinIOStorage runs the server with --storage minio against a real
// MinIO: the demo tenant's bucket is made there, a key minted through the
// API works on that bucket only, and DELETE through the API revokes it at
// MinIO with the provider reference kept in the store.
func TestMinIOStorage(t *testing.T) {
	ctx := context.Background()
	url := startMinIO(t)
	r := serve(t, func(c *Config) { useMinIO(c, url) })
	if r.S3() != nil || r.s3Ln != nil {
		t.Error("the embedded S3 endpoint is open with storage minio")
	}
	if r.S3URL() != url {
		t.Errorf("S3URL = %q, want %q", r.S3URL(), url)
	}
	resp, body := get(t, r.URL()+"/readyz", "", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"storage":"ok"`) {
		t.Errorf("readyz = %d %s", resp.StatusCode, body)
	}

	token := login(t, r.Server, demoEmail, demoPassword)
	mc := mint(t, r, token)
	if mc.EndpointURL != url || mc.Region == "" {
		t.Errorf("credentials point at %q %q, want MinIO at %s", mc.EndpointURL, mc.Region, url)
	}
	cred, err := r.Store().CredentialByAnyID(ctx, mc.CredentialID)
	if err != nil {
		t.Fatal(err)
	}
	if cred.ProviderRef == "" {
		t.Error("the store kept no provider_ref for the MinIO service account")
	}
	c := s3Client(mc)
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(mc.BucketName), Key: aws.String("a.md"), Body: strings.NewReader("hello")}); err != nil {
		t.Fatalf("put with the minted key: %v", err)
	}
	// Scoped: another tenant's bucket is out of reach.
	other, err := r.CreateTenant(ctx, "basic")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(other.BucketName)}); err == nil {
		t.Error("the key listed another tenant's bucket")
	}

	code, body := do(t, http.MethodDelete, r.URL()+tenantapi.PathMountCredentials+"/"+mc.CredentialID, token, "", nil)
	if code != http.StatusOK || !strings.Contains(body, `"deletion_status":"completed"`) {
		t.Fatalf("DELETE = %d %s", code, body)
	}
	if cred, err := r.Store().CredentialByAnyID(ctx, mc.CredentialID); err != nil || cred.DeletionStatus != store.DeletionCompleted {
		t.Errorf("stored credential = %+v, %v", cred, err)
	}
	waitFor(t, 10*time.Second, "MinIO refuses the revoked key", func() bool {
		_, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(mc.BucketName)})
		return err != nil
	})
	// The provider's own check agrees.
	if err := r.Provider().TestKey(ctx, keyOf(mc), mc.BucketName); err == nil {
		t.Error("TestKey still accepts the revoked key")
	}
}

// TestStorageSettingsErrors: a misconfigured provider stops New.
func TestStorageSettingsErrors(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"unknown storage", func(c *Config) { c.Storage = "ftp" }, "unknown storage"},
		{"minio without endpoint", func(c *Config) { c.Storage = StorageMinIO }, "--storage-endpoint"},
		{"minio without credentials", func(c *Config) { c.Storage, c.StorageEndpoint = StorageMinIO, "http://127.0.0.1:1" }, EnvStorageAccessKey},
		{"s3 without credentials", func(c *Config) { c.Storage = StorageS3 }, EnvStorageSecretKey},
		{"unknown auth mode", func(c *Config) { c.AuthMode = "ldap" }, "unknown auth mode"},
		{"oidc without issuer", func(c *Config) { c.AuthMode = AuthOIDC }, "--oidc-issuer"},
		{"notify ARN with embedded", func(c *Config) { c.StorageNotifyARN = "arn:minio:sqs::bm:webhook" }, "--storage-notify-arn"},
		{"notify ARN with s3", func(c *Config) {
			c.Storage, c.StorageNotifyARN = StorageS3, "arn:minio:sqs::bm:webhook"
			c.StorageAccessKey, c.StorageSecretKey = "a", "s"
		}, "--storage-notify-arn"},
		{"bad notify ARN", func(c *Config) {
			c.Storage, c.StorageEndpoint, c.StorageNotifyARN = StorageMinIO, "http://127.0.0.1:1", "webhook"
			c.StorageAccessKey, c.StorageSecretKey = "a", "s"
		}, "notify ARN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Addr: "127.0.0.1:0", S3Addr: "127.0.0.1:0", DataDir: t.TempDir()}
			tt.mod(&cfg)
			srv, err := New(context.Background(), cfg)
			if err == nil {
				srv.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// TestS3StorageNoListener: with an S3 + IAM provider the server opens no
// S3 listener and hands clients the provider's endpoint. (No request is
// sent: New builds the clients only.)
func TestS3StorageNoListener(t *testing.T) {
	// S3Addr is taken: opening it would fail New.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := Config{
		Addr: "127.0.0.1:0", S3Addr: taken.Addr().String(),
		DataDir: t.TempDir(), Storage: StorageTigris,
		StorageAccessKey: "tid_admin", StorageSecretKey: "tsec_admin",
		Logger: slog.New(slog.DiscardHandler),
	}
	srv, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if srv.s3Ln != nil || srv.S3() != nil {
		t.Error("S3 listener opened for tigris")
	}
	u, region := srv.Provider().Endpoint()
	if srv.Provider().Name() == "embedded" || u != srv.S3URL() || !strings.Contains(u, "tigris") || region != "auto" {
		t.Errorf("provider %s endpoint %q %q, S3URL %q", srv.Provider().Name(), u, region, srv.S3URL())
	}
}

func keyOf(mc tenantapi.MountCredentials) storage.Key {
	return storage.Key{AccessKey: mc.AccessKey, SecretKey: mc.SecretKey}
}
