package cloudapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// Error bodies in the shapes the Basic Memory CLI parses.
const (
	body401 = `{"detail": "Invalid or expired token"}`
	body403 = `{"detail": {"error": "subscription_required", "message": "Active subscription required", "subscribe_url": "https://basicmemory.com/subscribe"}}`
)

type tenantServer struct {
	srv   *httptest.Server
	calls atomic.Int32
}

// newTenantServer serves h for every request after checking the bearer
// token, counting requests.
func newTenantServer(t *testing.T, h http.HandlerFunc) *tenantServer {
	t.Helper()
	ts := &tenantServer{}
	ts.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer test-access" {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"detail": "missing bearer token"}`)
			return
		}
		h(w, r)
	}))
	t.Cleanup(ts.srv.Close)
	return ts
}

func newTestClient(t *testing.T, baseURL string) *Client {
	t.Helper()
	c, err := NewClient(baseURL, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "test-access"}), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c.InitialBackoff = time.Millisecond
	c.CallTimeout = 5 * time.Second
	return c
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if s, ok := v.(string); ok {
		io.WriteString(w, s)
		return
	}
	json.NewEncoder(w).Encode(v)
}

func TestClientRoutes(t *testing.T) {
	created := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	srv := newTenantServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.Method + " " + r.URL.Path {
		case "GET " + tenantapi.PathMountInfo:
			writeJSON(w, 200, tenantapi.MountInfo{TenantID: "t1", BucketName: "b1", HasCredentials: true})
		case "POST " + tenantapi.PathMountCredentials:
			var req tenantapi.CreateCredentialsRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Description != "laptop" {
				writeJSON(w, 422, `{"detail": "bad body"}`)
				return
			}
			writeJSON(w, 200, tenantapi.MountCredentials{TenantID: "t1", BucketName: "b1", AccessKey: "AK", SecretKey: "SK", CredentialID: "c1", EndpointURL: "https://s3.example", Region: "auto"})
		case "GET " + tenantapi.PathMountCredentials:
			writeJSON(w, 200, tenantapi.CredentialList{Credentials: []tenantapi.Credential{{ID: "c1", AccessKey: "AK", CreatedAt: created}}})
		case "DELETE " + tenantapi.PathMountCredentials + "/a/b c":
			if r.URL.EscapedPath() != tenantapi.PathMountCredentials+"/a%2Fb%20c" {
				writeJSON(w, 400, `{"detail": "id not escaped"}`)
				return
			}
			writeJSON(w, 200, tenantapi.RevokeResponse{ID: "a/b c", Revoked: true})
		case "DELETE " + tenantapi.PathMountCredentials + "/c1":
			writeJSON(w, 200, tenantapi.RevokeResponse{ID: "c1", Revoked: true, DeletionStatus: "pending"})
		case "POST " + tenantapi.PathSync:
			var req tenantapi.SyncRequest
			json.NewDecoder(r.Body).Decode(&req)
			writeJSON(w, 202, tenantapi.SyncResponse{Accepted: req.Device == "dev1"})
		case "GET " + tenantapi.PathTenantStatus:
			writeJSON(w, 200, tenantapi.TenantStatus{TenantID: "t1", SubscriptionStatus: "active", Devices: 2})
		case "GET " + tenantapi.PathProxyHealth:
			w.WriteHeader(http.StatusNoContent)
		default:
			writeJSON(w, 404, `{"detail": "no route"}`)
		}
	})
	c := newTestClient(t, srv.srv.URL+"/")
	ctx := context.Background()

	info, err := c.MountInfo(ctx)
	if err != nil || info.TenantID != "t1" || !info.HasCredentials {
		t.Errorf("MountInfo = %+v, %v", info, err)
	}
	mc, err := c.CreateCredentials(ctx, "laptop")
	if err != nil || mc.SecretKey != "SK" || mc.CredentialID != "c1" {
		t.Errorf("CreateCredentials = %v", err)
	}
	list, err := c.ListCredentials(ctx)
	if err != nil || len(list) != 1 || !list[0].CreatedAt.Equal(created) {
		t.Errorf("ListCredentials = %+v, %v", list, err)
	}
	rv, err := c.RevokeCredential(ctx, "c1")
	if err != nil || !rv.Revoked {
		t.Errorf("RevokeCredential = %+v, %v", rv, err)
	}
	if rv, err := c.RevokeCredential(ctx, "a/b c"); err != nil || rv.ID != "a/b c" {
		t.Errorf("RevokeCredential(odd id) = %+v, %v", rv, err)
	}
	sr, err := c.NotifySync(ctx, tenantapi.SyncRequest{Device: "dev1", Reason: "push"})
	if err != nil || !sr.Accepted {
		t.Errorf("NotifySync = %+v, %v", sr, err)
	}
	st, err := c.TenantStatus(ctx)
	if err != nil || st.SubscriptionStatus != "active" || st.Devices != 2 {
		t.Errorf("TenantStatus = %+v, %v", st, err)
	}
	if err := c.ProxyHealth(ctx); err != nil {
		t.Errorf("ProxyHealth = %v", err)
	}
}

func TestClientTypedErrors(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		header  map[string]string
		call    func(*Client) error
		check   func(*testing.T, error)
		wantReq int32
	}{
		{
			name: "401 unauthorized with detail", status: 401, body: body401,
			check: func(t *testing.T, err error) {
				var ae *APIError
				if !errors.Is(err, ErrUnauthorized) || !errors.As(err, &ae) || ae.Detail != "Invalid or expired token" {
					t.Errorf("err = %v, want ErrUnauthorized with detail", err)
				}
			},
		},
		{
			name: "403 subscription required under detail", status: 403, body: body403,
			check: func(t *testing.T, err error) {
				var se *SubscriptionRequiredError
				if !errors.As(err, &se) || se.Message != "Active subscription required" || se.SubscribeURL != "https://basicmemory.com/subscribe" {
					t.Errorf("err = %v, want SubscriptionRequiredError", err)
				}
			},
		},
		{
			name: "403 subscription required at top level", status: 403,
			body: `{"error": "subscription_required", "message": "Pay up", "subscribe_url": "https://example.com/s"}`,
			check: func(t *testing.T, err error) {
				var se *SubscriptionRequiredError
				if !errors.As(err, &se) || se.Message != "Pay up" || se.SubscribeURL != "https://example.com/s" {
					t.Errorf("err = %v, want SubscriptionRequiredError", err)
				}
			},
		},
		{
			name: "403 tenant suspended", status: 403,
			body: `{"detail": {"error": "tenant_suspended", "message": "Suspended by the admin."}}`,
			check: func(t *testing.T, err error) {
				var ae *APIError
				var se *SubscriptionRequiredError
				if errors.As(err, &se) || !errors.Is(err, ErrTenantSuspended) || !errors.As(err, &ae) || ae.Detail != "Suspended by the admin." {
					t.Errorf("err = %v, want ErrTenantSuspended with the server's message", err)
				}
			},
		},
		{
			name: "403 other", status: 403, body: `{"detail": "Forbidden"}`,
			check: func(t *testing.T, err error) {
				var ae *APIError
				var se *SubscriptionRequiredError
				if errors.As(err, &se) || !errors.As(err, &ae) || ae.Status != 403 || ae.Detail != "Forbidden" {
					t.Errorf("err = %v, want plain APIError 403", err)
				}
			},
		},
		{
			name: "404 on a tenant route", status: 404, body: `{"detail": "Tenant not found"}`,
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrTenantNotFound) {
					t.Errorf("err = %v, want ErrTenantNotFound", err)
				}
			},
		},
		{
			name: "404 on revoke is the credential", status: 404, body: `{"detail": "Credential not found"}`,
			call: func(c *Client) error { _, err := c.RevokeCredential(context.Background(), "nope"); return err },
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrCredentialNotFound) || errors.Is(err, ErrTenantNotFound) {
					t.Errorf("err = %v, want ErrCredentialNotFound", err)
				}
			},
		},
		{
			name: "404 off tenant routes is plain", status: 404, body: `{"detail": "Not Found"}`,
			call: func(c *Client) error { return c.ProxyHealth(context.Background()) },
			check: func(t *testing.T, err error) {
				var ae *APIError
				if errors.Is(err, ErrTenantNotFound) || !errors.As(err, &ae) || ae.Status != 404 {
					t.Errorf("err = %v, want plain APIError 404", err)
				}
			},
		},
		{
			name: "429 with Retry-After", status: 429, body: `{"detail": "slow down"}`, header: map[string]string{"Retry-After": "7"},
			check: func(t *testing.T, err error) {
				var re *RateLimitedError
				if !errors.As(err, &re) || re.RetryAfter != 7*time.Second {
					t.Errorf("err = %v, want RateLimitedError 7s", err)
				}
			},
		},
		{
			name: "422 validation list detail", status: 422, body: `{"detail": [{"loc": ["body"], "msg": "bad"}]}`,
			check: func(t *testing.T, err error) {
				var ae *APIError
				if !errors.As(err, &ae) || ae.Status != 422 || !strings.Contains(ae.Detail, `"msg":"bad"`) {
					t.Errorf("err = %v, want APIError 422 with the list", err)
				}
			},
		},
		{
			name: "400 is not retried", status: 400, body: `{"detail": "bad request"}`, wantReq: 1,
			check: func(t *testing.T, err error) {
				var ae *APIError
				if !errors.As(err, &ae) || ae.Status != 400 || ae.Detail != "bad request" {
					t.Errorf("err = %v, want APIError 400", err)
				}
			},
		},
		{
			name: "500 is retried up to the limit", status: 500, body: `internal error`, wantReq: 3,
			check: func(t *testing.T, err error) {
				var ae *APIError
				if !errors.As(err, &ae) || ae.Status != 500 || ae.Detail != "internal error" {
					t.Errorf("err = %v, want APIError 500", err)
				}
			},
		},
		{
			name: "503 on create credentials is not retried", status: 503, body: `{"detail": "busy"}`, wantReq: 1,
			call: func(c *Client) error { _, err := c.CreateCredentials(context.Background(), "x"); return err },
			check: func(t *testing.T, err error) {
				var ae *APIError
				if !errors.As(err, &ae) || ae.Status != 503 {
					t.Errorf("err = %v, want APIError 503", err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTenantServer(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				writeJSON(w, tt.status, tt.body)
			})
			c := newTestClient(t, srv.srv.URL)
			call := tt.call
			if call == nil {
				call = func(c *Client) error { _, err := c.MountInfo(context.Background()); return err }
			}
			err := call(c)
			if err == nil {
				t.Fatal("no error")
			}
			tt.check(t, err)
			if strings.Contains(err.Error(), "test-access") {
				t.Error("error message contains the access token")
			}
			if tt.wantReq != 0 && srv.calls.Load() != tt.wantReq {
				t.Errorf("requests = %d, want %d", srv.calls.Load(), tt.wantReq)
			}
		})
	}
}

func TestClientRetriesThenSucceeds(t *testing.T) {
	var n atomic.Int32
	srv := newTenantServer(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			writeJSON(w, 503, `{"detail": "starting"}`)
			return
		}
		writeJSON(w, 200, tenantapi.TenantStatus{TenantID: "t1"})
	})
	c := newTestClient(t, srv.srv.URL)
	st, err := c.TenantStatus(context.Background())
	if err != nil || st.TenantID != "t1" {
		t.Fatalf("TenantStatus = %+v, %v", st, err)
	}
	if got := srv.calls.Load(); got != 2 {
		t.Errorf("requests = %d, want 2", got)
	}
}

func TestClientRetriesNetworkError(t *testing.T) {
	// A server that drops the first connection mid-request.
	var n atomic.Int32
	srv := newTenantServer(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			hj, ok := w.(http.Hijacker)
			if !ok {
				t.Fatal("no hijacker")
			}
			conn, _, _ := hj.Hijack()
			conn.Close()
			return
		}
		writeJSON(w, 200, tenantapi.MountInfo{TenantID: "t1"})
	})
	c := newTestClient(t, srv.srv.URL)
	if info, err := c.MountInfo(context.Background()); err != nil || info.TenantID != "t1" {
		t.Fatalf("MountInfo = %+v, %v", info, err)
	}
	if got := n.Load(); got != 2 {
		t.Errorf("attempts = %d, want 2", got)
	}
}

func TestClientDeadline(t *testing.T) {
	release := make(chan struct{})
	srv := newTenantServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	c := newTestClient(t, srv.srv.URL)
	c.CallTimeout = 100 * time.Millisecond
	start := time.Now()
	_, err := c.MountInfo(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("call took %v with a 100ms deadline", d)
	}
	if got := srv.calls.Load(); got != 1 {
		t.Errorf("requests = %d, want 1 (no retry after the deadline)", got)
	}
}

type failingSource struct{ err error }

func (f failingSource) Token() (*oauth2.Token, error) { return nil, f.err }

func TestClientLoginRequired(t *testing.T) {
	srv := newTenantServer(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, `{}`) })
	c, err := NewClient(srv.srv.URL, failingSource{ErrLoginRequired}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.MountInfo(context.Background()); !errors.Is(err, ErrLoginRequired) {
		t.Errorf("err = %v, want ErrLoginRequired", err)
	}
	if got := srv.calls.Load(); got != 0 {
		t.Errorf("requests = %d, want none without a token", got)
	}
}

func TestNewClientRequiresHTTPS(t *testing.T) {
	ts := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "x"})
	if _, err := NewClient("http://api.example.com", ts, nil, nil); err == nil {
		t.Error("NewClient accepted plain http to a remote host")
	}
	if _, err := NewClient("https://api.example.com", ts, nil, nil); err != nil {
		t.Errorf("NewClient(https) = %v", err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"12", 12 * time.Second},
		{"-1", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"garbage", 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
