package load

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/basicmachines-co/bm-agent/cloudapi"
	"github.com/basicmachines-co/bm-agent/internal/jitter"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// Routes the report shows, in this order.
const (
	routeMountInfo = "GET " + tenantapi.PathMountInfo
	routeMint      = "POST " + tenantapi.PathMountCredentials
	routeList      = "GET " + tenantapi.PathMountCredentials
	routeSync      = "POST " + tenantapi.PathSync
	routeEvents    = "GET " + tenantapi.PathTenantEvents + " (open)"
	routeOther     = "other"
)

var routeOrder = []string{routeMountInfo, routeMint, routeList, routeSync, routeEvents, routeOther}

// run is one load run under way.
type run struct {
	cfg     Config
	f       *fleet
	routes  map[string]*routeStats
	base    *http.Transport
	devices []*device

	errs      atomic.Int64
	errMu     sync.Mutex
	firstErrs []string

	reconnects atomic.Int64 // event streams that opened again
	resyncs    atomic.Int64 // of them, the ones not resumed (the client was told to compare everything)
	mintWall   time.Duration

	mu   sync.Mutex
	sent map[string]*sentEvent // event key -> what was sent
}

// sentEvent is one POST /sync a device made, named by its one path.
type sentEvent struct {
	at      time.Time
	tenant  int
	from    int // device index
	replica int // the sender's replica when it sent
	got     map[int]delivery
}

type delivery struct {
	at       time.Time
	replica  int  // the receiver's replica when it got it
	replayed bool // on a stream that reopened after the event was sent (the server replayed it)
}

// device is one simulated bm-agent.
type device struct {
	i, tenant int
	name      string
	tr        *fleetTransport
	c         *cloudapi.Client

	mu        sync.Mutex
	liveSince time.Time // the first time its event stream opened
	openedAt  time.Time // when its current stream opened
	up        bool      // its stream is open
}

func newRun(cfg Config, f *fleet) *run {
	r := &run{cfg: cfg, f: f, routes: map[string]*routeStats{}, sent: map[string]*sentEvent{}}
	for _, name := range routeOrder {
		r.routes[name] = &routeStats{}
	}
	r.base = &http.Transport{
		MaxIdleConns: 0, MaxIdleConnsPerHost: cfg.Devices, IdleConnTimeout: 30 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}
	return r
}

func (r *run) fail(what string, err error) {
	n := r.errs.Add(1)
	if n <= 10 {
		r.errMu.Lock()
		r.firstErrs = append(r.firstErrs, fmt.Sprintf("%s: %v", what, err))
		r.errMu.Unlock()
	}
}

func (r *run) newDevice(i int) (*device, error) {
	d := &device{i: i, tenant: i % r.cfg.Tenants}
	d.name = fmt.Sprintf("device-%05d", i)
	addrs := make([]string, len(r.f.replicas))
	for k, rep := range r.f.replicas {
		addrs[k] = rep.addr
	}
	d.tr = &fleetTransport{base: r.base, addrs: addrs, run: r}
	d.tr.cur.Store(int32((i / r.cfg.Tenants) % len(addrs)))
	tok, err := r.f.issuer.token(tenantName(d.tenant), fmt.Sprintf("user-%04d", d.tenant), 2*time.Hour)
	if err != nil {
		return nil, err
	}
	ts := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok, TokenType: "Bearer"})
	d.c, err = cloudapi.NewClient("http://"+addrs[0], ts, &http.Client{Transport: d.tr, Timeout: 30 * time.Second},
		slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	d.c.UserAgent = "bm-load"
	return d, nil
}

func tenantName(i int) string { return fmt.Sprintf("load-%04d", i) }

// live runs d: its event stream, its first calls, then its schedule of
// POST /sync, key listings and mount info reads until work ends; the
// stream runs until streams ends.
func (r *run) live(work, streams context.Context, d *device, wg *sync.WaitGroup) {
	defer wg.Done()
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := d.c.FollowEvents(streams, func(ev cloudapi.ChangeEvent) error {
			r.received(d, ev)
			return nil
		}, func(up bool) {
			d.mu.Lock()
			d.up = up
			d.mu.Unlock()
			if up {
				d.mu.Lock()
				d.openedAt = time.Now()
				if d.liveSince.IsZero() {
					d.liveSince = time.Now()
				} else {
					r.reconnects.Add(1)
				}
				d.mu.Unlock()
			}
		})
		if err != nil && streams.Err() == nil {
			r.fail("events", err)
		}
	}()
	if _, err := d.c.MountInfo(work); err != nil && work.Err() == nil {
		r.fail("mount info", err)
	}
	nextSync := time.Now().Add(jitter.Spread(r.cfg.SyncEvery))
	nextList := time.Now().Add(jitter.Spread(r.cfg.ListEvery))
	seq := 0
	for {
		next := nextSync
		if nextList.Before(next) {
			next = nextList
		}
		wait := time.Until(next)
		if !sleep(work, max(wait, 0)) {
			return
		}
		now := time.Now()
		if !now.Before(nextSync) {
			seq++
			r.sync(work, d, seq)
			nextSync = now.Add(jitter.Spread(r.cfg.SyncEvery))
		}
		if !now.Before(nextList) {
			if _, err := d.c.ListCredentials(work); err != nil && work.Err() == nil {
				r.fail("list keys", err)
			}
			if _, err := d.c.MountInfo(work); err != nil && work.Err() == nil {
				r.fail("mount info", err)
			}
			nextList = now.Add(jitter.Spread(r.cfg.ListEvery))
		}
	}
}

// sync posts one POST /sync naming one path that says who sent it.
func (r *run) sync(ctx context.Context, d *device, seq int) {
	key := fmt.Sprintf("load/%s/%d.md", d.name, seq)
	ev := &sentEvent{at: time.Now(), tenant: d.tenant, from: d.i, replica: int(d.tr.cur.Load()), got: map[int]delivery{}}
	r.mu.Lock()
	r.sent[key] = ev
	r.mu.Unlock()
	if _, err := d.c.NotifySync(ctx, tenantapi.SyncRequest{Device: d.name, Reason: "load", Paths: []string{key}}); err != nil {
		// not published: no device is owed it
		r.mu.Lock()
		delete(r.sent, key)
		r.mu.Unlock()
		if ctx.Err() == nil {
			r.fail("sync", err)
		}
	}
}

// received records the keys of ev that a device got.
func (r *run) received(d *device, ev cloudapi.ChangeEvent) {
	if ev.Reconnected || ev.Reason == cloudapi.ReasonResync {
		r.resyncs.Add(1)
		return
	}
	now := time.Now()
	rep := int(d.tr.cur.Load())
	d.mu.Lock()
	opened := d.openedAt
	d.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range ev.Keys {
		if s, ok := r.sent[k]; ok && s.from != d.i {
			if _, dup := s.got[d.i]; !dup {
				s.got[d.i] = delivery{at: now, replica: rep, replayed: opened.After(s.at)}
			}
		}
	}
}

// streamsDown is the number of devices whose event stream is not open.
func (r *run) streamsDown() int {
	n := 0
	for _, d := range r.devices {
		d.mu.Lock()
		if !d.up {
			n++
		}
		d.mu.Unlock()
	}
	return n
}

// fleetTransport sends a device's requests to its replica, and moves it to
// the next replica when its replica stops answering (the client retries).
type fleetTransport struct {
	base  http.RoundTripper
	addrs []string
	cur   atomic.Int32
	run   *run
}

func (t *fleetTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	i := t.cur.Load()
	out := req.Clone(req.Context())
	out.URL.Host = t.addrs[i]
	out.Host = ""
	route := routeOf(req)
	start := time.Now()
	resp, err := t.base.RoundTrip(out)
	stats := t.run.routes[route]
	if err != nil {
		if req.Context().Err() == nil {
			t.cur.CompareAndSwap(i, (i+1)%int32(len(t.addrs)))
			stats.add(0, 0, false)
		}
		return nil, err
	}
	stats.add(time.Since(start), resp.StatusCode, resp.StatusCode < 500)
	return resp, nil
}

func routeOf(req *http.Request) string {
	p := req.URL.Path
	switch {
	case p == tenantapi.PathMountInfo && req.Method == http.MethodGet:
		return routeMountInfo
	case p == tenantapi.PathMountCredentials && req.Method == http.MethodPost:
		return routeMint
	case p == tenantapi.PathMountCredentials && req.Method == http.MethodGet:
		return routeList
	case p == tenantapi.PathSync && req.Method == http.MethodPost:
		return routeSync
	case strings.HasPrefix(p, tenantapi.PathTenantEvents):
		return routeEvents
	}
	return routeOther
}

// run starts the devices over the ramp, lets them work for the duration
// (killing a replica halfway when asked), waits the grace for the last
// events, and reports.
func (r *run) run(ctx context.Context) (*Report, error) {
	for i := range r.cfg.Devices {
		d, err := r.newDevice(i)
		if err != nil {
			return nil, fmt.Errorf("load: device %d: %w", i, err)
		}
		r.devices = append(r.devices, d)
	}
	// Each device mints its key first, as at its login: MinIO's service
	// accounts are made one at a time (about 2 a second here), so the
	// mints are a setup step with their own figures, not a burst inside
	// the measured window.
	mintStart := time.Now()
	if err := r.mintAll(ctx); err != nil {
		return nil, err
	}
	r.mintWall = time.Since(mintStart)
	r.cfg.logf("%d keys minted in %s", len(r.devices), r.mintWall.Round(time.Millisecond))
	work, stopWork := context.WithCancel(ctx)
	defer stopWork()
	streams, stopStreams := context.WithCancel(ctx)
	defer stopStreams()
	var wg sync.WaitGroup
	start := time.Now()
	step := r.cfg.Ramp / time.Duration(len(r.devices))
	for _, d := range r.devices {
		wg.Add(1)
		go r.live(work, streams, d, &wg)
		if !sleep(ctx, step) {
			break
		}
	}
	r.cfg.logf("%d devices started in %s", len(r.devices), time.Since(start).Round(time.Millisecond))
	var killed *replica
	if r.cfg.Kill && len(r.f.replicas) > 1 {
		if !sleep(ctx, r.cfg.Duration/2) {
			return nil, ctx.Err()
		}
		killed = r.f.replicas[0]
		killed.kill()
		r.cfg.logf("killed replica 0 (SIGKILL)")
		sleep(ctx, r.cfg.Duration-r.cfg.Duration/2)
	} else {
		sleep(ctx, r.cfg.Duration)
	}
	stopWork()
	// A killed replica's devices reconnect after the server's retry:
	// time with jitter and backoff (up to about 20 s when the first try
	// met the dead replica): what they missed is replayed then, so wait
	// for every stream to be open again before the grace.
	reopen := time.Now()
	for down := r.streamsDown(); down > 0 && time.Since(reopen) < 45*time.Second; down = r.streamsDown() {
		sleep(ctx, 100*time.Millisecond)
	}
	r.cfg.logf("devices stopped posting; %d streams open again in %s; waiting %s for the last events",
		len(r.devices)-r.streamsDown(), time.Since(reopen).Round(time.Millisecond), r.cfg.Grace)
	sleep(ctx, r.cfg.Grace)
	stopStreams()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return r.report(start, killed), nil
}

// mintConcurrency is how many devices mint their keys at once.
const mintConcurrency = 8

// mintAll has every device mint its key (POST /tenant/mount/credentials).
func (r *run) mintAll(ctx context.Context) error {
	next := make(chan *device)
	var wg sync.WaitGroup
	for range mintConcurrency {
		wg.Go(func() {
			for d := range next {
				if _, err := d.c.CreateCredentials(ctx, "load "+d.name); err != nil && ctx.Err() == nil {
					r.fail("mint key", err)
				}
			}
		})
	}
	for _, d := range r.devices {
		select {
		case next <- d:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	return ctx.Err()
}
