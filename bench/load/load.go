// Package load is bm-server's fleet load test (issue 14, `make
// bench-load`): several bm-server replicas on one PostgreSQL and a
// distributed MinIO (four nodes, erasure-coded), and thousands of
// simulated devices of hundreds of tenants, each holding an event stream,
// minting and listing keys, reading its mount info and posting POST /sync
// the way bm-agent does. It measures what a fleet's
// operator needs: requests per second, latency per route, errors, each
// replica's memory, and how long an event posted on one replica takes to
// reach the tenant's devices on the others; and, when asked, it kills one
// replica midway and checks that its devices carry on elsewhere without
// losing an event.
//
// The devices use bm-agent's own API client (package cloudapi) with a
// client-side round robin: each device is bound to one replica and moves
// to the next when its replica stops answering, as a device behind a load
// balancer would be moved. Tokens come from an OIDC issuer the harness
// runs on loopback (bm-server in --auth-mode oidc, tenants provisioned on
// first use), so the figures are the tenant API's and not the login
// flows'.
package load

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// Config is one load run.
type Config struct {
	// Bin holds the bm-server binary.
	Bin string
	// Replicas is how many bm-server processes share the database.
	Replicas int
	// Tenants and Devices: the devices are spread evenly over the tenants
	// and, within a tenant, over the replicas.
	Tenants, Devices int
	// Duration is how long the devices run after the last one started.
	Duration time.Duration
	// Ramp spreads the devices' starts (their first key mint) over this.
	Ramp time.Duration
	// SyncEvery is each device's mean time between POST /sync; ListEvery
	// its mean time between listing its keys and reading its mount info.
	SyncEvery, ListEvery time.Duration
	// Kill kills one replica (SIGKILL) halfway through Duration.
	Kill bool
	// Grace is how long the run waits after the last POST /sync for its
	// events to arrive before it counts the missing ones as lost.
	Grace time.Duration
	// Log gets progress lines (nil: none).
	Log io.Writer
}

// Default is `make bench-load`: 2,000 devices of 500 tenants on three
// replicas for 60 s, one replica killed midway.
func Default() Config {
	return Config{Replicas: 3, Tenants: 500, Devices: 2000, Duration: 60 * time.Second, Ramp: 15 * time.Second,
		SyncEvery: 20 * time.Second, ListEvery: 60 * time.Second, Kill: true, Grace: 5 * time.Second}
}

// Short is the form CI runs: 200 devices of 50 tenants for 15 s.
func Short() Config {
	return Config{Replicas: 3, Tenants: 50, Devices: 200, Duration: 15 * time.Second, Ramp: 4 * time.Second,
		SyncEvery: 4 * time.Second, ListEvery: 10 * time.Second, Kill: true, Grace: 5 * time.Second}
}

// Run runs cfg and returns its report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Replicas < 1 || cfg.Tenants < 1 || cfg.Devices < cfg.Tenants {
		return nil, fmt.Errorf("load: %d replicas, %d tenants, %d devices: need at least one replica and a device per tenant", cfg.Replicas, cfg.Tenants, cfg.Devices)
	}
	f, err := startFleet(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	defer f.stop()
	r := newRun(cfg, f)
	return r.run(ctx)
}

// logf writes a progress line.
func (c Config) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, time.Now().Format("15:04:05 ")+format+"\n", args...)
	}
}

// sleep waits d or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// routeStats are the latencies and outcomes of one route.
type routeStats struct {
	mu       sync.Mutex
	samples  []float64 // seconds, successful answers
	failed   int       // attempts that got no answer or a 5xx (retried by the client)
	statuses map[int]int
}

func (s *routeStats) add(d time.Duration, status int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.statuses == nil {
		s.statuses = map[int]int{}
	}
	if status != 0 {
		s.statuses[status]++
	}
	if ok {
		s.samples = append(s.samples, d.Seconds())
	} else {
		s.failed++
	}
}
