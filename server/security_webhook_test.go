package server

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/server/hooks"
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
