// Package ops is bm-server's operations surface: Prometheus metrics, the
// request middleware (request ids, one JSON log line per request, metrics by
// route pattern) and the readiness check. It knows nothing of the tenant
// API; the server wires it around its mux.
//
// Nothing here logs a header, a query string or a body: the Authorization
// header and OAuth parameters never reach a log line.
package ops

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/felixge/httpsnoop"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// RequestIDHeader carries the request id in and out.
const RequestIDHeader = "X-Request-Id"

// Metrics holds the server's Prometheus collectors in their own registry.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// CredentialsMinted and CredentialsRevoked count mount keys.
	CredentialsMinted  prometheus.Counter
	CredentialsRevoked prometheus.Counter
}

// NewMetrics creates the collectors, with the Go runtime's and the
// process's.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bm_http_requests_total",
			Help: "API requests by route pattern and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bm_http_request_duration_seconds",
			Help:    "API request latency by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		CredentialsMinted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bm_credentials_minted_total",
			Help: "Bucket-scoped mount keys minted.",
		}),
		CredentialsRevoked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bm_credentials_revoked_total",
			Help: "Bucket-scoped mount keys revoked through the API.",
		}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.CredentialsMinted, m.CredentialsRevoked,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where more collectors can be registered.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Observe records one finished request.
func (m *Metrics) Observe(route string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}

// CountFunc returns request counts by operation, such as
// s3embed.Server.Stats.
type CountFunc func() map[string]int64

// RegisterS3Stats exports stats as bm_s3_requests_total{operation}. The keys
// "total" and "denied" become bm_s3_requests_all_total and
// bm_s3_requests_denied_total.
func (m *Metrics) RegisterS3Stats(stats CountFunc) error {
	return m.reg.Register(&s3Collector{stats: stats})
}

var (
	s3OpDesc     = prometheus.NewDesc("bm_s3_requests_total", "Requests to the embedded S3 endpoint by operation.", []string{"operation"}, nil)
	s3AllDesc    = prometheus.NewDesc("bm_s3_requests_all_total", "Requests to the embedded S3 endpoint.", nil, nil)
	s3DeniedDesc = prometheus.NewDesc("bm_s3_requests_denied_total", "Requests to the embedded S3 endpoint refused by authentication or scope.", nil, nil)
)

type s3Collector struct{ stats CountFunc }

func (c *s3Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- s3OpDesc
	ch <- s3AllDesc
	ch <- s3DeniedDesc
}

func (c *s3Collector) Collect(ch chan<- prometheus.Metric) {
	stats := c.stats()
	ch <- prometheus.MustNewConstMetric(s3AllDesc, prometheus.CounterValue, float64(stats["total"]))
	ch <- prometheus.MustNewConstMetric(s3DeniedDesc, prometheus.CounterValue, float64(stats["denied"]))
	for op, n := range stats {
		if op != "total" && op != "denied" {
			ch <- prometheus.MustNewConstMetric(s3OpDesc, prometheus.CounterValue, float64(n), op)
		}
	}
}

type ctxKey struct{}

// RequestID returns the request id of ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// validID is what an incoming X-Request-Id must look like to be kept.
var validID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Middleware gives every request a request id (the caller's X-Request-Id
// when it is sane, else a new one; echoed in the response), logs one line
// per request with log (method, route pattern, path without the query,
// status, bytes, duration, request id; "anonymous" for a request without
// credentials or refused them, which a LogLimiter may then thin out) and
// records metrics (nil skips them).
// The route pattern is what http.ServeMux matched; unmatched requests are
// "unmatched", so metrics stay bounded. onDone, when set, is told the route
// pattern and status of each request.
func Middleware(log *slog.Logger, m *Metrics, onDone func(route string, code int), next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !validID.MatchString(id) {
			id = newRequestID()
		}
		w.Header().Set(RequestIDHeader, id)
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, id))
		met := httpsnoop.CaptureMetrics(next, w, r)
		route := r.Pattern // set by ServeMux on this request
		if route == "" {
			route = "unmatched"
		}
		if m != nil {
			m.Observe(route, met.Code, met.Duration)
		}
		if onDone != nil {
			onDone(route, met.Code)
		}
		level := slog.LevelInfo
		if met.Code >= 500 {
			level = slog.LevelError
		}
		remote, _, _ := net.SplitHostPort(r.RemoteAddr)
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.String("route", route),
			slog.String("path", r.URL.Path),
			slog.Int("status", met.Code),
			slog.Int64("bytes", met.Written),
			slog.Float64("duration_ms", float64(met.Duration.Microseconds())/1000),
			slog.String("remote", remote),
		}
		if r.Header.Get("Authorization") == "" || met.Code == http.StatusUnauthorized {
			attrs = append(attrs, slog.Bool(AnonymousAttr, true))
		}
		log.LogAttrs(r.Context(), level, "request", attrs...)
	})
}

// ContextHandler is a slog.Handler that adds the request id of the
// context (see Middleware) to every record logged with one.
type ContextHandler struct{ slog.Handler }

// Handle implements slog.Handler.
func (h ContextHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h ContextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return ContextHandler{h.Handler.WithAttrs(attrs)}
}

// WithGroup implements slog.Handler.
func (h ContextHandler) WithGroup(name string) slog.Handler {
	return ContextHandler{h.Handler.WithGroup(name)}
}

// Check is one part of readiness: a name and a probe.
type Check struct {
	Name  string
	Probe func(ctx context.Context) error
}

// ReadyReport is the body of /readyz.
type ReadyReport struct {
	Status string            `json:"status"` // "ready" or "unavailable"
	Checks map[string]string `json:"checks"` // name -> "ok" or the error
}

// Ready runs checks concurrently, each with timeout, and answers 200 with
// status "ready" when all pass, else 503 with status "unavailable" and the
// failing checks' errors.
func Ready(timeout time.Duration, checks ...Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := ReadyReport{Status: "ready", Checks: make(map[string]string, len(checks))}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, c := range checks {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(r.Context(), timeout)
				defer cancel()
				// A probe that ignores ctx still cannot hold the answer back.
				errc := make(chan error, 1)
				go func() { errc <- c.Probe(ctx) }()
				var err error
				select {
				case err = <-errc:
				case <-ctx.Done():
					err = fmt.Errorf("no answer within %s", timeout)
				}
				res := "ok"
				if err != nil {
					res = err.Error()
				}
				mu.Lock()
				defer mu.Unlock()
				rep.Checks[c.Name] = res
				if res != "ok" {
					rep.Status = "unavailable"
				}
			})
		}
		wg.Wait()
		writeReady(w, rep)
	})
}

// CheckShutdown is the check of /readyz that Draining fails.
const CheckShutdown = "shutdown"

// Draining is ready while draining reports false; once it reports true
// (the server is shutting down) it answers 503 at once, with status
// "unavailable" and the CheckShutdown check failed, without running the
// checks, so that a load balancer takes the server out before it stops
// accepting connections.
func Draining(draining func() bool, ready http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !draining() {
			ready.ServeHTTP(w, r)
			return
		}
		writeReady(w, ReadyReport{Status: "unavailable", Checks: map[string]string{CheckShutdown: "draining: the server is shutting down"}})
	})
}

// writeReady answers rep: 200 when it is ready, else 503.
func writeReady(w http.ResponseWriter, rep ReadyReport) {
	code := http.StatusOK
	if rep.Status != "ready" {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(rep)
}
