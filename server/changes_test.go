package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/server/events"
	"github.com/basicmachines-co/bm-agent/server/lifecycle"
	"github.com/basicmachines-co/bm-agent/server/storage/embedded"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

var _ lifecycle.BucketFingerprinter = (*embedded.Provider)(nil)

// eventStream is a client of GET /tenant/events.
type eventStream struct {
	events chan events.Event
	ended  chan struct{} // closed when the stream ends
}

// subscribe opens GET /tenant/events with token and decodes its events
// until the test ends or the server closes the stream.
func subscribe(t *testing.T, srv *running, token string) *eventStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL()+tenantapi.PathTenantEvents, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /tenant/events: %v", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GET /tenant/events = %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	es := &eventStream{events: make(chan events.Event, 16), ended: make(chan struct{})}
	go func() {
		defer close(es.ended)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		name := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event:"):
				name = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
			case strings.HasPrefix(line, "data:") && name == events.KindBucketChanged:
				var ev events.Event
				if err := json.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(line, "data:"))), &ev); err == nil {
					es.events <- ev
				}
			case line == "":
				name = ""
			}
		}
	}()
	return es
}

// next waits for the stream's next event.
func (es *eventStream) next(t *testing.T, within time.Duration) events.Event {
	t.Helper()
	select {
	case ev := <-es.events:
		return ev
	case <-es.ended:
		t.Fatal("event stream ended")
	case <-time.After(within):
		t.Fatalf("no event within %s", within)
	}
	return events.Event{}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// do sends method url with a JSON body and a bearer token (or the headers
// in hdr) and returns the status and body.
func do(t testing.TB, method, url, token, body string, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// mint creates a mount key with token.
func mint(t testing.TB, srv *running, token string) tenantapi.MountCredentials {
	t.Helper()
	code, body := do(t, http.MethodPost, srv.URL()+tenantapi.PathMountCredentials, token, `{"description":"test"}`, nil)
	if code != http.StatusOK {
		t.Fatalf("mint = %d %s", code, body)
	}
	var mc tenantapi.MountCredentials
	if err := json.Unmarshal([]byte(body), &mc); err != nil {
		t.Fatal(err)
	}
	return mc
}

func s3Client(mc tenantapi.MountCredentials) *s3.Client {
	return s3.New(s3.Options{
		Region:       mc.Region,
		BaseEndpoint: aws.String(mc.EndpointURL),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(mc.AccessKey, mc.SecretKey, ""),
		Retryer:      aws.NopRetryer{},
	})
}

const webhookSecret = "storage-webhook-shared-secret"

// TestChangeEvents runs the server with the event hub, a refresh hook
// command, the storage webhook and a fast bucket fallback, and follows
// changes of one tenant to its subscribers (and not to another tenant's).
func TestChangeEvents(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	hookOut := filepath.Join(dir, "hook.out")
	hookScript := filepath.Join(dir, "hook.sh")
	script := "#!/bin/sh\necho \"tenant=$BM_TENANT_ID device=$BM_DEVICE reason=$BM_REASON at=$BM_EVENT_AT\" >> \"$1\"\n"
	if err := os.WriteFile(hookScript, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	const fallback = 150 * time.Millisecond
	r := serve(t, func(c *Config) {
		c.HookCommand = hookScript + " " + hookOut
		c.StorageWebhookSecret = webhookSecret
		c.FallbackInterval = fallback
		c.EventsHeartbeat = 100 * time.Millisecond
	})

	// Tenant A: the demo account and a second person; tenant B: a third.
	acc, err := r.Store().AccountByEmail(ctx, demoEmail)
	if err != nil {
		t.Fatal(err)
	}
	tenantA := acc.TenantID
	if _, err := AddAccount(ctx, r.Store(), tenantA, "bob@example.com", "bob's long password"); err != nil {
		t.Fatal(err)
	}
	accB, err := r.CreateAccount(ctx, "carol@example.com", "carol's long password")
	if err != nil {
		t.Fatal(err)
	}
	tokA1 := login(t, r.Server, demoEmail, demoPassword)
	tokA2 := login(t, r.Server, "bob@example.com", "bob's long password")
	tokB := login(t, r.Server, "carol@example.com", "carol's long password")

	subA := subscribe(t, r, tokA1)
	subB := subscribe(t, r, tokB)
	waitFor(t, 5*time.Second, "both subscribed", func() bool {
		return r.Events().Subscribers(tenantA) == 1 && r.Events().Subscribers(accB.TenantID) == 1
	})

	t.Run("sync reaches the tenant's other devices only", func(t *testing.T) {
		if code, body := do(t, http.MethodPost, r.URL()+tenantapi.PathSync, tokA2, `{"device":"phone"}`, nil); code != http.StatusAccepted {
			t.Fatalf("POST /sync = %d %s", code, body)
		}
		ev := subA.next(t, 5*time.Second)
		if ev.TenantID != tenantA || ev.Device != "phone" || ev.Reason != "sync" || ev.At.IsZero() {
			t.Errorf("event = %+v", ev)
		}
		// B's first event is B's own: A's change never reached it.
		if code, _ := do(t, http.MethodPost, r.URL()+tenantapi.PathSync, tokB, `{"device":"b-laptop"}`, nil); code != http.StatusAccepted {
			t.Fatalf("POST /sync (B) = %d", code)
		}
		if ev := subB.next(t, 5*time.Second); ev.TenantID != accB.TenantID || ev.Device != "b-laptop" {
			t.Errorf("B's first event = %+v, want its own sync", ev)
		}
	})

	t.Run("sync runs the refresh hook", func(t *testing.T) {
		want := fmt.Sprintf("tenant=%s device=phone reason=sync at=", tenantA)
		waitFor(t, 10*time.Second, "hook output", func() bool {
			b, _ := os.ReadFile(hookOut)
			return strings.Contains(string(b), want)
		})
		waitFor(t, 5*time.Second, "hook audit", func() bool {
			evs, err := r.Store().ListAudit(ctx, tenantA, 50)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				if e.Kind == "hook.ok" {
					return true
				}
			}
			return false
		})
	})

	t.Run("storage webhook", func(t *testing.T) {
		tA, err := r.Store().TenantByID(ctx, tenantA)
		if err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf(`{"EventName":"s3:ObjectCreated:Put","Key":"%s/notes/a.md","Records":[{"eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":%q},"object":{"key":"notes/a.md"}}}]}`, tA.BucketName, tA.BucketName)
		url := r.URL() + tenantapi.PathStorageWebhook + tenantA
		tests := []struct {
			name string
			hdr  map[string]string
			want int
		}{
			{"no secret", nil, http.StatusUnauthorized},
			{"wrong secret", map[string]string{"Authorization": "Bearer not-the-secret"}, http.StatusUnauthorized},
			{"user token is no secret", map[string]string{"Authorization": "Bearer " + tokA1}, http.StatusUnauthorized},
			{"shared secret", map[string]string{"Authorization": "Bearer " + webhookSecret}, http.StatusOK},
		}
		for _, tt := range tests {
			code, resp := do(t, http.MethodPost, url, "", body, tt.hdr)
			if code != tt.want {
				t.Errorf("%s: POST %s = %d %s, want %d", tt.name, tenantapi.PathStorageWebhook, code, resp, tt.want)
			}
		}
		ev := subA.next(t, 5*time.Second)
		if ev.TenantID != tenantA || ev.Reason != "storage:s3:ObjectCreated:Put" {
			t.Errorf("event = %+v", ev)
		}
		select {
		case ev := <-subA.events:
			t.Errorf("refused webhooks published %+v", ev)
		case <-time.After(100 * time.Millisecond):
		}
	})

	t.Run("an S3 write is announced by the endpoint, not the fallback", func(t *testing.T) {
		mc := mint(t, r, tokA1)
		// Let a fallback pass record the bucket after the last event.
		time.Sleep(3 * fallback)
		if _, err := s3Client(mc).PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(mc.BucketName), Key: aws.String("written-directly.md"), Body: bytes.NewReader([]byte("# hi\n")),
		}); err != nil {
			t.Fatalf("put: %v", err)
		}
		ev := subA.next(t, 10*time.Second)
		if ev.TenantID != tenantA || ev.Reason != "embedded:PutObject" {
			t.Errorf("event = %+v, want the embedded S3's event of tenant A", ev)
		}
		waitFor(t, 10*time.Second, "hook run for the S3 write", func() bool {
			b, _ := os.ReadFile(hookOut)
			return strings.Contains(string(b), fmt.Sprintf("tenant=%s device= reason=embedded:PutObject", tenantA))
		})
		// The fallback sees the change as announced: no fallback event.
		select {
		case ev := <-subA.events:
			t.Errorf("unexpected event %+v", ev)
		case <-time.After(4 * fallback):
		}
	})

	t.Run("shutdown ends the streams", func(t *testing.T) {
		took, err := r.stop(t)
		if err != nil {
			t.Errorf("Serve = %v", err)
		}
		if took > 3*time.Second {
			t.Errorf("shutdown with open event streams took %s (deadline %s)", took, DefaultShutdownTimeout)
		}
		select {
		case <-subA.ended:
		case <-time.After(2 * time.Second):
			t.Error("event stream still open after shutdown")
		}
	})
}

// TestStorageWebhookDisabled: without a secret the route is not served.
func TestStorageWebhookDisabled(t *testing.T) {
	r := serve(t, nil)
	code, _ := do(t, http.MethodPost, r.URL()+tenantapi.PathStorageWebhook+"any", "", `{}`, map[string]string{"Authorization": "Bearer x"})
	if code != http.StatusNotFound {
		t.Errorf("webhook without a configured secret = %d, want 404", code)
	}
}
