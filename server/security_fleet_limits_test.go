package server

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/server/issuer"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// The fleet tests run a minute of guessing in fleetMinute: every limit's
// time is a tenth of its default (the rates ten times, the backoff waits
// a tenth), so that what gets through in fleetMinute is what would get
// through in a minute with the defaults. A guesser sends one request
// every fleetPace.
const (
	fleetSpeed  = 10
	fleetMinute = time.Minute / fleetSpeed
	fleetPace   = 10 * time.Millisecond
)

// fleetLimits are the default limits at fleetSpeed.
func fleetLimits() issuer.Limits {
	return issuer.Limits{
		DeviceAuthPerMinute: issuer.DefaultDeviceAuthPerMinute * fleetSpeed,
		LoginPerMinute:      issuer.DefaultLoginPerMinute * fleetSpeed,
		LoginBackoff:        issuer.DefaultLoginBackoff / fleetSpeed,
		LoginBackoffMax:     issuer.DefaultLoginBackoffMax / fleetSpeed,
	}
}

// limitReplicas starts n servers on one new PostgreSQL database and one
// data dir (whose issuer.pem and oauth.secret they share), one after the
// other, with fleetLimits; local keeps each one's limits in its own
// memory, as before they were shared.
func limitReplicas(t *testing.T, n int, local bool) []*running {
	t.Helper()
	dsn := pg.Get(t).NewDatabase(t)
	dir := t.TempDir()
	var rs []*running
	for range n {
		rs = append(rs, serve(t, func(c *Config) {
			c.DB, c.DataDir = dsn, dir
			c.Limits = fleetLimits()
			c.localLimits = local
		}))
	}
	return rs
}

// paced calls req(i) for i = 0, 1, ... one every fleetPace, for
// fleetMinute and at least min times, and counts the answers by status.
// It returns how long that took.
func paced(min int, req func(i int) (int, error)) (map[int]int, time.Duration, error) {
	counts := map[int]int{}
	start := time.Now()
	tick := time.NewTicker(fleetPace)
	defer tick.Stop()
	for i := 0; i < min || time.Since(start) < fleetMinute; i++ {
		code, err := req(i)
		if err != nil {
			return counts, time.Since(start), err
		}
		counts[code]++
		<-tick.C
	}
	return counts, time.Since(start), nil
}

// fleetScenario is one guesser (req, from an address and for an account
// of its own) against some replicas.
type fleetScenario struct {
	name     string
	replicas []*running
	req      func(i int) (int, error)
	got      int // requests that got through (200)
	counts   map[int]int
	took     time.Duration
}

// runScenarios runs every scenario's guesser at once, at least min
// requests each.
func runScenarios(t *testing.T, min int, scs []*fleetScenario) {
	t.Helper()
	errs := make([]error, len(scs))
	var wg sync.WaitGroup
	for i, sc := range scs {
		wg.Go(func() {
			sc.counts, sc.took, errs[i] = paced(min, sc.req)
			sc.got = sc.counts[http.StatusOK]
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", scs[i].name, err)
		}
	}
}

// maxChecked is the most wrong passwords of one account that can be
// checked in d: the free ones, the one that starts the backoff, then one
// per wait that ended (base, 2 base, 4 base, ...), plus one at an edge.
func maxChecked(d time.Duration) int {
	l := fleetLimits()
	waits := int(math.Log2(float64(d)/float64(l.LoginBackoff) + 1))
	return issuer.DefaultLoginFreeFailures + 1 + waits + 1
}

// TestSecurityFleetPasswordGuessing: a guesser that sends its wrong
// passwords for one account to two replicas in turn gets as many checked
// as against one replica, because the replicas on PostgreSQL share the
// account's backoff (and the client's limits). With limits per replica
// (as before) it got one replica's allowance from each.
func TestSecurityFleetPasswordGuessing(t *testing.T) {
	shared := limitReplicas(t, 2, false)
	local := limitReplicas(t, 2, true)
	scs := []*fleetScenario{
		{name: "one replica", replicas: shared[:1]},
		{name: "two replicas", replicas: shared},
		{name: "two replicas, limits per replica", replicas: local},
	}
	for n, sc := range scs {
		email := fmt.Sprintf("guessed-%d@example.com", n)
		if _, err := sc.replicas[0].CreateAccount(t.Context(), email, "the right password"); err != nil {
			t.Fatal(err)
		}
		form, c := loginPage(t, sc.replicas[0], fmt.Sprintf("127.0.40.%d", n+1)) // its CSRF token is good on every replica (one secret)
		form.Set("email", email)
		sc.req = func(i int) (int, error) {
			f := url.Values{}
			for k, v := range form {
				f[k] = v
			}
			f.Set("password", fmt.Sprintf("guess-%d", i))
			return postForm(c, sc.replicas[i%len(sc.replicas)].URL()+issuer.PathAuthorize, f)
		}
	}
	runScenarios(t, 8*issuer.DefaultLoginFreeFailures, scs)
	for _, sc := range scs[:2] {
		if want := maxChecked(sc.took); sc.got > want || sc.counts[http.StatusTooManyRequests] == 0 {
			t.Errorf("%s: %d wrong passwords checked in %s (answers %v), want at most %d and the rest 429",
				sc.name, sc.got, sc.took, sc.counts, want)
		}
	}
	// Each replica of its own lets the free failures through, at least.
	if sc := scs[2]; sc.got < 2*(issuer.DefaultLoginFreeFailures+1) {
		t.Errorf("%s: %d checked, want at least %d (the baseline must show what sharing prevents)",
			sc.name, sc.got, 2*(issuer.DefaultLoginFreeFailures+1))
	}
	t.Logf("FIGURE fleet passwords: wrong passwords for one account from one address checked per minute (run at %d× speed, a request every %s): one replica %d, two replicas on one PostgreSQL in turn %d; with limits per replica (before) %d (%d, %d, %d requests in %s, %s, %s)",
		fleetSpeed, fleetPace*fleetSpeed, scs[0].got, scs[1].got, scs[2].got,
		total(scs[0].counts), total(scs[1].counts), total(scs[2].counts), scs[0].took.Round(time.Millisecond), scs[1].took.Round(time.Millisecond), scs[2].took.Round(time.Millisecond))
}

// TestSecurityFleetDeviceCodeFlood: a caller asking two replicas in turn
// for device codes gets as many as from one replica: the device
// authorization limit per address is shared on PostgreSQL.
func TestSecurityFleetDeviceCodeFlood(t *testing.T) {
	shared := limitReplicas(t, 2, false)
	local := limitReplicas(t, 2, true)
	scs := []*fleetScenario{
		{name: "one replica", replicas: shared[:1]},
		{name: "two replicas", replicas: shared},
		{name: "two replicas, limits per replica", replicas: local},
	}
	l := fleetLimits()
	for n, sc := range scs {
		c := clientFrom(fmt.Sprintf("127.0.41.%d", n+1))
		sc.req = func(i int) (int, error) {
			return postForm(c, sc.replicas[i%len(sc.replicas)].URL()+issuer.PathDeviceAuthorization, deviceAuthForm())
		}
	}
	runScenarios(t, 4*issuer.DefaultDeviceAuthBurst, scs)
	for _, sc := range scs[:2] {
		want := issuer.DefaultDeviceAuthBurst + int(l.DeviceAuthPerMinute*sc.took.Minutes()) + 1
		if sc.got > want || sc.counts[http.StatusTooManyRequests] == 0 {
			t.Errorf("%s: %d device codes in %s (answers %v), want at most %d and the rest 429", sc.name, sc.got, sc.took, sc.counts, want)
		}
	}
	if sc := scs[2]; sc.got < 2*issuer.DefaultDeviceAuthBurst {
		t.Errorf("%s: %d device codes, want at least %d (each replica's burst)", sc.name, sc.got, 2*issuer.DefaultDeviceAuthBurst)
	}
	t.Logf("FIGURE fleet device codes: codes one address got per minute (run at %d× speed, a request every %s): one replica %d, two replicas on one PostgreSQL in turn %d; with limits per replica (before) %d (%d, %d, %d requests in %s, %s, %s)",
		fleetSpeed, fleetPace*fleetSpeed, scs[0].got, scs[1].got, scs[2].got,
		total(scs[0].counts), total(scs[1].counts), total(scs[2].counts), scs[0].took.Round(time.Millisecond), scs[1].took.Round(time.Millisecond), scs[2].took.Round(time.Millisecond))
}

// TestSecurityFleetLimitsWhenPostgresFails: while the shared counters
// cannot be used, a replica still limits device logins (its own limits,
// with a warning), rather than letting a flood through or refusing all.
func TestSecurityFleetLimitsWhenPostgresFails(t *testing.T) {
	r := limitReplicas(t, 1, false)[0]
	db := r.Store().DB()
	if _, err := db.Exec(`ALTER TABLE rate_buckets RENAME TO rate_buckets_away`); err != nil {
		t.Fatal(err)
	}
	u := r.URL() + issuer.PathDeviceAuthorization
	counts := flood("127.0.42.1", 1, -4*issuer.DefaultDeviceAuthBurst, func(c *http.Client) (int, error) {
		return postForm(c, u, deviceAuthForm())
	})
	// At most the burst and what the rate adds while the flood ran (well
	// under a second's worth at this speed, but a slow machine may take
	// longer): never the 40 asked.
	if got := counts[http.StatusOK]; got < 1 || got > 2*issuer.DefaultDeviceAuthBurst || counts[http.StatusTooManyRequests] == 0 {
		t.Errorf("device codes while the shared counters fail: %v, want the burst of %d (and a few) then 429", counts, issuer.DefaultDeviceAuthBurst)
	}
	var warnings []string
	for _, line := range strings.Split(r.logs.String(), "\n") {
		if strings.Contains(line, "shared rate limits unavailable") {
			warnings = append(warnings, line)
		}
	}
	if len(warnings) != 1 {
		t.Errorf("%d warnings of the fallback, want 1", len(warnings))
	}
	for _, w := range warnings {
		if strings.Contains(w, "127.0.42.1") {
			t.Errorf("the warning names the client address: %s", w)
		}
	}
}

// TestSecurityFleetMintLimit: a tenant minting keys through two replicas
// on one PostgreSQL gets the burst one replica gives, not one per
// replica (the keys never expire: each one is worth limiting).
func TestSecurityFleetMintLimit(t *testing.T) {
	const burst = 3
	for _, tt := range []struct {
		name  string
		local bool
		want  int
	}{
		{"shared", false, burst},
		{"per replica (before)", true, 2 * burst},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dsn := pg.Get(t).NewDatabase(t)
			dir := t.TempDir()
			lb := newBalancer(t) // one public URL, the tokens' issuer
			var rs []*running
			for range 2 {
				rs = append(rs, serve(t, func(c *Config) {
					c.DB, c.DataDir, c.PublicURL = dsn, dir, lb.url
					c.MintPerHour, c.MintBurst = 1, burst
					c.localLimits = tt.local
				}))
			}
			tok := ""
			minted := 0
			for i := range 4 * burst {
				lb.to(t, rs[i%2])
				if tok == "" {
					tok = login(t, rs[0].Server, demoEmail, demoPassword)
				}
				code, body := do(t, http.MethodPost, lb.url+tenantapi.PathMountCredentials, tok, `{"description":"fleet"}`, nil)
				switch code {
				case http.StatusCreated, http.StatusOK:
					minted++
				case http.StatusTooManyRequests:
				default:
					t.Fatalf("mint %d = %d %s", i, code, body)
				}
			}
			t.Logf("FIGURE mint limit, burst %d, two replicas (%s): %d keys minted of %d asked", burst, tt.name, minted, 4*burst)
			if minted != tt.want {
				t.Errorf("%d keys minted through two replicas, want %d", minted, tt.want)
			}
		})
	}
}
