package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/minio/madmin-go/v3"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/basicmachines-co/bm-agent/server/api"
	"github.com/basicmachines-co/bm-agent/server/store"
)

// minioNotifyARN is the ARN of the webhook target notify_webhook:bm.
const minioNotifyARN = "arn:minio:sqs::bm:webhook"

// TestMinIOWebhook runs the server with --storage minio against a real
// MinIO whose webhook notification target is configured the way
// POST /webhooks/storage documents it (`mc admin config set ALIAS
// notify_webhook:bm endpoint=... auth_token=...`, through the admin API
// mc uses, and a restart), with --storage-notify-arn so that the server
// adds the bucket event rule (`mc event add`) to each bucket it creates.
// A PUT and a DELETE by an S3 client at MinIO reach the tenant's event
// stream; another tenant hears nothing of them.
func TestMinIOWebhook(t *testing.T) {
	ctx := context.Background()
	m := startMinIO(t)
	r := serve(t, func(c *Config) {
		useMinIO(c, m)
		c.StorageWebhookSecret = webhookSecret
		c.StorageNotifyARN = minioNotifyARN
		c.DemoEmail = "" // its bucket would need the target, which needs the server
	})

	adm, err := madmin.NewWithOptions(strings.TrimPrefix(m, "http://"), &madmin.Options{Creds: credentials.NewStaticV4(minioRootUser, minioRootPassword, "")})
	if err != nil {
		t.Fatal(err)
	}
	kv := fmt.Sprintf("notify_webhook:bm endpoint=%s%s auth_token=%s", r.URL(), api.PathStorageNotifications, webhookSecret)
	restart, err := adm.SetConfigKV(ctx, kv)
	if err != nil {
		t.Fatalf("mc admin config set notify_webhook:bm: %v", err)
	}
	if restart {
		if err := adm.ServiceRestartV2(ctx); err != nil {
			t.Fatalf("mc admin service restart: %v", err)
		}
	}
	// Until MinIO is back with the target, the bucket rule is refused.
	var accA, accB store.Account
	waitFor(t, 60*time.Second, "MinIO back with the webhook target", func() bool {
		accA, err = r.CreateAccount(ctx, "ada@example.com", demoPassword)
		return err == nil
	})
	if accB, err = r.CreateAccount(ctx, "carol@example.com", "carol's long password"); err != nil {
		t.Fatal(err)
	}
	tokA := login(t, r.Server, "ada@example.com", demoPassword)
	tokB := login(t, r.Server, "carol@example.com", "carol's long password")
	subA, subB := subscribe(t, r, tokA), subscribe(t, r, tokB)
	waitFor(t, 5*time.Second, "both subscribed", func() bool {
		return r.Events().Subscribers(accA.TenantID) == 1 && r.Events().Subscribers(accB.TenantID) == 1
	})

	mcA := mintAs(t, r, tokA, "laptop")
	a := s3Client(mcA)
	start := time.Now()
	if _, err := a.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(mcA.BucketName), Key: aws.String("notes/a.md"), Body: strings.NewReader("# a\n")}); err != nil {
		t.Fatalf("put at MinIO: %v", err)
	}
	ev := subA.next(t, 10*time.Second)
	t.Logf("PUT at MinIO to event: %s", time.Since(start).Round(time.Millisecond))
	// MinIO names the parent user, not the key, as the writer: no device.
	if ev.TenantID != accA.TenantID || ev.Reason != "storage:s3:ObjectCreated:Put" || ev.Device != "" {
		t.Errorf("event = %+v, want tenant A's s3:ObjectCreated:Put", ev)
	}
	if _, err := a.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(mcA.BucketName), Key: aws.String("notes/a.md")}); err != nil {
		t.Fatal(err)
	}
	if ev := subA.next(t, 10*time.Second); ev.TenantID != accA.TenantID || ev.Reason != "storage:s3:ObjectRemoved:Delete" {
		t.Errorf("event = %+v, want tenant A's s3:ObjectRemoved:Delete", ev)
	}
	subB.quiet(t, time.Second, "tenant B after A's writes at MinIO")

	mcB := mintAs(t, r, tokB, "phone")
	if _, err := s3Client(mcB).PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(mcB.BucketName), Key: aws.String("b.md"), Body: strings.NewReader("b")}); err != nil {
		t.Fatal(err)
	}
	if ev := subB.next(t, 10*time.Second); ev.TenantID != accB.TenantID {
		t.Errorf("B's event = %+v", ev)
	}
	subA.quiet(t, time.Second, "tenant A after B's write at MinIO")

	// The webhook refuses MinIO's format without the secret.
	body := fmt.Sprintf(`{"EventName":"s3:ObjectCreated:Put","Key":"%s/x","Records":[{"eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":%q},"object":{"key":"x"}}}]}`, mcA.BucketName, mcA.BucketName)
	if code, _ := do(t, http.MethodPost, r.URL()+api.PathStorageNotifications, "", body, nil); code != http.StatusUnauthorized {
		t.Errorf("webhook without the secret = %d, want 401", code)
	}
	subA.quiet(t, 500*time.Millisecond, "a refused webhook")
}
