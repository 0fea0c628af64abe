package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/server/storage"
	"github.com/basicmachines-co/bm-agent/server/store"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// fakeAuth maps the bearer token to claims.
type fakeAuth map[string]tenantapi.Claims

func (f fakeAuth) Authenticate(r *http.Request) (tenantapi.Claims, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return tenantapi.Claims{}, errors.New("no bearer token")
	}
	if tok == "tok-unavailable" {
		return tenantapi.Claims{}, checkDown{}
	}
	c, ok := f[tok]
	if !ok {
		return tenantapi.Claims{}, errors.New("unknown token " + tok)
	}
	return c, nil
}

// checkDown is the error of an authenticator that could not check the
// token (its store failed), as the issuer's is.
type checkDown struct{}

func (checkDown) Error() string         { return "session check unavailable: database is locked" }
func (checkDown) AuthUnavailable() bool { return true }

// fakeProvider is a storage.Provider that records its calls. The real
// providers (embedded, MinIO, S3) are tested in their own packages; here only
// what the handlers ask of a provider matters.
type fakeProvider struct {
	mu        sync.Mutex
	minted    []string      // buckets MintKey was called for
	revoked   []storage.Key // keys RevokeKey was called with
	mintErr   error
	revokeErr error
	fixedKey  string // if set, every minted key has this access key
	n         int
}

func (p *fakeProvider) Name() string                                       { return "fake" }
func (p *fakeProvider) CreateBucket(context.Context, string) error         { return nil }
func (p *fakeProvider) DeleteBucket(context.Context, string) error         { return nil }
func (p *fakeProvider) ListBuckets(context.Context) ([]string, error)      { return nil, nil }
func (p *fakeProvider) TestKey(context.Context, storage.Key, string) error { return nil }
func (p *fakeProvider) Endpoint() (string, string)                         { return "http://127.0.0.1:9000", "us-east-1" }

func (p *fakeProvider) MintKey(_ context.Context, bucket string) (storage.Key, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.minted = append(p.minted, bucket)
	if p.mintErr != nil {
		return storage.Key{}, p.mintErr
	}
	p.n++
	ak := "AK" + store.NewID()[:8]
	if p.fixedKey != "" {
		ak = p.fixedKey
	}
	return storage.Key{AccessKey: ak, SecretKey: "SECRET-" + store.NewID(), Ref: "ref-" + ak}, nil
}

func (p *fakeProvider) RevokeKey(_ context.Context, k storage.Key) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revoked = append(p.revoked, k)
	return p.revokeErr
}

func (p *fakeProvider) calls() (minted []string, revoked []storage.Key) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.minted...), append([]storage.Key(nil), p.revoked...)
}

type syncCall struct {
	tenant string
	req    tenantapi.SyncRequest
}

type env struct {
	t     testing.TB
	dir   string
	st    *store.Store
	prov  *fakeProvider
	srv   *httptest.Server
	logs  *bytes.Buffer
	syncs []syncCall
}

const subscribeURL = "https://basicmemory.com/subscribe"

var fixedNow = time.Date(2026, 2, 3, 4, 5, 6, 789000000, time.UTC)

// newEnv starts the API on 127.0.0.1 over a real SQLite store with tenants:
// A and B (active, subscribed, with a bucket), S (suspended), D (deleted),
// L (subscription lapsed in the store), N (no bucket yet).
func newEnv(t testing.TB, opts ...func(*Handler)) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), prov: &fakeProvider{}, logs: &bytes.Buffer{}}
	st, err := store.Open(context.Background(), filepath.Join(e.dir, "bm.db"))
	if err != nil {
		t.Fatal(err)
	}
	e.st = st
	t.Cleanup(func() { st.Close() })
	tenants := []store.Tenant{
		{ID: "A", BucketName: "bucket-a", SubscriptionStatus: "active", SubscriptionTier: "pro"},
		{ID: "B", BucketName: "bucket-b", SubscriptionStatus: "trialing", SubscriptionTier: "pro"},
		{ID: "S", BucketName: "bucket-s", SubscriptionStatus: "active", Status: store.TenantSuspended},
		{ID: "D", BucketName: "bucket-d", SubscriptionStatus: "active", Status: store.TenantDeleted},
		{ID: "L", BucketName: "bucket-l", SubscriptionStatus: "canceled", SubscriptionTier: "pro"},
		{ID: "N", SubscriptionStatus: "active"},
		{ID: "F", BucketName: "bucket-f", SubscriptionStatus: "active", SubscriptionTier: "free"},
	}
	auth := fakeAuth{}
	for _, tn := range tenants {
		if err := st.CreateTenantWithAccount(context.Background(), tn, store.Account{ID: "acct-" + tn.ID, Email: tn.ID + "@example.com"}); err != nil {
			t.Fatal(err)
		}
		auth["tok-"+tn.ID] = tenantapi.Claims{Subject: "acct-" + tn.ID, Email: tn.ID + "@example.com", TenantID: tn.ID, SubscriptionStatus: "active", SubscriptionTier: "pro"}
	}
	auth["tok-lapsed-claims"] = tenantapi.Claims{Subject: "acct-A", TenantID: "A", SubscriptionStatus: "past_due"}
	auth["tok-ghost"] = tenantapi.Claims{Subject: "x", TenantID: "ghost", SubscriptionStatus: "active"}
	auth["tok-notenant"] = tenantapi.Claims{Subject: "x", SubscriptionStatus: "active"}
	auth["tok-A-nosub"] = tenantapi.Claims{Subject: "acct-A", TenantID: "A"}
	auth["tok-L-nosub"] = tenantapi.Claims{Subject: "acct-L", TenantID: "L"}
	var mu sync.Mutex
	h := &Handler{
		Store:        st,
		Storage:      e.prov,
		Auth:         auth,
		Logger:       slog.New(slog.NewTextHandler(syncWriter{&mu, e.logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		SubscribeURL: subscribeURL,
		Now:          func() time.Time { return fixedNow },
		OnSync: func(_ context.Context, tenant string, req tenantapi.SyncRequest) {
			mu.Lock()
			defer mu.Unlock()
			e.syncs = append(e.syncs, syncCall{tenant, req})
		},
	}
	for _, o := range opts {
		o(h)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// do sends a request with token (none if "") and returns status, headers
// and body.
func (e *env) do(method, path, token, body string) (int, http.Header, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return e.send(req)
}

// send sends req and returns status, headers and body.
func (e *env) send(req *http.Request) (int, http.Header, []byte) {
	e.t.Helper()
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func decode[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, b, err)
	}
	return v
}

func (e *env) mint(token string) tenantapi.MountCredentials {
	e.t.Helper()
	code, _, b := e.do("POST", tenantapi.PathMountCredentials, token, `{"description":"work laptop"}`)
	if code != http.StatusOK {
		e.t.Fatalf("POST credentials = %d %s", code, b)
	}
	return decode[tenantapi.MountCredentials](e.t, b)
}

var allRoutes = []struct{ method, path string }{
	{"GET", tenantapi.PathMountInfo},
	{"POST", tenantapi.PathMountCredentials},
	{"GET", tenantapi.PathMountCredentials},
	{"DELETE", tenantapi.PathMountCredentials + "/some-id"},
	{"POST", tenantapi.PathSync},
	{"GET", tenantapi.PathTenantStatus},
	{"GET", tenantapi.PathProxyHealth},
}

func TestUnauthenticated(t *testing.T) {
	e := newEnv(t)
	for _, rt := range allRoutes {
		for _, tc := range []struct{ token, detail string }{
			{"", "Not authenticated"},
			{"forged", "Invalid or expired token"},
		} {
			code, hdr, b := e.do(rt.method, rt.path, tc.token, "")
			if code != http.StatusUnauthorized {
				t.Errorf("%s %s token=%q: status %d, want 401", rt.method, rt.path, tc.token, code)
				continue
			}
			if got := hdr.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("%s %s: WWW-Authenticate = %q", rt.method, rt.path, got)
			}
			if got := decode[tenantapi.ErrorBody](t, b); got.Detail != tc.detail {
				t.Errorf("%s %s: detail = %q, want %q", rt.method, rt.path, got.Detail, tc.detail)
			}
		}
	}
	if strings.Contains(e.logs.String(), "forged") {
		t.Error("the token reached the log")
	}
	if m, _ := e.prov.calls(); len(m) != 0 {
		t.Errorf("MintKey called %d times without authentication", len(m))
	}
}

func TestCredentialLifecycle(t *testing.T) {
	e := newEnv(t)

	// Before any key.
	code, _, b := e.do("GET", tenantapi.PathMountInfo, "tok-A", "")
	if code != http.StatusOK {
		t.Fatalf("mount info = %d %s", code, b)
	}
	if got, want := string(b), `{"tenant_id":"A","bucket_name":"bucket-a","has_credentials":false,"credentials_created_at":null}`+"\n"; got != want {
		t.Errorf("mount info = %s, want %s", got, want)
	}

	mc := e.mint("tok-A")
	if mc.TenantID != "A" || mc.BucketName != "bucket-a" || mc.EndpointURL != "http://127.0.0.1:9000" || mc.Region != "us-east-1" ||
		mc.AccessKey == "" || !strings.HasPrefix(mc.SecretKey, "SECRET-") || mc.CredentialID == "" {
		t.Fatalf("minted = %+v", mc)
	}
	if minted, _ := e.prov.calls(); len(minted) != 1 || minted[0] != "bucket-a" {
		t.Errorf("MintKey calls = %v, want [bucket-a]", minted)
	}

	// List: the key, without its secret.
	code, _, b = e.do("GET", tenantapi.PathMountCredentials, "tok-A", "")
	if code != http.StatusOK {
		t.Fatalf("list = %d %s", code, b)
	}
	if bytes.Contains(b, []byte(mc.SecretKey)) || bytes.Contains(b, []byte("secret")) {
		t.Errorf("list leaks a secret: %s", b)
	}
	list := decode[tenantapi.CredentialList](t, b)
	if len(list.Credentials) != 1 {
		t.Fatalf("list = %+v", list)
	}
	if c := list.Credentials[0]; c.ID != mc.CredentialID || c.AccessKey != mc.AccessKey || c.Description != "work laptop" ||
		!c.CreatedAt.Equal(fixedNow) || c.LastUsedAt != nil || c.RevokedAt != nil {
		t.Errorf("listed credential = %+v", c)
	}

	code, _, b = e.do("GET", tenantapi.PathMountInfo, "tok-A", "")
	info := decode[tenantapi.MountInfo](t, b)
	if code != http.StatusOK || !info.HasCredentials || info.CredentialsCreatedAt == nil || *info.CredentialsCreatedAt != "2026-02-03T04:05:06.789Z" {
		t.Errorf("mount info after mint = %d %s", code, b)
	}

	code, _, b = e.do("GET", tenantapi.PathTenantStatus, "tok-A", "")
	if got := decode[tenantapi.TenantStatus](t, b); code != http.StatusOK || got != (tenantapi.TenantStatus{
		TenantID: "A", Email: "A@example.com", SubscriptionStatus: "active", SubscriptionTier: "pro", BucketName: "bucket-a", Devices: 1,
	}) {
		t.Errorf("status = %d %+v", code, got)
	}

	// The secret is nowhere on disk, nor in the logs.
	assertNotOnDisk(t, e.dir, mc.SecretKey)
	if strings.Contains(e.logs.String(), mc.SecretKey) {
		t.Error("the secret reached the log")
	}

	// Revoke.
	code, _, b = e.do("DELETE", tenantapi.PathMountCredentials+"/"+mc.CredentialID, "tok-A", "")
	if code != http.StatusOK {
		t.Fatalf("delete = %d %s", code, b)
	}
	if got := decode[tenantapi.RevokeResponse](t, b); got != (tenantapi.RevokeResponse{ID: mc.CredentialID, Revoked: true, DeletionStatus: "completed"}) {
		t.Errorf("delete = %+v", got)
	}
	_, revoked := e.prov.calls()
	if len(revoked) != 1 || revoked[0].AccessKey != mc.AccessKey || revoked[0].Ref != "ref-"+mc.AccessKey || revoked[0].SecretKey != "" {
		t.Errorf("RevokeKey calls = %+v", revoked)
	}
	if _, active, err := e.st.LookupAccessKey(context.Background(), mc.AccessKey); err != nil || active {
		t.Errorf("key after revoke: active=%v err=%v", active, err)
	}
	code, _, b = e.do("GET", tenantapi.PathMountCredentials, "tok-A", "")
	if got := string(b); code != http.StatusOK || got != `{"credentials":[]}`+"\n" {
		t.Errorf("list after revoke = %d %s", code, got)
	}
	// Revoking again is idempotent and does not call the provider again.
	code, _, b = e.do("DELETE", tenantapi.PathMountCredentials+"/"+mc.CredentialID, "tok-A", "")
	if got := decode[tenantapi.RevokeResponse](t, b); code != http.StatusOK || got.DeletionStatus != "completed" {
		t.Errorf("second delete = %d %s", code, b)
	}
	if _, revoked := e.prov.calls(); len(revoked) != 1 {
		t.Errorf("RevokeKey called %d times, want 1", len(revoked))
	}
	code, _, _ = e.do("DELETE", tenantapi.PathMountCredentials+"/no-such-id", "tok-A", "")
	if code != http.StatusNotFound {
		t.Errorf("delete unknown id = %d, want 404", code)
	}

	ev, err := e.st.ListAudit(context.Background(), "A", 10)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, x := range ev {
		kinds = append(kinds, x.Kind)
		if strings.Contains(x.Detail, mc.SecretKey) {
			t.Errorf("audit %s carries the secret", x.Kind)
		}
	}
	if strings.Join(kinds, ",") != "credential.revoked,credential.created" {
		t.Errorf("audit kinds = %v", kinds)
	}
}

// assertNotOnDisk fails if s occurs in any file under dir (the database, its
// WAL and shared-memory files).
func assertNotOnDisk(t *testing.T, dir, s string) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(b, []byte(s)) {
			t.Errorf("%s contains the secret", filepath.Base(p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("no database files found")
	}
}

func TestTenantIsolation(t *testing.T) {
	e := newEnv(t)
	a := e.mint("tok-A")
	b := e.mint("tok-B")
	if minted, _ := e.prov.calls(); len(minted) != 2 || minted[0] != "bucket-a" || minted[1] != "bucket-b" {
		t.Errorf("MintKey buckets = %v", minted)
	}
	if b.BucketName != "bucket-b" || b.TenantID != "B" {
		t.Errorf("B minted %+v", b)
	}

	_, _, body := e.do("GET", tenantapi.PathMountCredentials, "tok-B", "")
	list := decode[tenantapi.CredentialList](t, body)
	if len(list.Credentials) != 1 || list.Credentials[0].ID != b.CredentialID {
		t.Errorf("B lists %+v, want only its own key", list)
	}
	code, _, body := e.do("DELETE", tenantapi.PathMountCredentials+"/"+a.CredentialID, "tok-B", "")
	if code != http.StatusNotFound {
		t.Errorf("B revokes A's key: %d %s, want 404", code, body)
	}
	if _, revoked := e.prov.calls(); len(revoked) != 0 {
		t.Errorf("RevokeKey called: %+v", revoked)
	}
	if _, active, _ := e.st.LookupAccessKey(context.Background(), a.AccessKey); !active {
		t.Error("A's key inactive after B's attempt")
	}
	// The body is no way to pick a tenant.
	e.do("POST", tenantapi.PathSync, "tok-B", `{"tenant_id":"A","device":"d"}`)
	if len(e.syncs) != 1 || e.syncs[0].tenant != "B" {
		t.Errorf("sync calls = %+v", e.syncs)
	}
}

func TestForbidden(t *testing.T) {
	subBody := `{"detail":{"error":"subscription_required","message":"Active subscription required","subscribe_url":"` + subscribeURL + `"}}` + "\n"
	suspended := `{"detail":{"error":"tenant_suspended","message":"` + SuspendedMessage + `"}}` + "\n"
	deleted := `{"detail":{"error":"tenant_suspended","message":"` + DeletedMessage + `"}}` + "\n"
	tests := []struct {
		name, token, method, path string
		code                      int
		body                      string
	}{
		{"claims lapsed: health", "tok-lapsed-claims", "GET", tenantapi.PathProxyHealth, 403, subBody},
		{"claims lapsed: mint", "tok-lapsed-claims", "POST", tenantapi.PathMountCredentials, 403, subBody},
		{"claims lapsed: info", "tok-lapsed-claims", "GET", tenantapi.PathMountInfo, 403, subBody},
		{"claims lapsed: sync", "tok-lapsed-claims", "POST", tenantapi.PathSync, 403, subBody},
		{"store lapsed: mint", "tok-L", "POST", tenantapi.PathMountCredentials, 403, subBody},
		{"store lapsed: health", "tok-L", "GET", tenantapi.PathProxyHealth, 403, subBody},
		{"free tier: mint", "tok-F", "POST", tenantapi.PathMountCredentials, 403, subBody},
		{"free tier: info", "tok-F", "GET", tenantapi.PathMountInfo, 403, subBody},
		{"free tier: sync", "tok-F", "POST", tenantapi.PathSync, 403, subBody},
		{"suspended: mint", "tok-S", "POST", tenantapi.PathMountCredentials, 403, suspended},
		{"suspended: health", "tok-S", "GET", tenantapi.PathProxyHealth, 403, suspended},
		{"suspended: list", "tok-S", "GET", tenantapi.PathMountCredentials, 403, suspended},
		{"deleted: mint", "tok-D", "POST", tenantapi.PathMountCredentials, 403, deleted},
		{"unknown tenant", "tok-ghost", "GET", tenantapi.PathProxyHealth, 403, `{"detail":"tenant not found"}` + "\n"},
		{"token cannot be checked now", "tok-unavailable", "GET", tenantapi.PathMountInfo, 503, `{"detail":"` + DetailAuthUnavailable + `"}` + "\n"},
		{"no tenant claim", "tok-notenant", "GET", tenantapi.PathTenantStatus, 403, `{"detail":"no tenant for this account"}` + "\n"},
		{"no bucket: mint", "tok-N", "POST", tenantapi.PathMountCredentials, 409, `{"detail":"tenant has no bucket yet"}` + "\n"},
		{"no bucket: info", "tok-N", "GET", tenantapi.PathMountInfo, 409, `{"detail":"tenant has no bucket yet"}` + "\n"},
		// Still allowed without a subscription: seeing one's status and keys.
		{"store lapsed: status", "tok-L", "GET", tenantapi.PathTenantStatus, 200,
			`{"tenant_id":"L","email":"L@example.com","subscription_status":"canceled","subscription_tier":"pro","bucket_name":"bucket-l","devices":0}` + "\n"},
		{"store lapsed: list", "tok-L", "GET", tenantapi.PathMountCredentials, 200, `{"credentials":[]}` + "\n"},
		{"free tier: status", "tok-F", "GET", tenantapi.PathTenantStatus, 200,
			`{"tenant_id":"F","email":"F@example.com","subscription_status":"active","subscription_tier":"free","bucket_name":"bucket-f","devices":0}` + "\n"},
		{"trialing: health", "tok-B", "GET", tenantapi.PathProxyHealth, 200, `{"status":"ok"}` + "\n"},
		{"active: health", "tok-A", "GET", tenantapi.PathProxyHealth, 200, `{"status":"ok"}` + "\n"},
	}
	e := newEnv(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, b := e.do(tc.method, tc.path, tc.token, "")
			if code != tc.code || string(b) != tc.body {
				t.Errorf("= %d %s, want %d %s", code, b, tc.code, tc.body)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if tc.code == http.StatusServiceUnavailable && hdr.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		})
	}
	if minted, _ := e.prov.calls(); len(minted) != 0 {
		t.Errorf("MintKey called for %v", minted)
	}
}

func TestStorageFailures(t *testing.T) {
	t.Run("mint fails", func(t *testing.T) {
		e := newEnv(t)
		e.prov.mintErr = errors.New("iam: AccessDenied for arn:aws:iam::123:internal")
		code, _, b := e.do("POST", tenantapi.PathMountCredentials, "tok-A", "")
		if code != 500 || string(b) != `{"detail":"internal server error"}`+"\n" {
			t.Errorf("= %d %s", code, b)
		}
		if n, _ := e.st.CountActiveCredentials(context.Background(), "A"); n != 0 {
			t.Errorf("%d credentials recorded", n)
		}
	})
	t.Run("record fails: minted key is revoked", func(t *testing.T) {
		e := newEnv(t)
		e.prov.fixedKey = "AKSAME"
		e.mint("tok-A")
		code, _, b := e.do("POST", tenantapi.PathMountCredentials, "tok-A", "")
		if code != 500 || bytes.Contains(b, []byte("SECRET")) {
			t.Errorf("= %d %s", code, b)
		}
		if _, revoked := e.prov.calls(); len(revoked) != 1 || revoked[0].AccessKey != "AKSAME" {
			t.Errorf("RevokeKey calls = %+v", revoked)
		}
	})
	t.Run("revoke fails then is retried", func(t *testing.T) {
		e := newEnv(t)
		mc := e.mint("tok-A")
		e.prov.mu.Lock()
		e.prov.revokeErr = errors.New("provider down")
		e.prov.mu.Unlock()
		path := tenantapi.PathMountCredentials + "/" + mc.CredentialID
		code, _, b := e.do("DELETE", path, "tok-A", "")
		if got := decode[tenantapi.RevokeResponse](t, b); code != 200 || got.DeletionStatus != "failed" || !got.Revoked {
			t.Errorf("delete = %d %s", code, b)
		}
		if _, active, _ := e.st.LookupAccessKey(context.Background(), mc.AccessKey); active {
			t.Error("key still active after revoke with provider failure")
		}
		if c, _ := e.st.CredentialByID(context.Background(), "A", mc.CredentialID); c.DeletionStatus != "failed" {
			t.Errorf("stored deletion status = %q", c.DeletionStatus)
		}
		e.prov.mu.Lock()
		e.prov.revokeErr = nil
		e.prov.mu.Unlock()
		code, _, b = e.do("DELETE", path, "tok-A", "")
		if got := decode[tenantapi.RevokeResponse](t, b); code != 200 || got.DeletionStatus != "completed" {
			t.Errorf("retry = %d %s", code, b)
		}
		if _, revoked := e.prov.calls(); len(revoked) != 2 {
			t.Errorf("RevokeKey called %d times, want 2", len(revoked))
		}
	})
	t.Run("provider already forgot the key", func(t *testing.T) {
		e := newEnv(t)
		mc := e.mint("tok-A")
		e.prov.mu.Lock()
		e.prov.revokeErr = storage.ErrNotFound
		e.prov.mu.Unlock()
		_, _, b := e.do("DELETE", tenantapi.PathMountCredentials+"/"+mc.CredentialID, "tok-A", "")
		if got := decode[tenantapi.RevokeResponse](t, b); got.DeletionStatus != "completed" {
			t.Errorf("delete = %s", b)
		}
	})
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t)
	tests := []struct{ name, method, path, body string }{
		{"mint: not json", "POST", tenantapi.PathMountCredentials, "{"},
		{"mint: long description", "POST", tenantapi.PathMountCredentials, `{"description":"` + strings.Repeat("x", 201) + `"}`},
		{"sync: not json", "POST", tenantapi.PathSync, "nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, b := e.do(tc.method, tc.path, "tok-A", tc.body)
			if code != http.StatusBadRequest {
				t.Errorf("= %d %s, want 400", code, b)
			}
		})
	}
	if minted, _ := e.prov.calls(); len(minted) != 0 {
		t.Errorf("MintKey called on a bad request")
	}
}

func TestSync(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		body string
		want tenantapi.SyncRequest
	}{
		{`{"device":"laptop","reason":"upload"}`, tenantapi.SyncRequest{Device: "laptop", Reason: "upload"}},
		{"", tenantapi.SyncRequest{}},
	}
	for i, tc := range tests {
		code, _, b := e.do("POST", tenantapi.PathSync, "tok-A", tc.body)
		if code != http.StatusAccepted || string(b) != `{"accepted":true}`+"\n" {
			t.Errorf("sync %d = %d %s", i, code, b)
		}
		if len(e.syncs) != i+1 || !reflect.DeepEqual(e.syncs[i], syncCall{"A", tc.want}) {
			t.Errorf("OnSync calls = %+v", e.syncs)
		}
	}
	ev, _ := e.st.ListAudit(context.Background(), "A", 10)
	if len(ev) != 2 || ev[1].Kind != AuditBucketChanged || !strings.Contains(ev[1].Detail, "laptop") {
		t.Errorf("audit = %+v", ev)
	}
}

// usageProvider is a fakeProvider that reports bucket usage.
type usageProvider struct {
	*fakeProvider
	used map[string]int64
}

func (p usageProvider) BucketUsage(_ context.Context, bucket string) (int64, error) {
	n, ok := p.used[bucket]
	if !ok {
		return 0, storage.ErrNotFound
	}
	return n, nil
}

func TestStatusStorageFigures(t *testing.T) {
	quotas := storage.Quotas{Tiers: map[string]int64{"pro": 1000}, Other: storage.Unlimited}
	e := newEnv(t, func(h *Handler) {
		h.Storage = usageProvider{h.Storage.(*fakeProvider), map[string]int64{"bucket-a": 250}}
		h.Quota = quotas.For
	})
	tests := []struct {
		name, token string
		used, quota *int64
	}{
		{"pro tenant", "tok-A", ptr(int64(250)), ptr(int64(1000))},
		{"usage unknown", "tok-B", nil, ptr(int64(1000))}, // the provider has no figure for bucket-b
		{"tier without quota", "tok-S", nil, nil},         // tier "": Other, unlimited
		{"no bucket yet", "tok-N", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, b := e.do("GET", tenantapi.PathTenantStatus, tc.token, "")
			if code != http.StatusOK {
				t.Fatalf("status = %d %s", code, b)
			}
			got := decode[tenantapi.TenantStatus](t, b)
			if !reflect.DeepEqual(got.StorageUsedBytes, tc.used) || !reflect.DeepEqual(got.StorageQuotaBytes, tc.quota) {
				t.Errorf("used, quota = %v, %v; want %v, %v (%s)", deref(got.StorageUsedBytes), deref(got.StorageQuotaBytes), deref(tc.used), deref(tc.quota), b)
			}
		})
	}
	// Without Quota (and a provider that does not report usage) the
	// figures are absent, as before.
	plain := newEnv(t)
	_, _, b := plain.do("GET", tenantapi.PathTenantStatus, "tok-A", "")
	if strings.Contains(string(b), "storage_") {
		t.Errorf("status without quotas = %s", b)
	}
}

func ptr[T any](v T) *T { return &v }

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}
