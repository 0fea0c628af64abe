package hooks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/server/events"
)

var at = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

type recorder struct {
	mu    sync.Mutex
	kinds []string
	ch    chan string
}

func (r *recorder) AddAudit(_ context.Context, tenantID, kind, detail string) error {
	r.mu.Lock()
	r.kinds = append(r.kinds, tenantID+":"+kind)
	r.mu.Unlock()
	if r.ch != nil {
		r.ch <- tenantID + ":" + kind
	}
	return nil
}

func TestCommand(t *testing.T) {
	out := filepath.Join(t.TempDir(), "env")
	r, err := New(Config{Command: []string{"sh", "-c", `echo "$BM_TENANT_ID|$BM_DEVICE|$BM_REASON|$BM_EVENT_AT" > "$0"`, out}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(context.Background(), events.Event{TenantID: "T1", Device: "laptop", Reason: "sync", At: at}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(b)), "T1|laptop|sync|2026-03-04T05:06:07Z"; got != want {
		t.Errorf("hook saw %q, want %q", got, want)
	}
}

func TestWebhook(t *testing.T) {
	secret := []byte("s3cret")
	tests := []struct {
		name      string
		failFirst int32 // answer 500 this many times
		attempts  int
		timeout   time.Duration
		slow      bool
		wantErr   bool
		wantCalls int32
	}{
		{name: "ok", attempts: 3, wantCalls: 1},
		{name: "retried", failFirst: 2, attempts: 3, wantCalls: 3},
		{name: "gives up", failFirst: 5, attempts: 2, wantErr: true, wantCalls: 2},
		{name: "times out", slow: true, attempts: 1, timeout: 50 * time.Millisecond, wantErr: true, wantCalls: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := calls.Add(1)
				body, _ := io.ReadAll(r.Body)
				if err := VerifyRequest(secret, body, r.Header, time.Now(), nil); err != nil {
					t.Errorf("signature %q: %v", r.Header.Get(SignatureHeader), err)
				}
				var ev events.Event
				if err := json.Unmarshal(body, &ev); err != nil || ev.TenantID != "T1" || !ev.At.Equal(at) {
					t.Errorf("body %s: %v", body, err)
				}
				if tc.slow {
					select {
					case <-r.Context().Done():
					case <-time.After(2 * time.Second):
					}
					return
				}
				if n <= tc.failFirst {
					w.WriteHeader(500)
				}
			}))
			defer srv.Close()
			r, err := New(Config{WebhookURL: srv.URL, WebhookSecret: secret, Attempts: tc.attempts, Backoff: time.Millisecond, Timeout: tc.timeout})
			if err != nil {
				t.Fatal(err)
			}
			err = r.Run(context.Background(), events.Event{TenantID: "T1", At: at})
			if (err != nil) != tc.wantErr {
				t.Errorf("Run = %v, want error %v", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), string(secret)) {
				t.Error("error carries the secret")
			}
			if got := calls.Load(); got != tc.wantCalls {
				t.Errorf("calls = %d, want %d", got, tc.wantCalls)
			}
		})
	}
}

// delivery is a webhook delivery as a receiver got it.
type delivery struct {
	header http.Header
	body   []byte
}

// documentedCheck is the check the package doc (and the README) tell a
// receiver to make, written from that text alone: the HMAC-SHA256 of the
// timestamp, ".", and the body, a timestamp within 5 minutes, and a
// signature not seen before.
func documentedCheck(secret []byte) func(d delivery, now time.Time) error {
	var mu sync.Mutex
	seen := map[string]bool{}
	return func(d delivery, now time.Time) error {
		ts := d.header.Get("X-BM-Timestamp")
		sec, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			return errors.New("no timestamp")
		}
		if age := now.Sub(time.Unix(sec, 0)); age > 5*time.Minute || age < -5*time.Minute {
			return errors.New("old timestamp")
		}
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(ts + "."))
		m.Write(d.body)
		want := "sha256=" + hex.EncodeToString(m.Sum(nil))
		got := d.header.Get("X-BM-Signature-256")
		if !hmac.Equal([]byte(got), []byte(want)) {
			return errors.New("bad signature")
		}
		mu.Lock()
		defer mu.Unlock()
		if seen[got] {
			return errors.New("replay")
		}
		seen[got] = true
		return nil
	}
}

// TestWebhookReceiverRefusesReplays: a receiver of the refresh hook that
// makes the documented check (by hand, or with VerifyRequest and a
// ReplayCache) accepts a fresh delivery, and refuses the same delivery
// sent again, one signed 6 minutes ago and one whose timestamp was
// changed. Before, the webhook was signed over its body alone: with no
// timestamp, the documented check refused every delivery, and a receiver
// checking the body alone accepted every replay.
func TestWebhookReceiverRefusesReplays(t *testing.T) {
	secret := []byte("hook-s3cret")
	replays := NewReplayCache(0)
	checks := map[string]func(d delivery, now time.Time) error{
		"documented check": documentedCheck(secret),
		"VerifyRequest": func(d delivery, now time.Time) error {
			return VerifyRequest(secret, d.body, d.header, now, replays)
		},
	}
	for name, check := range checks {
		t.Run(name, func(t *testing.T) {
			var mu sync.Mutex
			var got []delivery
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				d := delivery{r.Header.Clone(), body}
				mu.Lock()
				got = append(got, d)
				mu.Unlock()
				if err := check(d, time.Now()); err != nil {
					http.Error(w, err.Error(), http.StatusUnauthorized)
				}
			}))
			defer srv.Close()
			resend := func(d delivery) int {
				req, err := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(d.body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header = d.header.Clone()
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			run := func(now func() time.Time) error {
				r, err := New(Config{WebhookURL: srv.URL, WebhookSecret: secret, Attempts: 1, Now: now})
				if err != nil {
					t.Fatal(err)
				}
				return r.Run(context.Background(), events.Event{TenantID: "T1", Reason: "sync", At: at})
			}
			if err := run(time.Now); err != nil {
				t.Fatalf("fresh delivery refused: %v", err)
			}
			mu.Lock()
			fresh := got[0]
			mu.Unlock()
			if code := resend(fresh); code != http.StatusUnauthorized {
				t.Errorf("the same delivery sent again = %d, want 401", code)
			}
			if err := run(func() time.Time { return time.Now().Add(-6 * time.Minute) }); err == nil {
				t.Error("a delivery signed 6 minutes ago was accepted")
			}
			tampered := delivery{fresh.header.Clone(), fresh.body}
			ts, _ := strconv.ParseInt(fresh.header.Get(TimestampHeader), 10, 64)
			tampered.header.Set(TimestampHeader, strconv.FormatInt(ts+1, 10))
			if code := resend(tampered); code != http.StatusUnauthorized {
				t.Errorf("the delivery with its timestamp changed = %d, want 401", code)
			}
		})
	}
}

func TestSignRequest(t *testing.T) {
	secret, body := []byte("k"), []byte(`{"a":1}`)
	h := http.Header{}
	SignRequest(h, secret, body, at)
	if got := h.Get(TimestampHeader); got != strconv.FormatInt(at.Unix(), 10) {
		t.Errorf("%s = %q", TimestampHeader, got)
	}
	if got, want := h.Get(SignatureHeader), SignTimestamped(secret, at.Unix(), body); got != want {
		t.Errorf("%s = %q, want %q", SignatureHeader, got, want)
	}
	c := NewReplayCache(0)
	upper := h.Clone()
	upper.Set(SignatureHeader, "sha256="+strings.ToUpper(strings.TrimPrefix(h.Get(SignatureHeader), "sha256=")))
	tests := []struct {
		name string
		h    http.Header
		want error
	}{
		{"first", h, nil},
		{"again", h, ErrReplay},
		{"again in upper case", upper, ErrReplay},
		{"no timestamp", http.Header{SignatureHeader: {Sign(secret, body)}}, ErrTimestampRequired},
	}
	for _, tc := range tests {
		if err := VerifyRequest(secret, body, tc.h, at.Add(time.Second), c); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestTriggerNeverBlocksAndCoalesces(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev events.Event
		_ = json.NewDecoder(r.Body).Decode(&ev)
		mu.Lock()
		seen = append(seen, ev.TenantID+"/"+ev.Reason)
		mu.Unlock()
		<-release
	}))
	defer srv.Close()
	defer close(release)
	rec := &recorder{ch: make(chan string, 10)}
	r, err := New(Config{WebhookURL: srv.URL, Workers: 1, QueueSize: 2, Attempts: 1, Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Serve(ctx)

	start := time.Now()
	if !r.Trigger(events.Event{TenantID: "A", Reason: "1"}) {
		t.Fatal("first trigger refused")
	}
	// Wait until the worker is busy with A/1.
	for deadline := time.Now().Add(5 * time.Second); ; {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("hook never ran")
		}
		time.Sleep(time.Millisecond)
	}
	// Queue of 2: B and C fit, B's later events coalesce, D does not fit.
	results := []bool{
		r.Trigger(events.Event{TenantID: "B", Reason: "1"}),
		r.Trigger(events.Event{TenantID: "B", Reason: "2"}),
		r.Trigger(events.Event{TenantID: "C", Reason: "1"}),
		r.Trigger(events.Event{TenantID: "B", Reason: "3"}),
		r.Trigger(events.Event{TenantID: "D", Reason: "1"}),
	}
	if time.Since(start) > 2*time.Second {
		t.Error("Trigger blocked")
	}
	if want := []bool{true, true, true, true, false}; !equal(results, want) {
		t.Errorf("Trigger results = %v, want %v", results, want)
	}
	for range 3 {
		release <- struct{}{}
		select {
		case <-rec.ch:
		case <-time.After(5 * time.Second):
			t.Fatal("hook run not recorded")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(seen, ","); got != "A/1,B/3,C/1" {
		t.Errorf("hook runs = %s, want A/1,B/3,C/1", got)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got := strings.Join(rec.kinds, ","); got != "A:hook.ok,B:hook.ok,C:hook.ok" {
		t.Errorf("audit = %s", got)
	}
}

func TestDisabled(t *testing.T) {
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Enabled() || r.Trigger(events.Event{TenantID: "A"}) {
		t.Error("a runner without command or webhook triggered")
	}
	if _, err := New(Config{WebhookURL: "ftp://x"}); err == nil {
		t.Error("ftp webhook accepted")
	}
}

func equal(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
