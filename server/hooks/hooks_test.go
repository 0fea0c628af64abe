package hooks

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
				if !VerifySignature(secret, body, r.Header.Get(SignatureHeader)) {
					t.Errorf("bad signature %q", r.Header.Get(SignatureHeader))
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

func TestVerifySignature(t *testing.T) {
	body := []byte(`{"a":1}`)
	good := Sign([]byte("k"), body)
	tests := []struct {
		name   string
		secret string
		body   []byte
		header string
		want   bool
	}{
		{"good", "k", body, good, true},
		{"other body", "k", []byte(`{"a":2}`), good, false},
		{"other key", "x", body, good, false},
		{"no prefix", "k", body, strings.TrimPrefix(good, "sha256="), false},
		{"not hex", "k", body, "sha256=zz", false},
		{"empty secret", "", body, Sign(nil, body), false},
	}
	for _, tc := range tests {
		if got := VerifySignature([]byte(tc.secret), tc.body, tc.header); got != tc.want {
			t.Errorf("%s: = %v, want %v", tc.name, got, tc.want)
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
