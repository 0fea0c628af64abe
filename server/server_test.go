package server

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/basicmachines-co/bm-agent/server/ops"
)

func TestHealthReadyMetricsAndRequestLog(t *testing.T) {
	tokenFile := metricsTokenFile(t, "metrics-token-1")
	r := serve(t, func(c *Config) { c.MetricsTokenFile = tokenFile })
	if resp, body := get(t, r.URL()+"/healthz", "", nil); resp.StatusCode != 200 || !strings.Contains(body, `"ok"`) {
		t.Errorf("healthz = %d %s", resp.StatusCode, body)
	}
	resp, body := get(t, r.URL()+"/readyz", "", nil)
	var rep ops.ReadyReport
	if err := json.Unmarshal([]byte(body), &rep); err != nil || resp.StatusCode != 200 || rep.Status != "ready" ||
		rep.Checks["store"] != "ok" || rep.Checks["storage"] != "ok" {
		t.Errorf("readyz = %d %s", resp.StatusCode, body)
	}

	token := login(t, r.Server, demoEmail, demoPassword)
	resp, body = get(t, r.URL()+"/tenant/mount/info", token, map[string]string{"X-Request-Id": "req-abc.123"})
	if resp.StatusCode != 200 || !strings.Contains(body, `"bucket_name"`) {
		t.Fatalf("mount info = %d %s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("X-Request-Id"); got != "req-abc.123" {
		t.Errorf("X-Request-Id echoed = %q", got)
	}
	// An unusable incoming id is replaced.
	resp, _ = get(t, r.URL()+"/healthz", "", map[string]string{"X-Request-Id": "bad id\twith spaces"})
	if got := resp.Header.Get("X-Request-Id"); got == "" || strings.Contains(got, " ") {
		t.Errorf("replacement request id = %q", got)
	}
	req, _ := http.NewRequest(http.MethodPost, r.URL()+"/tenant/mount/credentials", strings.NewReader(`{"description":"laptop"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	mint, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var creds struct {
		SecretKey string `json:"secret_key"`
	}
	_ = json.NewDecoder(mint.Body).Decode(&creds)
	mint.Body.Close()
	if mint.StatusCode != 200 || creds.SecretKey == "" {
		t.Fatalf("mint = %d", mint.StatusCode)
	}
	get(t, r.URL()+"/no/such/route", "", nil)
	get(t, r.S3URL()+"/", "", nil) // unsigned: refused and counted

	_, metrics := get(t, r.URL()+"/metrics", "metrics-token-1", nil)
	for _, want := range []string{
		`bm_http_requests_total{code="200",route="GET /tenant/mount/info"} 1`,
		`bm_http_requests_total{code="404",route="unmatched"} 1`,
		`bm_http_request_duration_seconds_count{route="GET /tenant/mount/info"} 1`,
		`bm_credentials_minted_total 1`,
		`bm_credentials_revoked_total 0`,
		`bm_s3_requests_all_total 1`,
		`bm_s3_requests_denied_total 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	logs := r.logs.String()
	if !strings.Contains(logs, `"request_id":"req-abc.123"`) || !strings.Contains(logs, `"route":"GET /tenant/mount/info"`) {
		t.Errorf("no request line with the request id and route in the logs:\n%s", logs)
	}
	for _, secret := range []string{token, creds.SecretKey, "Bearer", demoPassword} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain a secret (%.12s...)", secret)
		}
	}
}

func TestReadyzReportsTheFailingPart(t *testing.T) {
	r := serve(t, nil)
	r.Store().DB().Close() // the store stops answering
	resp, body := get(t, r.URL()+"/readyz", "", nil)
	var rep ops.ReadyReport
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatalf("readyz body %q: %v", body, err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || rep.Status != "unavailable" ||
		rep.Checks["store"] == "ok" || rep.Checks["storage"] != "ok" {
		t.Errorf("readyz = %d %+v", resp.StatusCode, rep)
	}
}

func TestGracefulShutdown(t *testing.T) {
	tests := []struct {
		name        string
		handlerTime time.Duration
		deadline    time.Duration
		wantOK      bool          // the in-flight request completes
		maxStop     time.Duration // Serve returns within
	}{
		{"in-flight request finishes", 400 * time.Millisecond, 5 * time.Second, true, 3 * time.Second},
		{"stuck request is cut at the deadline", 20 * time.Second, 300 * time.Millisecond, false, 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			started := make(chan struct{})
			r := serveWrapped(t, func(c *Config) { c.ShutdownTimeout = tt.deadline }, func(h http.Handler) http.Handler {
				mux := http.NewServeMux()
				mux.Handle("/", h)
				mux.HandleFunc("GET /slow", func(w http.ResponseWriter, req *http.Request) {
					close(started)
					select {
					case <-time.After(tt.handlerTime):
					case <-req.Context().Done():
						return
					}
					_, _ = w.Write([]byte("done"))
				})
				return mux
			})
			type result struct {
				code int
				body string
				err  error
			}
			res := make(chan result, 1)
			go func() {
				resp, err := http.Get(r.URL() + "/slow")
				if err != nil {
					res <- result{err: err}
					return
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				res <- result{resp.StatusCode, string(b), err}
			}()
			<-started
			took, err := r.stop(t)
			if err != nil {
				t.Errorf("Serve = %v, want nil", err)
			}
			if took > tt.maxStop {
				t.Errorf("Serve returned %s after cancel, want within %s", took, tt.maxStop)
			}
			got := <-res
			if ok := got.err == nil && got.code == 200 && got.body == "done"; ok != tt.wantOK {
				t.Errorf("in-flight request = %d %q %v; completed=%v, want %v", got.code, got.body, got.err, ok, tt.wantOK)
			}
			// The listener is closed.
			if _, err := http.Get(r.URL() + "/healthz"); err == nil {
				t.Error("server still answers after Serve returned")
			}
		})
	}
}

func TestSecretsFromEnv(t *testing.T) {
	env := map[string]string{
		"BM_SERVER_STORAGE_ACCESS_KEY":     "ak",
		"BM_SERVER_STORAGE_SECRET_KEY":     "sk",
		"BM_SERVER_STORAGE_WEBHOOK_SECRET": "ws",
		"BM_SERVER_HOOK_WEBHOOK_SECRET":    "hs",
		"BM_SERVER_DEMO_PASSWORD":          "pw",
	}
	cfg := Config{StorageAccessKey: "kept-when-unset", HookWebhookSecret: "old"}
	SecretsFromEnv(&cfg, func(k string) string { return env[k] })
	if cfg.StorageAccessKey != "ak" || cfg.StorageSecretKey != "sk" || cfg.StorageWebhookSecret != "ws" ||
		cfg.HookWebhookSecret != "hs" || cfg.DemoPassword != "pw" {
		t.Errorf("config = %+v", cfg)
	}
	cfg = Config{StorageAccessKey: "kept-when-unset"}
	SecretsFromEnv(&cfg, func(string) string { return "" })
	if cfg.StorageAccessKey != "kept-when-unset" {
		t.Errorf("an unset variable cleared the field: %+v", cfg)
	}
	// No secret is a flag.
	fs := pflag.NewFlagSet("bm-server", pflag.ContinueOnError)
	BindFlags(fs, &cfg)
	BindStoreFlags(fs, &cfg)
	fs.VisitAll(func(f *pflag.Flag) {
		if isSecret(f.Name) {
			t.Errorf("secret %s is a flag", f.Name)
		}
	})
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	yamlFile := filepath.Join(dir, "bm.yaml")
	if err := os.WriteFile(yamlFile, []byte("addr: 10.0.0.1:1\nregion: file-region\nshutdown-timeout: 3s\nlog-json: true\ndb: postgres://file/db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	jsonFile := filepath.Join(dir, "bm.json")
	if err := os.WriteFile(jsonFile, []byte(`{"addr": "10.0.0.2:2", "shutdown-timeout": "4s"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	opsFile := filepath.Join(dir, "ops.yaml")
	if err := os.WriteFile(opsFile, []byte("storage: minio\nstorage-endpoint: http://minio:9000\nmint-per-hour: 5\nfallback-interval: 30s\nhook-command: /usr/local/bin/reindex --quick\norphan-after: 2160h\noidc-algs: [RS256, ES384]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(dir, "secret.yaml")
	if err := os.WriteFile(secretFile, []byte("storage: minio\nstorage-secret-key: hunter2hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badFile := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badFile, []byte("adr: typo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(Config) bool
		wantErr string
	}{
		{"defaults", nil, nil, func(c Config) bool {
			return c.Addr == DefaultAddr && c.Region == DefaultRegion && c.ShutdownTimeout == DefaultShutdownTimeout && !c.LogJSON && c.DB == "" &&
				c.Storage == StorageEmbedded && c.AuthMode == AuthBuiltin && c.MintPerHour == DefaultMintPerHour && c.MintBurst == DefaultMintBurst &&
				c.FallbackInterval == 5*time.Minute && c.OrphanAfter == 0 && c.EventsHeartbeat == 15*time.Second && c.OIDCTenantClaim == "tenant_id" &&
				c.HookCommand == "" && c.StorageWebhookSecret == ""
		}, ""},
		{"server settings from a file", []string{"--config", opsFile}, nil, func(c Config) bool {
			return c.Storage == StorageMinIO && c.StorageEndpoint == "http://minio:9000" && c.MintPerHour == 5 && c.FallbackInterval == 30*time.Second &&
				c.HookCommand == "/usr/local/bin/reindex --quick" && c.OrphanAfter == 90*24*time.Hour && strings.Join(c.OIDCAlgs, ",") == "RS256,ES384"
		}, ""},
		{"server settings: env beats file, flag beats env", []string{"--config", opsFile, "--mint-burst", "2", "--auth-mode", "oidc"},
			map[string]string{"BM_SERVER_STORAGE": "s3", "BM_SERVER_MINT_BURST": "7", "BM_SERVER_OIDC_ISSUER": "https://auth.example.com", "BM_SERVER_AUTH_MODE": "builtin"},
			func(c Config) bool {
				return c.Storage == StorageS3 && c.StorageEndpoint == "http://minio:9000" && c.MintBurst == 2 && c.AuthMode == AuthOIDC &&
					c.OIDCIssuer == "https://auth.example.com"
			}, ""},
		{"a secret in the file is refused", []string{"--config", secretFile}, nil, nil, "BM_SERVER_STORAGE_SECRET_KEY"},
		{"file beats defaults", []string{"--config", yamlFile}, nil, func(c Config) bool {
			return c.Addr == "10.0.0.1:1" && c.Region == "file-region" && c.ShutdownTimeout == 3*time.Second && c.LogJSON && c.DB == "postgres://file/db"
		}, ""},
		{"json file", []string{"--config", jsonFile}, nil, func(c Config) bool {
			return c.Addr == "10.0.0.2:2" && c.ShutdownTimeout == 4*time.Second && c.Region == DefaultRegion
		}, ""},
		{"config file from env", nil, map[string]string{"BM_SERVER_CONFIG": yamlFile}, func(c Config) bool {
			return c.Addr == "10.0.0.1:1"
		}, ""},
		{"env beats file", []string{"--config", yamlFile}, map[string]string{"BM_SERVER_ADDR": "10.0.0.3:3", "BM_SERVER_LOG_JSON": "false"}, func(c Config) bool {
			return c.Addr == "10.0.0.3:3" && !c.LogJSON && c.Region == "file-region"
		}, ""},
		{"flag beats env and file", []string{"--config", yamlFile, "--addr", "10.0.0.4:4"}, map[string]string{"BM_SERVER_ADDR": "10.0.0.3:3"}, func(c Config) bool {
			return c.Addr == "10.0.0.4:4" && c.Region == "file-region"
		}, ""},
		{"flag set to its default still wins", []string{"--config", yamlFile, "--addr", DefaultAddr}, nil, func(c Config) bool {
			return c.Addr == DefaultAddr
		}, ""},
		{"old data dir variable", nil, map[string]string{"BM_SERVER_DATA": "/srv/bm"}, func(c Config) bool {
			return c.DataDir == "/srv/bm"
		}, ""},
		{"new data dir variable first", nil, map[string]string{"BM_SERVER_DATA": "/srv/old", "BM_SERVER_DATA_DIR": "/srv/new"}, func(c Config) bool {
			return c.DataDir == "/srv/new"
		}, ""},
		{"unknown file key", []string{"--config", badFile}, nil, nil, "unknown settings adr"},
		{"bad env value", nil, map[string]string{"BM_SERVER_SHUTDOWN_TIMEOUT": "soon"}, nil, "BM_SERVER_SHUTDOWN_TIMEOUT"},
		{"missing file", []string{"--config", filepath.Join(dir, "nope.yaml")}, nil, nil, "read config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg Config
			fs := pflag.NewFlagSet("bm-server", pflag.ContinueOnError)
			BindFlags(fs, &cfg)
			BindStoreFlags(fs, &cfg)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			err := ResolveConfig(fs, func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(cfg) {
				t.Errorf("config = %+v", cfg)
			}
		})
	}
}

// TestOpenAPIMatchesRoutes checks the served document against Routes both
// ways, and that the mux serves each of Routes under exactly that pattern.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	r := serve(t, nil)
	resp, body := get(t, r.URL()+"/openapi.json", "", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("openapi.json = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if method == "parameters" {
				continue
			}
			documented = append(documented, strings.ToUpper(method)+" "+path)
			var o struct {
				Responses map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(op, &o); err != nil || len(o.Responses) == 0 {
				t.Errorf("%s %s has no responses", method, path)
			}
		}
	}
	for _, d := range documented {
		if !slices.Contains(Routes, d) {
			t.Errorf("documented but not in Routes (not served): %s", d)
		}
	}
	for _, route := range Routes {
		if !slices.Contains(documented, route) {
			t.Errorf("served but not documented: %s", route)
		}
	}

	// Every route resolves in the real mux to that very pattern.
	mux := r.mux()
	for _, route := range Routes {
		method, path, _ := strings.Cut(route, " ")
		req, _ := http.NewRequest(method, "http://x"+strings.NewReplacer("{id}", "abc", "{tenant}", "t1").Replace(path), nil)
		if _, pattern := mux.Handler(req); pattern != route {
			t.Errorf("%s %s is served under %q, want %q", method, path, pattern, route)
		}
	}
}
