package load

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/basicmachines-co/bm-agent/bench"
)

// Report is what a load run measured.
type Report struct {
	Replicas, Tenants, Devices int
	Duration                   time.Duration // from the last device's start to the end of posting
	Killed                     int           // the replica killed midway, -1 for none
	MintWall                   time.Duration // every device minting its key, before the run

	Requests int     // answered requests, all routes but the setup's mints
	RPS      float64 // answered requests a second over the run (after the mints)
	Routes   []RouteReport
	// Errors are operations that failed after the client's retries (must
	// be 0); FirstErrors shows some of them.
	Errors      int64
	FirstErrors []string

	// Events: each POST /sync names one path, and every other device of
	// the tenant whose stream was open before it was sent must get it.
	Sent, Owed, Delivered, Lost int
	Reconnects                  int64 // event streams that reopened (a killed replica's devices)
	Resyncs                     int64 // reopened streams the server could not resume (Last-Event-ID unknown to it)
	// FanOut is from a POST /sync to its arrival at the tenant's other
	// devices; CrossReplica only where sender and receiver were on
	// different replicas.
	FanOut, CrossReplica Quantiles
	// Replayed is the part of FanOut delivered on a stream that reopened
	// after the event was sent (a killed replica's devices, whose
	// reconnection waits the server's retry: time with jitter); Live the
	// rest, what the goal is about.
	Live, Replayed Quantiles

	ReplicaPeakRSSMB []float64
}

// RouteReport is one route's figures.
type RouteReport struct {
	Route    string
	N        int     // answered
	RPS      float64 // answered a second
	P50, P99 time.Duration
	Failed   int         // attempts without an answer or with a 5xx (the client retried them)
	Statuses map[int]int // answers by status code
}

// Quantiles of a latency.
type Quantiles struct {
	N        int
	P50, P99 time.Duration
	Max      time.Duration
}

func quantiles(xs []float64) Quantiles {
	if len(xs) == 0 {
		return Quantiles{}
	}
	sec := func(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }
	return Quantiles{N: len(xs), P50: sec(bench.Quantile(xs, 0.5)), P99: sec(bench.Quantile(xs, 0.99)), Max: sec(slices.Max(xs))}
}

func (r *run) report(start time.Time, killed *replica) *Report {
	rep := &Report{Replicas: len(r.f.replicas), Tenants: r.cfg.Tenants, Devices: len(r.devices),
		Duration: r.cfg.Duration, Killed: -1, MintWall: r.mintWall, Errors: r.errs.Load(), FirstErrors: r.firstErrs, Reconnects: r.reconnects.Load(), Resyncs: r.resyncs.Load()}
	if killed != nil {
		rep.Killed = killed.i
	}
	wall := time.Since(start).Seconds()
	for _, name := range routeOrder {
		s := r.routes[name]
		s.mu.Lock()
		q := quantiles(s.samples)
		over := wall
		if name == routeMint {
			over = r.mintWall.Seconds() // the mints are the setup step
		}
		rr := RouteReport{Route: name, N: len(s.samples), RPS: float64(len(s.samples)) / over, P50: q.P50, P99: q.P99,
			Failed: s.failed, Statuses: s.statuses}
		s.mu.Unlock()
		if rr.N+rr.Failed == 0 {
			continue
		}
		rep.Routes = append(rep.Routes, rr)
		if name != routeMint {
			rep.Requests += rr.N
		}
	}
	rep.RPS = float64(rep.Requests) / wall
	byTenant := map[int][]*device{}
	for _, d := range r.devices {
		byTenant[d.tenant] = append(byTenant[d.tenant], d)
	}
	var all, cross, live, replayed []float64
	r.mu.Lock()
	for _, s := range r.sent {
		rep.Sent++
		for _, d := range byTenant[s.tenant] {
			if d.i == s.from {
				continue
			}
			d.mu.Lock()
			since := d.liveSince
			d.mu.Unlock()
			got, ok := s.got[d.i]
			if ok {
				lat := got.at.Sub(s.at).Seconds()
				all = append(all, lat)
				if got.replayed {
					replayed = append(replayed, lat)
				} else {
					live = append(live, lat)
				}
				if got.replica != s.replica {
					cross = append(cross, lat)
				}
			}
			if since.IsZero() || !since.Before(s.at) {
				continue // its stream was not open yet: not owed (a delivery still counts above)
			}
			rep.Owed++
			if ok {
				rep.Delivered++
			} else {
				rep.Lost++
			}
		}
	}
	r.mu.Unlock()
	rep.FanOut, rep.CrossReplica = quantiles(all), quantiles(cross)
	rep.Live, rep.Replayed = quantiles(live), quantiles(replayed)
	for _, rp := range r.f.replicas {
		rep.ReplicaPeakRSSMB = append(rep.ReplicaPeakRSSMB, float64(rp.peak())/(1<<20))
	}
	return rep
}

// Print writes the report as a few tables.
func (rep *Report) Print(w io.Writer) {
	kill := "none"
	if rep.Killed >= 0 {
		kill = fmt.Sprintf("replica %d killed (SIGKILL) halfway", rep.Killed)
	}
	fmt.Fprintf(w, "%d replicas, %d devices of %d tenants, %s after the ramp; %s; every device minted its key first (%d at once), in %s\n\n",
		rep.Replicas, rep.Devices, rep.Tenants, rep.Duration, kill, mintConcurrency, rep.MintWall.Round(time.Millisecond))
	fmt.Fprintf(w, "| route | answered | per second | p50 | p99 | attempts failed (retried) | answers |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, rr := range rep.Routes {
		fmt.Fprintf(w, "| %s | %d | %.1f | %s | %s | %d | %s |\n", rr.Route, rr.N, rr.RPS, ms(rr.P50), ms(rr.P99), rr.Failed, statuses(rr.Statuses))
	}
	fmt.Fprintf(w, "\nFIGURE load: %d requests, %.1f a second; errors after retries: %d (goal 0)\n", rep.Requests, rep.RPS, rep.Errors)
	for _, e := range rep.FirstErrors {
		fmt.Fprintf(w, "  error: %s\n", e)
	}
	fmt.Fprintf(w, "FIGURE load: events: %d POST /sync, %d deliveries owed, %d delivered, %d lost (goal 0); %d streams reopened, %d of them not resumed (resync)\n",
		rep.Sent, rep.Owed, rep.Delivered, rep.Lost, rep.Reconnects, rep.Resyncs)
	fmt.Fprintf(w, "FIGURE load: fan-out POST /sync → other devices: p50 %s p99 %s max %s (%d); across replicas p50 %s p99 %s max %s (%d) (goal p99 < 1 s)\n",
		ms(rep.FanOut.P50), ms(rep.FanOut.P99), ms(rep.FanOut.Max), rep.FanOut.N,
		ms(rep.CrossReplica.P50), ms(rep.CrossReplica.P99), ms(rep.CrossReplica.Max), rep.CrossReplica.N)
	fmt.Fprintf(w, "FIGURE load: of them, on streams that stayed open p50 %s p99 %s max %s (%d); replayed after a reconnection p50 %s p99 %s max %s (%d)\n",
		ms(rep.Live.P50), ms(rep.Live.P99), ms(rep.Live.Max), rep.Live.N,
		ms(rep.Replayed.P50), ms(rep.Replayed.P99), ms(rep.Replayed.Max), rep.Replayed.N)
	var mem []string
	for i, m := range rep.ReplicaPeakRSSMB {
		mem = append(mem, fmt.Sprintf("replica %d %.0f MB", i, m))
	}
	fmt.Fprintf(w, "FIGURE load: peak resident memory: %s\n", strings.Join(mem, ", "))
}

func ms(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func statuses(m map[int]int) string {
	codes := make([]int, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%d×%d", m[c], c))
	}
	return strings.Join(parts, " ")
}
