package api

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"

	"github.com/basicmachines-co/bm-agent/server/store"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// fakeSessions answers SessionLive from a set of ended session ids; after
// calls asks, it ends endAfter (a session ending while a key is minted).
type fakeSessions struct {
	mu       sync.Mutex
	ended    map[string]bool
	err      error
	calls    int
	endAfter int
	endSID   string
}

func (f *fakeSessions) SessionLive(_ context.Context, c tenantapi.Claims) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.endAfter > 0 && f.calls > f.endAfter {
		f.ended[f.endSID] = true
	}
	if f.err != nil {
		return false, f.err
	}
	return !f.ended[c.SessionID], nil
}

// TestSessionCheckedOnKeyRoutes: minting, listing and revoking keys ask
// Sessions; an ended session gets 401 with DetailSessionEnded there, while
// the routes that trust the token alone still answer. A key is recorded
// with the session that minted it.
func TestSessionCheckedOnKeyRoutes(t *testing.T) {
	sess := &fakeSessions{ended: map[string]bool{"sess-ended": true}}
	e := newEnv(t, func(h *Handler) {
		h.Sessions = sess
		a := h.Auth.(fakeAuth)
		a["tok-live"] = tenantapi.Claims{Subject: "acct-A", TenantID: "A", SubscriptionStatus: "active", SessionID: "sess-live"}
		a["tok-ended"] = tenantapi.Claims{Subject: "acct-A", TenantID: "A", SubscriptionStatus: "active", SessionID: "sess-ended"}
	})
	mc := e.mint("tok-live")
	cred, err := e.st.CredentialByID(context.Background(), "A", mc.CredentialID)
	if err != nil || cred.SessionID != "sess-live" {
		t.Fatalf("minted key = %+v, %v; want session sess-live", cred, err)
	}

	tests := []struct {
		method, path string
		want         int
	}{
		{"POST", tenantapi.PathMountCredentials, http.StatusUnauthorized},
		{"GET", tenantapi.PathMountCredentials, http.StatusUnauthorized},
		{"DELETE", tenantapi.PathMountCredentials + "/" + mc.CredentialID, http.StatusUnauthorized},
		{"GET", tenantapi.PathTenantStatus, http.StatusOK}, // Auth (the issuer's cached Verify) decides
		{"GET", tenantapi.PathMountInfo, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			code, hdr, b := e.do(tt.method, tt.path, "tok-ended", "")
			if code != tt.want {
				t.Fatalf("status = %d %s, want %d", code, b, tt.want)
			}
			if code == http.StatusUnauthorized {
				if body := decode[tenantapi.ErrorBody](t, b); body.Detail != tenantapi.DetailSessionEnded {
					t.Errorf("body = %+v, want detail %q", body, tenantapi.DetailSessionEnded)
				}
				if hdr.Get("WWW-Authenticate") == "" {
					t.Error("no WWW-Authenticate")
				}
			}
		})
	}
	if c, _ := e.st.CredentialByID(context.Background(), "A", mc.CredentialID); !c.Active() {
		t.Error("a refused DELETE revoked the key")
	}

	// A store failure is a 500, not a 401 that sends the client to sign in.
	sess.mu.Lock()
	sess.err = errors.New("database down")
	sess.mu.Unlock()
	if code, _, b := e.do("GET", tenantapi.PathMountCredentials, "tok-live", ""); code != http.StatusInternalServerError {
		t.Errorf("list with the session check failing = %d %s, want 500", code, b)
	}
}

// TestMintRacingSessionEnd: a session that ends while its key is being
// minted (after the first check) gets 401 and the key is revoked, at the
// store and the provider.
func TestMintRacingSessionEnd(t *testing.T) {
	sess := &fakeSessions{ended: map[string]bool{}, endAfter: 1, endSID: "sess-1"}
	e := newEnv(t, func(h *Handler) {
		h.Sessions = sess
		h.Auth.(fakeAuth)["tok-1"] = tenantapi.Claims{Subject: "acct-A", TenantID: "A", SubscriptionStatus: "active", SessionID: "sess-1"}
	})
	code, _, b := e.do("POST", tenantapi.PathMountCredentials, "tok-1", "")
	if code != http.StatusUnauthorized {
		t.Fatalf("mint while the session ends = %d %s, want 401", code, b)
	}
	all, err := e.st.ListAllCredentials(context.Background(), "A", true)
	if err != nil || len(all) != 1 {
		t.Fatalf("credentials = %+v, %v; want the one minted", all, err)
	}
	if all[0].Active() || all[0].DeletionStatus != store.DeletionCompleted {
		t.Errorf("key of the ended session = %+v, want revoked and deleted", all[0])
	}
	if minted, revoked := e.prov.calls(); len(minted) != 1 || len(revoked) != 1 || revoked[0].AccessKey != all[0].AccessKey {
		t.Errorf("provider minted %v, revoked %v; want the key revoked", minted, revoked)
	}
}
