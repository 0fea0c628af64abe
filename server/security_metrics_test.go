package server

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecurityMetrics: GET /metrics is never open to anyone on the API
// listener: without a token configured it is not served there (404), with
// one it answers only requests bearing it (401 otherwise); on the metrics
// listener (--metrics-addr) it is served, with the token if one is set.
// Before, anyone could read it on the API listener.
func TestSecurityMetrics(t *testing.T) {
	const token = "m-7f0c2b9e41d8"
	tokenFile := metricsTokenFile(t, token)
	tests := []struct {
		name       string
		cfg        func(*Config)
		base       func(*running) string
		token      string
		want       int
		wantMetric bool
	}{
		{"API listener, defaults, anonymous", nil, apiBase, "", http.StatusNotFound, false},
		{"API listener, defaults, any token", nil, apiBase, token, http.StatusNotFound, false},
		{"API listener, token set, anonymous", withToken(tokenFile), apiBase, "", http.StatusUnauthorized, false},
		{"API listener, token set, wrong token", withToken(tokenFile), apiBase, "m-7f0c2b9e41d9", http.StatusUnauthorized, false},
		{"API listener, token set, the token", withToken(tokenFile), apiBase, token, http.StatusOK, true},
		{"API listener, metrics address set, anonymous", withAddr, apiBase, "", http.StatusNotFound, false},
		{"metrics address, anonymous", withAddr, metricsBase, "", http.StatusOK, true},
		{"metrics address with a token, anonymous", func(c *Config) { withAddr(c); withToken(tokenFile)(c) }, metricsBase, "", http.StatusUnauthorized, false},
		{"metrics address with a token, the token", func(c *Config) { withAddr(c); withToken(tokenFile)(c) }, metricsBase, token, http.StatusOK, true},
	}
	open, anonymous := 0, 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := serve(t, tc.cfg)
			resp, body := get(t, tc.base(r)+"/metrics", tc.token, nil)
			if resp.StatusCode != tc.want {
				t.Errorf("GET /metrics = %d %.200s, want %d", resp.StatusCode, body, tc.want)
			}
			if got := strings.Contains(body, "go_goroutines"); got != tc.wantMetric {
				t.Errorf("metrics in the answer: %v, want %v", got, tc.wantMetric)
			}
			if strings.Contains(body, token) {
				t.Error("the answer carries the token")
			}
			if tc.token == "" && tc.base(r) == r.URL() {
				anonymous++
				if resp.StatusCode == http.StatusOK {
					open++
				}
			}
		})
	}
	t.Logf("FIGURE metrics: %d of %d anonymous GET /metrics on the API listener answered with metrics (defaults: 404; with --metrics-token-file: 401 without the token)", open, anonymous)
}

// metricsTokenFile writes token, as --metrics-token-file reads it, to a
// file of its own and returns its path.
func metricsTokenFile(t *testing.T, token string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "metrics.token")
	if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func apiBase(r *running) string     { return r.URL() }
func metricsBase(r *running) string { return r.MetricsURL() }
func withAddr(c *Config)            { c.MetricsAddr = "127.0.0.1:0" }
func withToken(path string) func(*Config) {
	return func(c *Config) { c.MetricsTokenFile = path }
}
