package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/basicmachines-co/bm-agent/server/events"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// FuzzAPIRequest sends the tenant API requests of any method, path and
// body, as each of the test's callers (every tenant state, forged and
// missing tokens, the storage webhook's secret), and checks what must
// hold for any request: no panic and no 5xx (the store and provider do
// not fail here, so a 5xx is a request the handlers could not parse); a
// caller without a valid token gets nothing but a refusal; no answer
// holds another tenant's bucket; a change is announced only to a tenant
// whose bucket the request names, and a sync only for the caller's own
// tenant. Its seed corpus is testdata/fuzz/FuzzAPIRequest.
func FuzzAPIRequest(f *testing.F) {
	seeds := []struct {
		method, path string
		caller       uint8
		body         string
	}{
		{"GET", tenantapi.PathMountInfo, 1, ""},
		{"GET", tenantapi.PathMountInfo, 0, ""},
		{"POST", tenantapi.PathMountCredentials, 1, `{"description":"work laptop"}`},
		{"POST", tenantapi.PathMountCredentials, 1, `{"description":` + strings.Repeat("x", 300) + `}`},
		{"POST", tenantapi.PathMountCredentials, 2, `{"description":"\u0000\ud800"}`},
		{"POST", tenantapi.PathMountCredentials, 1, `[`},
		{"GET", tenantapi.PathMountCredentials, 1, ""},
		{"DELETE", tenantapi.PathMountCredentials + "/../../b", 1, ""},
		{"DELETE", tenantapi.PathMountCredentials + "/%00", 2, ""},
		{"POST", tenantapi.PathSync, 1, `{"device_id":"laptop","keys":["a.md","../b.md"]}`},
		{"POST", tenantapi.PathSync, 1, `{"keys":null}`},
		{"POST", tenantapi.PathSync, 3, `{}`},
		{"GET", tenantapi.PathTenantStatus, 4, ""},
		{"GET", tenantapi.PathTenantStatus, 5, ""},
		{"GET", tenantapi.PathProxyHealth, 6, ""},
		{"GET", tenantapi.PathMountInfo, 7, ""},
		{"GET", tenantapi.PathMountInfo, 8, ""},
		{"GET", tenantapi.PathMountInfo, 9, ""},
		{"POST", PathStorageWebhook + "A", 11, minioBody},
		{"POST", PathStorageWebhook + "B", 11, minioBody},
		{"POST", PathStorageWebhook + "N", 11, tigrisBody},
		{"POST", PathStorageWebhook + "A", 11, `{"Records":[{"s3":{"bucket":{"name":"bucket-a"},"object":{"key":"%zz"}}}]}`},
		{"POST", PathStorageWebhook + "A", 0, minioBody},
		{"POST", PathStorageNotifications, 11, tigrisBody},
		{"POST", PathStorageNotifications, 11, `{"events":[{"bucket":"bucket-b","object":{"key":"x"}},{"bucket":"","object":{}}]}`},
		{"POST", PathStorageNotifications, 11, `{"EventName":"s3:ObjectRemoved:Delete","Key":"bucket-s/a.md","Records":[]}`},
		{"POST", PathStorageNotifications, 11, `{"events":` + strings.Repeat("[", 10000)},
		{"POST", PathStorageNotifications, 10, tigrisBody},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.caller, s.body)
	}

	hub := events.NewHub(1024)
	e := newEnv(f, func(h *Handler) {
		h.Events, h.Hook, h.WebhookSecret = hub, &fakeHook{}, webhookSecret
	})
	// Each caller's token, its tenant and the bucket it may see ("" none).
	callers := []struct{ token, tenant, bucket string }{
		{"", "", ""}, {"tok-A", "A", "bucket-a"}, {"tok-B", "B", "bucket-b"}, {"tok-S", "S", "bucket-s"}, {"tok-D", "D", "bucket-d"},
		{"tok-L", "L", "bucket-l"}, {"tok-N", "N", ""}, {"tok-ghost", "ghost", ""}, {"tok-notenant", "", ""},
		{"tok-A-nosub", "A", "bucket-a"}, {"forged." + webhookSecret, "", ""}, {"webhook", "", ""},
	}
	buckets := map[string]string{"A": "bucket-a", "B": "bucket-b", "S": "bucket-s", "D": "bucket-d", "L": "bucket-l"}
	subs := map[string]*events.Subscription{}
	for tn := range buckets {
		subs[tn] = hub.Subscribe(tn)
		f.Cleanup(subs[tn].Close)
	}
	mux := e.srv.Config.Handler.(*http.ServeMux)

	f.Fuzz(func(t *testing.T, method, path string, caller uint8, body string) {
		c := callers[int(caller)%len(callers)]
		req, err := http.NewRequest(method, "http://api.test"+path, strings.NewReader(body))
		if err != nil || req.URL.Host != "api.test" {
			return // not a request a client could send
		}
		if _, pattern := mux.Handler(req); pattern == "GET "+PathTenantEvents {
			return // a stream: it answers only when the client leaves
		}
		switch c.token {
		case "":
		case "webhook":
			req.Header.Set("Authorization", "Bearer "+webhookSecret)
		default:
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		before := len(e.syncs) // OnSync runs in the handler, before it answers
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		what := method + " " + path + " as " + c.token
		if rec.Code >= 500 {
			t.Errorf("%s: HTTP %d %s", what, rec.Code, rec.Body)
		}
		if strings.HasPrefix(req.URL.Path, "/tenant/") && !strings.HasPrefix(c.token, "tok-") && rec.Code < 300 { // a redirect to the cleaned path serves nothing
			t.Errorf("%s: HTTP %d without a valid token: %s", what, rec.Code, rec.Body)
		}
		answer := rec.Body.String()
		for _, b := range buckets {
			if b != c.bucket && strings.Contains(answer, b) && !strings.Contains(body, b) && !strings.Contains(path, b) {
				t.Errorf("%s: the answer names another tenant's bucket %s: %s", what, b, answer)
			}
		}
		for tn, sub := range subs {
			for len(sub.C()) > 0 {
				ev := <-sub.C()
				storage := strings.HasPrefix(ev.Reason, "storage:")
				if storage && !strings.Contains(body, buckets[tn]) {
					t.Errorf("%s: tenant %s told of a change to its bucket, which the request does not name: %+v", what, tn, ev)
				}
				if !storage && c.tenant != tn {
					t.Errorf("%s: tenant %s told of a change by another caller: %+v", what, tn, ev)
				}
			}
		}
		for _, s := range e.syncs[before:] {
			if s.tenant != c.tenant {
				t.Errorf("%s: a sync recorded for tenant %s", what, s.tenant)
			}
		}
	})
}
