package cloudapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestDeviceLogin(t *testing.T) {
	tests := []struct {
		name    string
		answer  string // token endpoint error code; "" approves
		wantErr error
	}{
		{name: "approved"},
		{name: "denied", answer: "access_denied", wantErr: ErrAccessDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var challenge string
			polls := 0
			mux := http.NewServeMux()
			mux.HandleFunc("POST /oauth2/device_authorization", func(w http.ResponseWriter, r *http.Request) {
				r.ParseForm()
				if r.PostForm.Get("client_id") != "test-client" || r.PostForm.Get("code_challenge_method") != "S256" {
					tokenError(w, "invalid_request")
					return
				}
				challenge = r.PostForm.Get("code_challenge")
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(map[string]any{
					"device_code": "dev-code", "user_code": "ABCD-EFGH",
					"verification_uri": "https://issuer.example/activate", "interval": 1, "expires_in": 60,
				})
			})
			mux.HandleFunc("POST /oauth2/token", func(w http.ResponseWriter, r *http.Request) {
				r.ParseForm()
				polls++
				switch {
				case r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:device_code" ||
					r.PostForm.Get("device_code") != "dev-code" ||
					oauth2.S256ChallengeFromVerifier(r.PostForm.Get("code_verifier")) != challenge:
					tokenError(w, "invalid_grant")
				case tt.answer != "":
					tokenError(w, tt.answer)
				default:
					w.Header().Set("Content-Type", "application/json")
					json.NewEncoder(w).Encode(map[string]any{"access_token": "a", "refresh_token": "r", "expires_in": 3600, "token_type": "Bearer"})
				}
			})
			srv := httptest.NewServer(mux)
			defer srv.Close()

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			d, err := StartDeviceLogin(ctx, srv.Client(), Config{Domain: srv.URL, ClientID: "test-client"})
			if err != nil {
				t.Fatal(err)
			}
			if d.UserCode() != "ABCD-EFGH" || d.VerificationURIComplete() != "https://issuer.example/activate" {
				t.Errorf("user code %q uri %q", d.UserCode(), d.VerificationURIComplete())
			}
			tok, err := d.Wait(ctx)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Wait error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || tok.AccessToken != "a" || tok.RefreshToken != "r" {
				t.Fatalf("Wait = %v, %v", tok, err)
			}
			if polls != 1 {
				t.Errorf("polls = %d, want 1", polls)
			}
		})
	}
}
