package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestServeOnPostgres runs the server on PostgreSQL: ready, a login and
// the mount info.
func TestServeOnPostgres(t *testing.T) {
	dsn := pg.Get(t).NewDatabase(t)
	r := serve(t, func(c *Config) { c.DB = dsn })
	if r.Store().Dialect() != "postgres" {
		t.Fatalf("dialect = %s", r.Store().Dialect())
	}
	if resp, body := get(t, r.URL()+"/readyz", "", nil); resp.StatusCode != 200 {
		t.Errorf("readyz = %d %s", resp.StatusCode, body)
	}
	token := login(t, r.Server, demoEmail, demoPassword)
	if resp, body := get(t, r.URL()+"/tenant/mount/info", token, nil); resp.StatusCode != 200 {
		t.Errorf("mount info = %d %s", resp.StatusCode, body)
	}
}

// benchDuration is how long each load run lasts: BM_BENCH_DURATION (a Go
// duration; `make bench-server` sets 20s), else 3 s.
func benchDuration(b *testing.B) time.Duration {
	if v := os.Getenv("BM_BENCH_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("BM_BENCH_DURATION: %v", err)
		}
		return d
	}
	return 3 * time.Second
}

// BenchmarkMountInfo loads GET /tenant/mount/info with 64 concurrent
// clients on loopback for benchDuration, on SQLite and on PostgreSQL, and
// reports requests per second and p50/p99 latency. It is a measurement,
// not a test: it asserts only that every request succeeded. Run it with
// `make bench-server`, or
//
//	BM_BENCH_DURATION=20s go test -run '^$' -bench MountInfo -benchtime 1x ./server/
func BenchmarkMountInfo(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			mod := func(c *Config) {
				// Request logs are formatted as in production, then dropped.
				c.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
			}
			if backend == "postgres" {
				dsn := pg.Get(b).NewDatabase(b)
				mod = func(c *Config) {
					c.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
					c.DB = dsn
				}
			}
			r := serve(b, mod)
			token := login(b, r.Server, demoEmail, demoPassword)
			for b.Loop() {
				res := load(b, r.URL()+"/tenant/mount/info", token, 64, benchDuration(b))
				b.ReportMetric(res.rps, "req/s")
				b.ReportMetric(float64(res.p50.Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(res.p99.Microseconds())/1000, "p99-ms")
				b.Logf("%s: %d requests in %s at concurrency 64: %.0f req/s, p50 %s, p99 %s",
					backend, res.n, res.elapsed.Round(time.Millisecond), res.rps, res.p50, res.p99)
			}
		})
	}
}

type loadResult struct {
	n        int
	elapsed  time.Duration
	rps      float64
	p50, p99 time.Duration
}

// load sends GET url with token from conc goroutines for d and measures.
func load(b *testing.B, url, token string, conc int, d time.Duration) loadResult {
	b.Helper()
	tr := &http.Transport{MaxIdleConns: conc, MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	lat := make([][]time.Duration, conc)
	errs := make([]error, conc)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range conc {
		wg.Go(func() {
			lat[i] = make([]time.Duration, 0, 1<<14)
			for ctx.Err() == nil {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Header.Set("Authorization", "Bearer "+token)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					errs[i] = err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs[i] = fmt.Errorf("status %d", resp.StatusCode)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, err := range errs {
		if err != nil {
			b.Fatalf("load: %v", err)
		}
	}
	all := slices.Concat(lat...)
	if len(all) == 0 {
		b.Fatal("load: no request completed")
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration { return all[int(p*float64(len(all)-1))] }
	return loadResult{n: len(all), elapsed: elapsed, rps: float64(len(all)) / elapsed.Seconds(), p50: pct(0.50), p99: pct(0.99)}
}
