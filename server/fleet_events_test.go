package server

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/basicmachines-co/bm-agent/cloudapi"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// follower is a device following its tenant's events through the
// balancer with bm-agent's API client, as the daemon does.
type follower struct {
	mu     sync.Mutex
	got    map[string]time.Time // key -> when it arrived
	resync int                  // Reconnected or resync events
	opens  int
}

func follow(t *testing.T, base, token string) *follower {
	t.Helper()
	c, err := cloudapi.NewClient(base, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token, TokenType: "Bearer"}), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &follower{got: map[string]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.FollowEvents(ctx, func(ev cloudapi.ChangeEvent) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if ev.Reconnected || ev.Reason == cloudapi.ReasonResync {
				f.resync++
			}
			for _, k := range ev.Keys {
				if _, dup := f.got[k]; !dup {
					f.got[k] = time.Now()
				}
			}
			return nil
		}, func(up bool) {
			if up {
				f.mu.Lock()
				f.opens++
				f.mu.Unlock()
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

func (f *follower) arrived(key string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	at, ok := f.got[key]
	return at, ok
}

func (f *follower) counts() (opens, resync int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.opens, f.resync
}

// waitArrived waits for key at f.
func (f *follower) waitArrived(t *testing.T, key string, within time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if at, ok := f.arrived(key); ok {
			return at
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not arrive within %s", key, within)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// direct is r's own API address (URL is the balancer's: the public URL).
func direct(r *running) string { return "http://" + r.apiLn.Addr().String() }

// TestEventsAcrossReplicas (issue 14): two devices of one tenant on
// different replicas of one PostgreSQL hear each other's POST /sync; when
// one's replica stops, the device reconnects to the other with its
// Last-Event-ID and gets what was posted meanwhile, resumed, with no
// resync; a device of another tenant hears none of it.
func TestEventsAcrossReplicas(t *testing.T) {
	dsn := pg.Get(t).NewDatabase(t)
	mk := newMasterKeyText(t)
	lb := newBalancer(t)
	r1 := serve(t, replicaConfig(lb, dsn, mk))
	r2 := serve(t, replicaConfig(lb, dsn, mk))
	lb.to(t, r1)
	tok := login(t, r1.Server, demoEmail, demoPassword)
	if _, err := r1.CreateAccount(context.Background(), "bob@example.com", "another horse battery"); err != nil {
		t.Fatal(err)
	}
	other := login(t, r1.Server, "bob@example.com", "another horse battery")

	lb.to(t, r2)
	phone := follow(t, lb.url, tok)    // on replica 2, through the balancer
	bob := follow(t, r2.URL(), other)  // another tenant, on replica 2
	laptop := follow(t, r1.URL(), tok) // on replica 1
	post := func(r *running, device, key string) time.Time {
		t.Helper()
		body := fmt.Sprintf(`{"device":%q,"paths":[%q]}`, device, key)
		start := time.Now()
		if code, resp := do(t, http.MethodPost, direct(r)+tenantapi.PathSync, tok, body, nil); code != http.StatusAccepted {
			t.Fatalf("POST /sync on %s = %d %s", direct(r), code, resp)
		}
		return start
	}
	deadline := time.Now().Add(10 * time.Second)
	for o1, _ := phone.counts(); o1 == 0; o1, _ = phone.counts() {
		if time.Now().After(deadline) {
			t.Fatal("the phone's stream did not open")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for o, _ := laptop.counts(); o == 0; o, _ = laptop.counts() {
		time.Sleep(5 * time.Millisecond)
	}
	var lat []time.Duration
	for i := range 20 {
		key := fmt.Sprintf("from-laptop-%d.md", i)
		start := post(r1, "laptop", key)
		lat = append(lat, phone.waitArrived(t, key, 2*time.Second).Sub(start))
		key = fmt.Sprintf("from-phone-%d.md", i)
		start = post(r2, "phone", key)
		lat = append(lat, laptop.waitArrived(t, key, 2*time.Second).Sub(start))
	}
	slices.Sort(lat)
	t.Logf("FIGURE events across replicas: POST /sync on one → device on the other p50 %s max %s (%d)",
		lat[len(lat)/2].Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond), len(lat))

	// Replica 2 stops (its streams are told to reconnect); the balancer
	// sends the phone to replica 1. What the laptop posts meanwhile is
	// replayed to it there.
	lb.to(t, r1)
	if _, err := r2.stop(t); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		post(r1, "laptop", fmt.Sprintf("while-away-%d.md", i))
	}
	for i := range 3 {
		phone.waitArrived(t, fmt.Sprintf("while-away-%d.md", i), 15*time.Second)
	}
	if opens, resync := phone.counts(); opens < 2 || resync != 0 {
		t.Errorf("phone: %d streams opened, %d resyncs; want a second stream, resumed", opens, resync)
	}
	bob.mu.Lock()
	defer bob.mu.Unlock()
	if len(bob.got) != 0 {
		t.Errorf("another tenant's device heard %d of this tenant's changes", len(bob.got))
	}
}
