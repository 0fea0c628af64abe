package ops

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestReady(t *testing.T) {
	ok := Check{Name: "ok", Probe: func(context.Context) error { return nil }}
	broken := Check{Name: "broken", Probe: func(context.Context) error { return errors.New("disk on fire") }}
	stuck := Check{Name: "stuck", Probe: func(context.Context) error { time.Sleep(5 * time.Second); return nil }}
	tests := []struct {
		name   string
		checks []Check
		code   int
		want   map[string]string
	}{
		{"all pass", []Check{ok}, 200, map[string]string{"ok": "ok"}},
		{"one fails", []Check{ok, broken}, 503, map[string]string{"ok": "ok", "broken": "disk on fire"}},
		{"one ignores its deadline", []Check{ok, stuck}, 503, map[string]string{"ok": "ok", "stuck": "no answer within 100ms"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			start := time.Now()
			Ready(100*time.Millisecond, tt.checks...).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %s", d)
			}
			var rep ReadyReport
			if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tt.code || len(rep.Checks) != len(tt.want) {
				t.Fatalf("= %d %+v", rec.Code, rep)
			}
			for k, v := range tt.want {
				if rep.Checks[k] != v {
					t.Errorf("check %s = %q, want %q", k, rep.Checks[k], v)
				}
			}
		})
	}
}

// TestDraining: while draining, /readyz is 503 with the shutdown check
// failed and the checks are not run; otherwise they decide.
func TestDraining(t *testing.T) {
	var probed atomic.Int32
	ok := Check{Name: "ok", Probe: func(context.Context) error { probed.Add(1); return nil }}
	tests := []struct {
		name     string
		draining bool
		code     int
		want     map[string]string
		probes   int32
	}{
		{"serving", false, 200, map[string]string{"ok": "ok"}, 1},
		{"draining", true, 503, map[string]string{CheckShutdown: "draining: the server is shutting down"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			probed.Store(0)
			rec := httptest.NewRecorder()
			Draining(func() bool { return tt.draining }, Ready(time.Second, ok)).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
			var rep ReadyReport
			if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tt.code || !maps.Equal(rep.Checks, tt.want) {
				t.Errorf("= %d %+v, want %d %v", rec.Code, rep, tt.code, tt.want)
			}
			if wantStatus := map[bool]string{false: "ready", true: "unavailable"}[tt.draining]; rep.Status != wantStatus {
				t.Errorf("status = %q, want %q", rep.Status, wantStatus)
			}
			if got := probed.Load(); got != tt.probes {
				t.Errorf("checks run %d times, want %d", got, tt.probes)
			}
			if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q", cc)
			}
		})
	}
}

func TestMiddlewareLogsWithoutSecrets(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(ContextHandler{slog.NewJSONHandler(&logs, nil)})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		log.InfoContext(r.Context(), "inside")
		w.WriteHeader(http.StatusTeapot)
	})
	m := NewMetrics()
	var seen string
	h := Middleware(log, m, func(route string, code int) { seen = route }, mux)
	req := httptest.NewRequest("GET", "/items/42?code=sekrit-code", nil)
	req.Header.Set("Authorization", "Bearer sekrit-token")
	req.Header.Set(RequestIDHeader, "abc-1")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Header().Get(RequestIDHeader) != "abc-1" || seen != "GET /items/{id}" {
		t.Errorf("request id %q, route %q", rec.Header().Get(RequestIDHeader), seen)
	}
	out := logs.String()
	for _, want := range []string{`"msg":"inside","request_id":"abc-1"`, `"route":"GET /items/{id}"`, `"path":"/items/42"`, `"status":418`} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "sekrit") {
		t.Errorf("logs contain a secret:\n%s", out)
	}
}

func TestRequireBearer(t *testing.T) {
	h := RequireBearer("s3cret-token", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("metrics"))
	}))
	tests := []struct {
		name, auth string
		want       int
	}{
		{"no header", "", http.StatusUnauthorized},
		{"right token", "Bearer s3cret-token", http.StatusOK},
		{"wrong token", "Bearer s3cret-tokex", http.StatusUnauthorized},
		{"prefix of the token", "Bearer s3cret", http.StatusUnauthorized},
		{"basic auth", "Basic czNjcmV0LXRva2Vu", http.StatusUnauthorized},
		{"bare token", "s3cret-token", http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Errorf("= %d, want %d", w.Code, tc.want)
			}
			if strings.Contains(w.Body.String(), "s3cret") {
				t.Error("the answer carries the token")
			}
			if w.Code == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content, want string
		ok                  bool
	}{
		{"trimmed", "  tok-1\n", "tok-1", true},
		{"empty", " \n", "", false},
	}
	for _, tc := range tests {
		p := filepath.Join(dir, tc.name)
		if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := ReadTokenFile(p)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%s: = %q, %v", tc.name, got, err)
		}
	}
	if _, err := ReadTokenFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file was read")
	}
}
