package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/server/events"
	"github.com/basicmachines-co/bm-agent/server/hooks"
	"github.com/basicmachines-co/bm-agent/server/store"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// fakeHook records Trigger calls.
type fakeHook struct {
	mu  sync.Mutex
	evs []events.Event
}

func (f *fakeHook) Trigger(ev events.Event) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.evs = append(f.evs, ev)
	return true
}

func (f *fakeHook) got() []events.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]events.Event(nil), f.evs...)
}

func TestMintRateLimit(t *testing.T) {
	e := newEnv(t, func(h *Handler) { h.MintBurst = 2 }) // default rate: 10 an hour
	e.mint("tok-A")
	e.mint("tok-A")
	code, hdr, b := e.do("POST", tenantapi.PathMountCredentials, "tok-A", "")
	if code != http.StatusTooManyRequests {
		t.Fatalf("third mint = %d %s, want 429", code, b)
	}
	if got := hdr.Get("Retry-After"); got != "360" {
		t.Errorf("Retry-After = %q, want 360 (one key per 6 minutes)", got)
	}
	if got := decode[tenantapi.ErrorBody](t, b); !strings.Contains(got.Detail, "retry later") {
		t.Errorf("detail = %q", got.Detail)
	}
	if minted, _ := e.prov.calls(); len(minted) != 2 {
		t.Errorf("MintKey called %d times, want 2", len(minted))
	}
	// Another tenant has its own budget.
	e.mint("tok-B")
	// A suspended tenant is refused before the limiter is consulted.
	code, _, _ = e.do("POST", tenantapi.PathMountCredentials, "tok-S", "")
	if code != http.StatusForbidden {
		t.Errorf("suspended mint = %d, want 403", code)
	}

	e = newEnv(t, func(h *Handler) { h.MintLimit = -1 })
	for range 8 {
		e.mint("tok-A")
	}
}

func TestSubscriptionClaimOptional(t *testing.T) {
	subBody := `{"detail":{"error":"subscription_required","message":"Active subscription required","subscribe_url":"` + subscribeURL + `"}}` + "\n"
	tests := []struct {
		name     string
		optional bool
		token    string
		code     int
		body     string
	}{
		{"claim required, absent", false, "tok-A-nosub", 403, subBody},
		{"claim optional, store active", true, "tok-A-nosub", 200, `{"status":"ok"}` + "\n"},
		{"claim optional, store lapsed", true, "tok-L-nosub", 403, subBody},
		{"claim optional, claim lapsed", true, "tok-lapsed-claims", 403, subBody},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(h *Handler) { h.SubscriptionClaimOptional = tc.optional })
			code, _, b := e.do("GET", tenantapi.PathProxyHealth, tc.token, "")
			if code != tc.code || string(b) != tc.body {
				t.Errorf("= %d %s, want %d %s", code, b, tc.code, tc.body)
			}
		})
	}
}

// sse opens GET /tenant/events for token and returns a function reading
// the next bucket-changed event (skipping comments), or failing after 5s.
func (e *env) sse(token string) func() (events.Event, bool) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+PathTenantEvents, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		e.t.Fatalf("GET /tenant/events = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ch := make(chan events.Event, 10)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		name := ""
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				name = v
			}
			if v, ok := strings.CutPrefix(line, "data: "); ok && name == events.KindBucketChanged {
				var ev events.Event
				if json.Unmarshal([]byte(v), &ev) == nil {
					ch <- ev
				}
			}
		}
	}()
	return func() (events.Event, bool) {
		select {
		case ev := <-ch:
			return ev, true
		case <-time.After(300 * time.Millisecond):
			return events.Event{}, false
		}
	}
}

func TestTenantEvents(t *testing.T) {
	hub := events.NewHub(0)
	hook := &fakeHook{}
	e := newEnv(t, func(h *Handler) { h.Events = hub; h.Hook = hook })
	a1, a2, b := e.sse("tok-A"), e.sse("tok-A"), e.sse("tok-B")
	for hub.Subscribers("A") != 2 || hub.Subscribers("B") != 1 {
		time.Sleep(time.Millisecond)
	}
	code, _, body := e.do("POST", tenantapi.PathSync, "tok-A", `{"device":"laptop","reason":"upload","paths":["notes/a b.md","c.md"]}`)
	if code != http.StatusAccepted {
		t.Fatalf("sync = %d %s", code, body)
	}
	want := events.Event{TenantID: "A", Device: "laptop", Reason: "upload", Keys: []string{"notes/a b.md", "c.md"}, At: fixedNow}
	for i, next := range []func() (events.Event, bool){a1, a2} {
		if ev, ok := next(); !ok || !reflect.DeepEqual(ev, want) {
			t.Errorf("A subscriber %d got %+v ok=%v, want %+v", i+1, ev, ok, want)
		}
	}
	if ev, ok := b(); ok {
		t.Errorf("B's subscriber got A's event %+v", ev)
	}
	if got := hook.got(); len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Errorf("hook triggers = %+v", got)
	}
	// A sync without a reason is reported as "sync", and one without paths
	// names no keys.
	e.do("POST", tenantapi.PathSync, "tok-B", "")
	if ev, ok := b(); !ok || ev.Reason != "sync" || ev.TenantID != "B" || ev.Keys != nil {
		t.Errorf("B got %+v ok=%v", ev, ok)
	}
	// More paths than an event names: it names none (a full pass).
	paths := make([]string, events.MaxKeys+1)
	for i := range paths {
		paths[i] = strconv.Itoa(i) + ".md"
	}
	tooMany, _ := json.Marshal(tenantapi.SyncRequest{Paths: paths})
	e.do("POST", tenantapi.PathSync, "tok-B", string(tooMany))
	if ev, ok := b(); !ok || ev.Keys != nil {
		t.Errorf("B got %+v ok=%v, want no keys", ev, ok)
	}

	// Without a hub the route is 404; without a token 401.
	e2 := newEnv(t)
	if code, _, _ := e2.do("GET", PathTenantEvents, "tok-A", ""); code != http.StatusNotFound {
		t.Errorf("events without hub = %d, want 404", code)
	}
	if code, _, _ := e.do("GET", PathTenantEvents, "", ""); code != http.StatusUnauthorized {
		t.Errorf("events without token = %d, want 401", code)
	}
	if code, _, _ := e.do("GET", PathTenantEvents, "tok-L", ""); code != http.StatusForbidden {
		t.Errorf("events without subscription = %d, want 403", code)
	}
}

const webhookSecret = "hook-secret-123"

const minioBody = `{"EventName":"s3:ObjectCreated:Put","Key":"bucket-a/notes/a.md","Records":[{"eventVersion":"2.0","eventSource":"minio:s3","awsRegion":"","eventTime":"2026-02-03T04:05:06.000Z","eventName":"s3:ObjectCreated:Put","userIdentity":{"principalId":"AK1"},"s3":{"s3SchemaVersion":"1.0","configurationId":"Config","bucket":{"name":"bucket-a","ownerIdentity":{"principalId":"AK1"},"arn":"arn:aws:s3:::bucket-a"},"object":{"key":"notes%2Fa.md","size":12,"eTag":"abc","sequencer":"1"}}}]}`

const tigrisBody = `{"events":[{"eventVersion":"1","eventSource":"tigris","eventName":"OBJECT_CREATED_PUT","eventTime":"2026-02-03T04:05:06Z","bucket":"bucket-a","object":{"key":"notes/a.md","size":12,"eTag":"abc"}},{"eventVersion":"1","eventSource":"tigris","eventName":"OBJECT_DELETED","eventTime":"2026-02-03T04:05:07Z","bucket":"bucket-a","object":{"key":"notes/b.md"}}]}`

func TestStorageWebhook(t *testing.T) {
	type hdrs map[string]string
	bearer := hdrs{"Authorization": "Bearer " + webhookSecret}
	signed := func(secret string, at time.Time, body string) hdrs {
		return hdrs{
			hooks.SignatureHeader: hooks.SignTimestamped([]byte(secret), at.Unix(), []byte(body)),
			hooks.TimestampHeader: strconv.FormatInt(at.Unix(), 10),
		}
	}
	// A genuine signature of one time, sent with a later timestamp.
	tampered := signed(webhookSecret, fixedNow.Add(-time.Minute), tigrisBody)
	tampered[hooks.TimestampHeader] = strconv.FormatInt(fixedNow.Unix(), 10)
	tests := []struct {
		name       string
		noSecret   bool
		tenant     string
		headers    hdrs
		basic      [2]string
		body       string
		code       int
		resp       string
		wantReason string // "" means no event
		detail     string // in the error body
	}{
		{name: "disabled", noSecret: true, tenant: "A", headers: bearer, body: minioBody, code: 404},
		{name: "no credentials", tenant: "A", body: minioBody, code: 401},
		{name: "wrong bearer", tenant: "A", headers: hdrs{"Authorization": "Bearer nope"}, body: minioBody, code: 401},
		{name: "bad signature", tenant: "A", headers: signed("other", fixedNow, minioBody), body: minioBody, code: 401, detail: "invalid signature"},
		{name: "body-only signature", tenant: "A", headers: hdrs{hooks.SignatureHeader: hooks.Sign([]byte(webhookSecret), []byte(tigrisBody))}, body: tigrisBody, code: 401, detail: hooks.TimestampHeader + " header is required"},
		{name: "timestamp 6 minutes old", tenant: "A", headers: signed(webhookSecret, fixedNow.Add(-6*time.Minute), tigrisBody), body: tigrisBody, code: 401, detail: "outside the allowed window"},
		{name: "timestamp 6 minutes ahead", tenant: "A", headers: signed(webhookSecret, fixedNow.Add(6*time.Minute), tigrisBody), body: tigrisBody, code: 401, detail: "outside the allowed window"},
		{name: "tampered timestamp", tenant: "A", headers: tampered, body: tigrisBody, code: 401, detail: "invalid signature"},
		{name: "malformed timestamp", tenant: "A", headers: hdrs{hooks.SignatureHeader: hooks.Sign([]byte(webhookSecret), []byte(tigrisBody)), hooks.TimestampHeader: "soon"}, body: tigrisBody, code: 401, detail: "malformed"},
		{name: "wrong basic password", tenant: "A", basic: [2]string{"tigris", "nope"}, body: tigrisBody, code: 401},
		{name: "minio bearer", tenant: "A", headers: bearer, body: minioBody, code: 200, resp: `{"accepted":1,"ignored":0}`, wantReason: "storage:s3:ObjectCreated:Put"},
		{name: "minio bare token", tenant: "A", headers: hdrs{"Authorization": webhookSecret}, body: minioBody, code: 200, resp: `{"accepted":1,"ignored":0}`, wantReason: "storage:s3:ObjectCreated:Put"},
		{name: "tigris basic", tenant: "A", basic: [2]string{"tigris", webhookSecret}, body: tigrisBody, code: 200, resp: `{"accepted":2,"ignored":0}`, wantReason: "storage:OBJECT_CREATED_PUT"},
		{name: "tigris hmac", tenant: "A", headers: signed(webhookSecret, fixedNow, tigrisBody), body: tigrisBody, code: 200, resp: `{"accepted":2,"ignored":0}`, wantReason: "storage:OBJECT_CREATED_PUT"},
		{name: "hmac 4 minutes old", tenant: "A", headers: signed(webhookSecret, fixedNow.Add(-4*time.Minute), tigrisBody), body: tigrisBody, code: 200, resp: `{"accepted":2,"ignored":0}`, wantReason: "storage:OBJECT_CREATED_PUT"},
		{name: "hmac 4 minutes ahead", tenant: "A", headers: signed(webhookSecret, fixedNow.Add(4*time.Minute), tigrisBody), body: tigrisBody, code: 200, resp: `{"accepted":2,"ignored":0}`, wantReason: "storage:OBJECT_CREATED_PUT"},
		{name: "another tenant's bucket", tenant: "B", headers: bearer, body: tigrisBody, code: 200, resp: `{"accepted":0,"ignored":2}`},
		{name: "suspended tenant", tenant: "S", headers: bearer, body: strings.ReplaceAll(minioBody, "bucket-a", "bucket-s"), code: 200, resp: `{"accepted":1,"ignored":0}`},
		{name: "unknown tenant", tenant: "ghost", headers: bearer, body: minioBody, code: 404},
		{name: "no bucket", tenant: "N", headers: bearer, body: minioBody, code: 409},
		{name: "not json", tenant: "A", headers: bearer, body: "{", code: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hub, hook := events.NewHub(0), &fakeHook{}
			e := newEnv(t, func(h *Handler) {
				h.Events, h.Hook = hub, hook
				if !tc.noSecret {
					h.WebhookSecret = webhookSecret
				}
			})
			sub := hub.Subscribe(tc.tenant)
			defer sub.Close()
			req, _ := http.NewRequest("POST", e.srv.URL+PathStorageWebhook+tc.tenant, strings.NewReader(tc.body))
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			if tc.basic[0] != "" {
				req.SetBasicAuth(tc.basic[0], tc.basic[1])
			}
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("= %d %s, want %d", resp.StatusCode, b, tc.code)
			}
			if tc.resp != "" && strings.TrimSpace(string(b)) != tc.resp {
				t.Errorf("body = %s, want %s", b, tc.resp)
			}
			if tc.detail != "" && !strings.Contains(string(b), tc.detail) {
				t.Errorf("body = %s, want a detail with %q", b, tc.detail)
			}
			if strings.Contains(e.logs.String(), webhookSecret) {
				t.Error("the webhook secret reached the log")
			}
			var got []events.Event
			for len(sub.C()) > 0 {
				ev := <-sub.C()
				ev.ID = "" // the hub's numbering, not the route's
				got = append(got, ev)
			}
			if tc.wantReason == "" {
				if len(got) != 0 || len(hook.got()) != 0 {
					t.Errorf("events %+v, hook %+v; want none", got, hook.got())
				}
				return
			}
			want := events.Event{TenantID: tc.tenant, Reason: tc.wantReason, At: fixedNow}
			if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
				t.Errorf("events = %+v, want [%+v]", got, want)
			}
			if h := hook.got(); len(h) != 1 || !reflect.DeepEqual(h[0], want) {
				t.Errorf("hook = %+v", h)
			}
			ev, _ := e.st.ListAudit(context.Background(), tc.tenant, 5)
			if len(ev) != 1 || ev[0].Kind != AuditBucketChanged || !strings.Contains(ev[0].Detail, "source=storage") {
				t.Errorf("audit = %+v", ev)
			}
		})
	}
}

// fakeSink records what the webhooks hand to StorageChanges.
type fakeSink struct {
	mu  sync.Mutex
	evs []events.Event
	ns  []int
}

func (f *fakeSink) Add(ev events.Event, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.evs = append(f.evs, ev)
	f.ns = append(f.ns, n)
}

// TestStorageNotifications: POST /webhooks/storage maps each change to
// the tenant of its bucket, with the shared secret.
func TestStorageNotifications(t *testing.T) {
	bearer := map[string]string{"Authorization": "Bearer " + webhookSecret}
	// One MinIO record per POST, as MinIO sends them.
	minioB := strings.ReplaceAll(minioBody, "bucket-a", "bucket-b")
	// A Tigris batch over three buckets: A twice, B once, one unknown.
	mixed := `{"events":[` +
		`{"eventName":"OBJECT_CREATED_PUT","bucket":"bucket-a","object":{"key":"a.md"}},` +
		`{"eventName":"OBJECT_DELETED","bucket":"bucket-b","object":{"key":"b.md"}},` +
		`{"eventName":"OBJECT_DELETED","bucket":"bucket-a","object":{"key":"c.md"}},` +
		`{"eventName":"OBJECT_CREATED_PUT","bucket":"nobody-s-bucket","object":{"key":"d.md"}}]}`
	tests := []struct {
		name     string
		noSecret bool
		headers  map[string]string
		body     string
		code     int
		resp     string
		want     []events.Event // in order of the body's buckets
	}{
		{name: "disabled", noSecret: true, headers: bearer, body: minioBody, code: 404},
		{name: "no credentials", body: minioBody, code: 401},
		{name: "wrong secret", headers: map[string]string{"Authorization": "Bearer nope"}, body: minioBody, code: 401},
		{name: "minio, tenant A", headers: bearer, body: minioBody, code: 200, resp: `{"accepted":1,"ignored":0}`,
			want: []events.Event{{TenantID: "A", Reason: "storage:s3:ObjectCreated:Put", At: fixedNow}}},
		{name: "minio bare token, tenant B", headers: map[string]string{"Authorization": webhookSecret}, body: minioB, code: 200, resp: `{"accepted":1,"ignored":0}`,
			want: []events.Event{{TenantID: "B", Reason: "storage:s3:ObjectCreated:Put", At: fixedNow}}},
		{name: "batch over several buckets", headers: bearer, body: mixed, code: 200, resp: `{"accepted":3,"ignored":1}`,
			want: []events.Event{{TenantID: "A", Reason: "storage:OBJECT_CREATED_PUT", At: fixedNow}, {TenantID: "B", Reason: "storage:OBJECT_DELETED", At: fixedNow}}},
		{name: "unknown bucket", headers: bearer, body: strings.ReplaceAll(minioBody, "bucket-a", "bucket-zz"), code: 200, resp: `{"accepted":0,"ignored":1}`},
		{name: "suspended tenant", headers: bearer, body: strings.ReplaceAll(minioBody, "bucket-a", "bucket-s"), code: 200, resp: `{"accepted":1,"ignored":0}`},
		{name: "not json", headers: bearer, body: "{", code: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, coalesced := range []bool{false, true} {
				hub, hook, sink := events.NewHub(0), &fakeHook{}, &fakeSink{}
				e := newEnv(t, func(h *Handler) {
					h.Events, h.Hook = hub, hook
					if !tc.noSecret {
						h.WebhookSecret = webhookSecret
					}
					if coalesced {
						h.StorageChanges = sink
					}
				})
				subs := map[string]*events.Subscription{}
				for _, id := range []string{"A", "B", "S"} {
					subs[id] = hub.Subscribe(id)
					defer subs[id].Close()
				}
				code, _, b := e.post(PathStorageNotifications, tc.body, tc.headers)
				if code != tc.code {
					t.Fatalf("coalesced=%v: = %d %s, want %d", coalesced, code, b, tc.code)
				}
				if tc.resp != "" && strings.TrimSpace(string(b)) != tc.resp {
					t.Errorf("coalesced=%v: body = %s, want %s", coalesced, b, tc.resp)
				}
				var got []events.Event
				if coalesced {
					got = sink.evs
				} else {
					for _, id := range []string{"A", "B", "S"} {
						for len(subs[id].C()) > 0 {
							ev := <-subs[id].C()
							ev.ID = "" // the hub's numbering, not the route's
							got = append(got, ev)
						}
					}
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("coalesced=%v: events = %+v, want %+v", coalesced, got, tc.want)
				}
				if coalesced {
					if !hub.LastPublished("A").IsZero() || !hub.LastPublished("B").IsZero() || len(hook.got()) != 0 {
						t.Error("with StorageChanges the handler published or hooked itself")
					}
					if tc.name == "batch over several buckets" && !slices.Equal(sink.ns, []int{2, 1}) {
						t.Errorf("change counts = %v, want [2 1]", sink.ns)
					}
				} else if len(hook.got()) != len(tc.want) {
					t.Errorf("hook = %+v, want %d", hook.got(), len(tc.want))
				}
			}
		})
	}
}

// post sends a POST of body with the headers hdr.
func (e *env) post(path, body string, hdr map[string]string) (int, http.Header, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return e.send(req)
}

// A stream outlives nothing that would refuse its reconnect: a tenant
// suspended, or a subscription ended, while its devices listen ends their
// streams at the next heartbeat (the reconnect then gets the 403).
func TestEventStreamEndsWhenRefused(t *testing.T) {
	hub := events.NewHub(0)
	e := newEnv(t, func(h *Handler) { h.Events = hub; h.Heartbeat = 20 * time.Millisecond })
	open := func(token string) <-chan struct{} {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", e.srv.URL+PathTenantEvents, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := e.srv.Client().Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /tenant/events: %v %v", resp, err)
		}
		ended := make(chan struct{})
		go func() {
			defer close(ended)
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
		}()
		return ended
	}
	a, b := open("tok-A"), open("tok-B")
	select {
	case <-a:
		t.Fatal("an active tenant's stream ended")
	case <-b:
		t.Fatal("a trialing tenant's stream ended")
	case <-time.After(200 * time.Millisecond): // ten heartbeats
	}
	ctx := t.Context()
	if err := e.st.SetTenantStatus(ctx, "A", store.TenantSuspended); err != nil {
		t.Fatal(err)
	}
	if err := e.st.SetSubscription(ctx, "B", "canceled", "pro"); err != nil {
		t.Fatal(err)
	}
	for name, ended := range map[string]<-chan struct{}{"suspended": a, "canceled": b} {
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
			t.Errorf("the %s tenant's stream is still open", name)
		}
	}
	if code, _, body := e.do("GET", PathTenantEvents, "tok-A", ""); code != http.StatusForbidden {
		t.Errorf("reconnect of the suspended tenant = %d %s, want 403", code, body)
	}
}

// TestStorageWebhookReplay: a signed delivery is accepted once; the same
// delivery again, within the window, is refused 401, on either route,
// while a new delivery of the same body (another timestamp) is accepted.
func TestStorageWebhookReplay(t *testing.T) {
	e := newEnv(t, func(h *Handler) { h.WebhookSecret = webhookSecret })
	post := func(path string, at time.Time, upper bool) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", e.srv.URL+path, strings.NewReader(tigrisBody))
		sig := hooks.SignTimestamped([]byte(webhookSecret), at.Unix(), []byte(tigrisBody))
		if upper {
			sig = "sha256=" + strings.ToUpper(strings.TrimPrefix(sig, "sha256="))
		}
		req.Header.Set(hooks.SignatureHeader, " "+sig)
		req.Header.Set(hooks.TimestampHeader, strconv.FormatInt(at.Unix(), 10))
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	steps := []struct {
		name   string
		path   string
		at     time.Time
		upper  bool
		code   int
		detail string
	}{
		{"fresh", PathStorageWebhook + "A", fixedNow, false, 200, ""},
		{"replayed", PathStorageWebhook + "A", fixedNow, false, 401, "already received"},
		{"replayed in upper-case hex", PathStorageWebhook + "A", fixedNow, true, 401, "already received"},
		{"replayed to the deployment route", PathStorageNotifications, fixedNow, false, 401, "already received"},
		{"new delivery of the same body", PathStorageWebhook + "A", fixedNow.Add(-time.Second), false, 200, ""},
		{"that one replayed", PathStorageNotifications, fixedNow.Add(-time.Second), false, 401, "already received"},
	}
	for _, st := range steps {
		code, body := post(st.path, st.at, st.upper)
		if code != st.code || !strings.Contains(body, st.detail) {
			t.Errorf("%s: = %d %s, want %d %q", st.name, code, body, st.code, st.detail)
		}
	}
	if strings.Contains(e.logs.String(), webhookSecret) {
		t.Error("the webhook secret reached the log")
	}
}
