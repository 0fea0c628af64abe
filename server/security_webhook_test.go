package server

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/server/hooks"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// TestSecurityWebhookReplay: a captured signed storage notification cannot
// be sent again. The server accepts a fresh delivery once; the same
// delivery replayed, one signed 6 minutes ago or ahead, one whose
// timestamp was changed, and one signed over the body alone (the old
// scheme, replayable forever) all get 401. Before, the signature covered
// the body only, and every replay was accepted.
func TestSecurityWebhookReplay(t *testing.T) {
	r := serve(t, func(c *Config) { c.StorageWebhookSecret = webhookSecret })
	url := r.URL() + "/webhooks/storage"
	body := `{"EventName":"s3:ObjectCreated:Put","Key":"no-such-bucket/a.md","Records":[{"eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":"no-such-bucket"},"object":{"key":"a.md"}}}]}`
	signed := func(at time.Time) map[string]string {
		return map[string]string{
			hooks.TimestampHeader: strconv.FormatInt(at.Unix(), 10),
			hooks.SignatureHeader: hooks.SignTimestamped([]byte(webhookSecret), at.Unix(), []byte(body)),
		}
	}
	now := time.Now()
	fresh := signed(now)
	tampered := signed(now.Add(-time.Minute))
	tampered[hooks.TimestampHeader] = strconv.FormatInt(now.Unix(), 10)
	tests := []struct {
		name   string
		hdr    map[string]string
		want   int
		detail string
	}{
		{"fresh delivery", fresh, http.StatusOK, ""},
		{"the same delivery replayed", fresh, http.StatusUnauthorized, "already received"},
		{"signed 6 minutes ago", signed(now.Add(-6 * time.Minute)), http.StatusUnauthorized, "outside the allowed window"},
		{"signed 6 minutes ahead", signed(now.Add(6 * time.Minute)), http.StatusUnauthorized, "outside the allowed window"},
		{"tampered timestamp", tampered, http.StatusUnauthorized, "invalid signature"},
		{"body-only signature", map[string]string{hooks.SignatureHeader: hooks.Sign([]byte(webhookSecret), []byte(body))}, http.StatusUnauthorized, hooks.TimestampHeader},
	}
	for _, tt := range tests {
		code, resp := do(t, http.MethodPost, url, "", body, tt.hdr)
		if code != tt.want || !strings.Contains(resp, tt.detail) {
			t.Errorf("%s: POST /webhooks/storage = %d %s, want %d %q", tt.name, code, resp, tt.want, tt.detail)
		}
		if strings.Contains(resp, webhookSecret) {
			t.Errorf("%s: the answer carries the secret", tt.name)
		}
	}
}

// TestSecurityRefreshHookReplay: the refresh hook's webhook, sent by a
// real server after POST /sync, passes a receiver that makes the
// documented check (hooks.VerifyRequest with a replay cache); the same
// delivery captured and sent again is refused. Before, the webhook was
// signed over its body alone, without X-BM-Timestamp: the check refused
// it, and a receiver that checked the body alone took every replay.
func TestSecurityRefreshHookReplay(t *testing.T) {
	const secret = "refresh-hook-secret-1"
	replays := hooks.NewReplayCache(0)
	type result struct {
		hdr  http.Header
		body []byte
		err  error
	}
	got := make(chan result, 10)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		err := hooks.VerifyRequest([]byte(secret), body, r.Header, time.Now(), replays)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
		}
		got <- result{r.Header.Clone(), body, err}
	}))
	defer recv.Close()
	r := serve(t, func(c *Config) {
		c.HookWebhookURL = recv.URL
		c.HookWebhookSecret = secret
		c.HookAttempts = 1
	})
	token := login(t, r.Server, demoEmail, demoPassword)
	if code, body := do(t, http.MethodPost, r.URL()+tenantapi.PathSync, token, `{"device":"laptop"}`, nil); code != http.StatusAccepted {
		t.Fatalf("POST /sync = %d %s", code, body)
	}
	var first result
	select {
	case first = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("no refresh hook delivery 30 s after POST /sync")
	}
	if first.err != nil {
		t.Fatalf("the server's delivery failed the documented check: %v", first.err)
	}
	req, err := http.NewRequest(http.MethodPost, recv.URL, bytes.NewReader(first.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = first.hdr
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	replay := <-got
	if resp.StatusCode != http.StatusUnauthorized || !errors.Is(replay.err, hooks.ErrReplay) {
		t.Errorf("the delivery sent again = %d (%v), want 401 ErrReplay", resp.StatusCode, replay.err)
	}
	t.Logf("FIGURE webhook: the refresh hook's delivery accepted once by the documented check, sent again answered %d (%v)", resp.StatusCode, replay.err)
}
