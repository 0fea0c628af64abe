package events

import (
	"reflect"
	"testing"
	"time"
)

// fakeClock is a settable clock for a hub's retention.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// keysOf is the first key of each event (the tests give one each).
func keysOf(evs []Event) []string {
	var out []string
	for _, ev := range evs {
		if len(ev.Keys) > 0 {
			out = append(out, ev.Keys[0])
		} else {
			out = append(out, ev.Reason)
		}
	}
	return out
}

func TestSubscribeAfter(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)}
	h := NewHub(8)
	h.now = clock.now
	h.log.keepMax = 5
	// A1 B1 A2 B2 A3: numbers 1..5
	for _, k := range []string{"A1", "B1", "A2", "B2", "A3"} {
		h.Publish(Event{TenantID: k[:1], Keys: []string{k}})
		clock.t = clock.t.Add(time.Second)
	}
	other := NewHub(8)
	tests := []struct {
		name    string
		last    string
		want    []string
		resumed bool
	}{
		{"afresh: nothing to replay", "", nil, false},
		{"after the first", h.idOf(1), []string{"A2", "A3"}, true},
		{"after one of another tenant", h.idOf(4), []string{"A3"}, true},
		{"up to date", h.idOf(5), nil, true},
		{"before the start", h.idOf(0), []string{"A1", "A2", "A3"}, true},
		{"another hub's", other.idOf(1), []string{ReasonResync}, false},
		{"not an ID", "garbage", []string{ReasonResync}, false},
		{"a number not given yet", h.idOf(9), []string{ReasonResync}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub, rp := h.SubscribeAfter("A", tt.last)
			defer sub.Close()
			if got := keysOf(rp.Events); !reflect.DeepEqual(got, tt.want) || rp.Resumed != tt.resumed {
				t.Errorf("replay %v resumed %v, want %v resumed %v", got, rp.Resumed, tt.want, tt.resumed)
			}
			for _, ev := range rp.Events {
				if ev.TenantID != "A" {
					t.Errorf("tenant A got %+v", ev)
				}
			}
			if !tt.resumed && tt.last != "" && rp.Events[0].ID != h.idOf(5) {
				t.Errorf("resync event ID %q, want the hub's position %q", rp.Events[0].ID, h.idOf(5))
			}
		})
	}

	// Past the count kept: the oldest are gone, and so is the promise.
	h.Publish(Event{TenantID: "B", Keys: []string{"B3"}}) // 6: drops 1
	if _, rp := h.SubscribeAfter("A", h.idOf(0)); rp.Resumed {
		t.Errorf("resumed after an event no longer kept: %v", keysOf(rp.Events))
	}
	if _, rp := h.SubscribeAfter("A", h.idOf(1)); !rp.Resumed || !reflect.DeepEqual(keysOf(rp.Events), []string{"A2", "A3"}) {
		t.Errorf("after the floor: %v resumed %v", keysOf(rp.Events), rp.Resumed)
	}
	// Past their time: all gone.
	clock.t = clock.t.Add(DefaultRetainFor + time.Minute)
	if _, rp := h.SubscribeAfter("A", h.idOf(3)); rp.Resumed {
		t.Errorf("resumed after events past their time: %v", keysOf(rp.Events))
	}
	// The newest can still be resumed after: nothing followed it.
	if _, rp := h.SubscribeAfter("A", h.idOf(6)); !rp.Resumed || len(rp.Events) != 0 {
		t.Errorf("after the last one: %v resumed %v", keysOf(rp.Events), rp.Resumed)
	}
}

// TestSubscribeAfterNoGapNoDouble: events published while clients
// resubscribe reach each exactly once, in the replay or in C.
func TestSubscribeAfterNoGapNoDouble(t *testing.T) {
	h := NewHub(1 << 12)
	const n = 2000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			h.Publish(Event{TenantID: "A"})
		}
	}()
	seen := map[string]int{}
	last := h.idOf(0)
	for {
		sub, rp := h.SubscribeAfter("A", last)
		if !rp.Resumed {
			t.Fatalf("not resumed after %s", last)
		}
		for _, ev := range rp.Events {
			seen[ev.ID]++
			last = ev.ID
		}
		stop := false
		select {
		case <-done:
			stop = true
		default:
		}
		// read a few live ones, then drop the connection
		for i := 0; i < 3; i++ {
			select {
			case ev := <-sub.C():
				seen[ev.ID]++
				last = ev.ID
			default:
			}
		}
		sub.Close()
		if stop {
			sub, rp := h.SubscribeAfter("A", last)
			for _, ev := range rp.Events {
				seen[ev.ID]++
			}
			sub.Close()
			break
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct events seen, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("event %s seen %d times", id, c)
		}
	}
}

type chanRelay chan Event

func (r chanRelay) Relay(ev Event, done chan<- error) {
	r <- ev
	if done != nil {
		done <- nil
	}
}

func TestHubWithRelay(t *testing.T) {
	relay := make(chanRelay, 4)
	h := NewHub(8)
	h.SetRelay(relay, "pg1", 100)
	sub := h.Subscribe("A")
	defer sub.Close()
	if n := h.Publish(Event{TenantID: "A", Keys: []string{"x"}}); n != 0 {
		t.Errorf("Publish with a relay delivered to %d here", n)
	}
	ev := <-relay
	if _, ok := recv(t, sub); ok {
		t.Fatal("delivered before the relay numbered it")
	}
	if got := h.LastPublished("A"); got.IsZero() {
		t.Error("LastPublished does not count an event handed to the relay")
	}
	h.Deliver(ev, 101)
	got, ok := recv(t, sub)
	if !ok || got.ID != "pg1.101" {
		t.Fatalf("got %+v ok=%v, want ID pg1.101", got, ok)
	}
	if n := h.Deliver(ev, 101); n != 0 {
		t.Errorf("a duplicate was delivered to %d", n)
	}
	// Before the hub listened: not resumable.
	if _, rp := h.SubscribeAfter("A", "pg1.99"); rp.Resumed {
		t.Error("resumed after an event from before the relay's start")
	}
	// A client that saw 103 on another replica, this hub a moment behind.
	ahead, rp := h.SubscribeAfter("A", "pg1.103")
	defer ahead.Close()
	if !rp.Resumed || len(rp.Events) != 0 {
		t.Errorf("ahead of this hub: %v resumed %v, want resumed with nothing", keysOf(rp.Events), rp.Resumed)
	}
	if pos := ahead.Position(); pos != "pg1.103" {
		t.Errorf("position of a client ahead = %q, want pg1.103 (never back)", pos)
	}
	h.Deliver(Event{TenantID: "A", Keys: []string{"102"}}, 102)
	h.Deliver(Event{TenantID: "A", Keys: []string{"103"}}, 103)
	h.Deliver(Event{TenantID: "A", Keys: []string{"104"}}, 104)
	if got, ok := recv(t, ahead); !ok || got.ID != "pg1.104" {
		t.Errorf("the client ahead got %+v ok=%v first, want pg1.104 (102 and 103 are its already)", got, ok)
	}
	if pos := sub.Position(); pos != "" {
		t.Errorf("position while events wait = %q, want none", pos)
	}
	for range 3 {
		recv(t, sub)
	}
	if pos := sub.Position(); pos != "pg1.104" {
		t.Errorf("position = %q, want pg1.104", pos)
	}
}
