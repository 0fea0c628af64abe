package server

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"

	"github.com/basicmachines-co/bm-agent/server/ops"
)

// openAPI is the OpenAPI 3 document of the API listener, served at
// /openapi.json. A test checks it against Routes both ways.
//
//go:embed openapi.json
var openAPI []byte

// Routes are the patterns the API listener serves (http.ServeMux syntax):
// the tenant API, the built-in issuer and operations. Each one is in the
// OpenAPI document and the document has no other; a request that the mux
// serves under a pattern missing here is logged as undocumented.
var Routes = []string{
	// tenant API
	"GET /tenant/mount/info",
	"POST /tenant/mount/credentials",
	"GET /tenant/mount/credentials",
	"DELETE /tenant/mount/credentials/{id}",
	"POST /sync",
	"GET /tenant/status",
	"GET /proxy/health",
	"GET /tenant/events",
	"POST /webhooks/storage",
	"POST /webhooks/storage/{tenant}",
	// built-in issuer (not served in OIDC auth mode)
	"GET /.well-known/openid-configuration",
	"GET /oauth2/jwks",
	"GET /oauth2/authorize",
	"POST /oauth2/authorize",
	"POST /oauth2/token",
	"POST /oauth2/revoke",
	"POST /oauth2/device_authorization",
	"GET /oauth2/device",
	"POST /oauth2/device",
	// operations
	"GET /healthz",
	"GET /readyz",
	"GET /metrics",
	"GET /openapi.json",
}

// Route patterns the metrics look for.
const (
	routeMint   = "POST /tenant/mount/credentials"
	routeRevoke = "DELETE /tenant/mount/credentials/{id}"
)

func (s *Server) registerOps(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	// Not ready while the store or the storage provider does not answer,
	// nor from the moment a shutdown begins (see drain.go).
	mux.Handle("GET /readyz", ops.Draining(s.draining.Load, ops.Ready(ReadyTimeout,
		ops.Check{Name: "store", Probe: func(ctx context.Context) error { return s.store.Ping(ctx) }},
		ops.Check{Name: "storage", Probe: s.probeStorage},
	)))
	mux.Handle("GET /metrics", s.apiMetrics())
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPI)
	})
}

// openMetrics reads the metrics token and opens the metrics listener, as
// configured.
func (s *Server) openMetrics() error {
	if s.cfg.MetricsTokenFile != "" {
		tok, err := ops.ReadTokenFile(s.cfg.MetricsTokenFile)
		if err != nil {
			return fmt.Errorf("server: metrics token: %w", err)
		}
		s.metricsToken = tok
	}
	if s.cfg.MetricsAddr != "" {
		ln, err := net.Listen("tcp", s.cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("server: listen metrics: %w", err)
		}
		s.metricsLn, s.metricsURL = ln, "http://"+ln.Addr().String()
	}
	return nil
}

// apiMetrics is GET /metrics on the API listener: with a metrics token,
// for requests that bear it; without one, not served (404), since the API
// listener faces the clients.
func (s *Server) apiMetrics() http.Handler {
	if s.metricsToken != "" {
		return ops.RequireBearer(s.metricsToken, s.metrics.Handler())
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"detail":"metrics are served on --metrics-addr, or here with --metrics-token-file"}`))
	})
}

// metricsHandler serves the metrics listener: GET /metrics alone (with
// the token if one is set).
func (s *Server) metricsHandler() http.Handler {
	var h http.Handler = s.metrics.Handler()
	if s.metricsToken != "" {
		h = ops.RequireBearer(s.metricsToken, h)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	return mux
}

// probeStorage checks that the storage provider answers a bucket listing.
func (s *Server) probeStorage(ctx context.Context) error {
	if _, err := s.provider.ListBuckets(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s: no answer within %s", s.provider.Name(), ReadyTimeout)
		}
		return fmt.Errorf("%s: list buckets: %w", s.provider.Name(), err)
	}
	return nil
}

// onRequest counts minted and revoked keys and reports undocumented routes.
func (s *Server) onRequest(route string, code int) {
	switch {
	case code != http.StatusOK:
	case route == routeMint:
		s.metrics.CredentialsMinted.Inc()
	case route == routeRevoke:
		s.metrics.CredentialsRevoked.Inc()
	}
	if route != "unmatched" && !slices.Contains(Routes, route) {
		s.log.Warn("route served but missing from server.Routes and the OpenAPI document", "route", route)
	}
}

// Metrics is the server's Prometheus registry and collectors.
func (s *Server) Metrics() *ops.Metrics { return s.metrics }
