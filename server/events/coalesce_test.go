package events

import (
	"sync"
	"testing"
	"time"
)

// emitted collects a Coalescer's events.
type emitted struct {
	mu  sync.Mutex
	evs []Event
	ns  []int
	c   chan struct{}
}

func newEmitted() *emitted { return &emitted{c: make(chan struct{}, 100)} }

func (e *emitted) emit(ev Event, n int) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.ns = append(e.ns, n)
	e.mu.Unlock()
	e.c <- struct{}{}
}

func (e *emitted) got() ([]Event, []int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Event(nil), e.evs...), append([]int(nil), e.ns...)
}

func (e *emitted) wait(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-e.c:
	case <-time.After(within):
		t.Fatalf("no event within %s", within)
	}
}

func TestCoalescer(t *testing.T) {
	const delay = 200 * time.Millisecond
	out := newEmitted()
	c := NewCoalescer(delay, time.Hour, out.emit)
	defer c.Close()

	// A burst of one device's writes of tenant A (more than a delay long,
	// with short pauses), and one write of B.
	start := time.Now()
	for i := range 30 {
		c.Add(Event{TenantID: "A", Device: "laptop", Reason: "storage:PutObject", At: start.Add(time.Duration(i) * time.Millisecond)}, 1)
		time.Sleep(5 * time.Millisecond)
	}
	last := time.Now()
	c.Add(Event{TenantID: "B", Reason: "storage:DeleteObject"}, 2)
	out.wait(t, 5*time.Second)
	out.wait(t, 5*time.Second)
	if since := time.Since(last); since < delay {
		t.Errorf("events %s after the last change, before the delay of %s", since, delay)
	}
	evs, ns := out.got()
	byTenant := map[string]int{}
	for i, ev := range evs {
		byTenant[ev.TenantID] = i
	}
	if len(evs) != 2 || len(byTenant) != 2 {
		t.Fatalf("events = %+v, want one of A (the whole burst) and one of B", evs)
	}
	a, b := byTenant["A"], byTenant["B"]
	if ev := evs[a]; ev.Device != "laptop" || ev.Reason != "storage:PutObject" || !ev.At.Equal(start.Add(29*time.Millisecond)) || ns[a] != 30 {
		t.Errorf("A's event = %+v (%d changes), want laptop's 30 with the last one's time", ev, ns[a])
	}
	if ev := evs[b]; ev.Device != "" || ev.At.IsZero() || ns[b] != 2 {
		t.Errorf("B's event = %+v (%d changes)", ev, ns[b])
	}

	// Writes of two devices in one window: no device, so both look.
	c.Add(Event{TenantID: "A", Device: "laptop"}, 1)
	c.Add(Event{TenantID: "A", Device: "phone"}, 1)
	c.Add(Event{TenantID: "A", Device: "laptop"}, 1)
	out.wait(t, 5*time.Second)
	evs, ns = out.got()
	if ev := evs[len(evs)-1]; ev.Device != "" || ns[len(ns)-1] != 3 {
		t.Errorf("mixed window = %+v (%d changes), want no device, 3 changes", ev, ns[len(ns)-1])
	}
	// A known device after an unknown writer: still none.
	c.Add(Event{TenantID: "A"}, 1)
	c.Add(Event{TenantID: "A", Device: "laptop"}, 1)
	out.wait(t, 5*time.Second)
	if evs, _ = out.got(); evs[len(evs)-1].Device != "" {
		t.Errorf("unknown then laptop = %+v, want no device", evs[len(evs)-1])
	}
}

// TestCoalescerMaxWait: a stream of changes that never pauses for the
// delay is announced once per maximum wait, not held back until it ends.
func TestCoalescerMaxWait(t *testing.T) {
	const delay, maxWait = 30 * time.Millisecond, 100 * time.Millisecond
	out := newEmitted()
	c := NewCoalescer(delay, maxWait, out.emit)
	start := time.Now()
	total := 0
	for time.Since(start) < 6*maxWait {
		c.Add(Event{TenantID: "A"}, 1)
		total++
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	c.Close()
	evs, ns := out.got()
	sum := 0
	for _, n := range ns {
		sum += n
	}
	if sum != total {
		t.Errorf("events count %d changes, want %d", sum, total)
	}
	// Each window lasts at least the delay and at most the maximum wait
	// (plus a timer's lateness): windows closed while the stream went on,
	// and no more than elapsed/delay+1 of them (the last flushed by Close).
	if most := int(elapsed/delay) + 1; len(evs) < 2 || len(evs) > most {
		t.Errorf("%d events for a %s stream (delay %s, max wait %s), want 2 to %d", len(evs), elapsed, delay, maxWait, most)
	}
}

// TestCoalescerClose: Close emits what is pending at once and ignores
// later changes.
func TestCoalescerClose(t *testing.T) {
	out := newEmitted()
	c := NewCoalescer(time.Hour, time.Hour, out.emit)
	c.Add(Event{TenantID: "A", Reason: "r"}, 3)
	if c.Pending() != 1 {
		t.Errorf("pending = %d", c.Pending())
	}
	c.Close()
	if evs, ns := out.got(); len(evs) != 1 || evs[0].TenantID != "A" || ns[0] != 3 {
		t.Errorf("after Close: %+v %v", evs, ns)
	}
	c.Add(Event{TenantID: "A"}, 1)
	c.Close()
	if evs, _ := out.got(); len(evs) != 1 || c.Pending() != 0 {
		t.Errorf("a change after Close was kept or emitted: %+v", evs)
	}
}

// TestHubExpect: an expected event counts for LastPublished before it is
// published, and a later publish of an earlier change does not move it back.
func TestHubExpect(t *testing.T) {
	h := NewHub(0)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h.Expect("A", t0.Add(time.Second))
	if got := h.LastPublished("A"); !got.Equal(t0.Add(time.Second)) {
		t.Errorf("LastPublished after Expect = %s", got)
	}
	h.Publish(Event{TenantID: "A", At: t0})
	if got := h.LastPublished("A"); !got.Equal(t0.Add(time.Second)) {
		t.Errorf("LastPublished went back to %s", got)
	}
	h.Publish(Event{TenantID: "A", At: t0.Add(2 * time.Second)})
	if got := h.LastPublished("A"); !got.Equal(t0.Add(2 * time.Second)) {
		t.Errorf("LastPublished = %s after a later event", got)
	}
}

func TestCoalescerKeys(t *testing.T) {
	many := make([]string, MaxKeys+1)
	for i := range many {
		many[i] = "n" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ".md"
	}
	tests := []struct {
		name    string
		changes [][]string // each change's keys
		want    []string   // nil: the event names none
	}{
		{"one key", [][]string{{"a.md"}}, []string{"a.md"}},
		{"several changes, repeats once", [][]string{{"a.md"}, {"b/c.md"}, {"a.md"}}, []string{"a.md", "b/c.md"}},
		{"a change naming none", [][]string{{"a.md"}, nil, {"b.md"}}, nil},
		{"the first naming none", [][]string{nil, {"b.md"}}, nil},
		{"an empty key", [][]string{{"a.md"}, {""}}, nil},
		{"too many in one change", [][]string{many}, nil},
		{"too many in all", [][]string{many[:MaxKeys], {"a.md"}, {many[MaxKeys]}}, nil},
		{"exactly the most", [][]string{many[:MaxKeys/2], many[MaxKeys/2 : MaxKeys]}, many[:MaxKeys]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := newEmitted()
			c := NewCoalescer(time.Hour, time.Hour, out.emit)
			for _, keys := range tc.changes {
				c.Add(Event{TenantID: "A", Keys: keys}, 1)
			}
			c.Close()
			evs, ns := out.got()
			if len(evs) != 1 || ns[0] != len(tc.changes) {
				t.Fatalf("got %d events (changes %v), want 1 of %d", len(evs), ns, len(tc.changes))
			}
			got := evs[0].Keys
			if (got == nil) != (tc.want == nil) || len(got) != len(tc.want) {
				t.Fatalf("keys %q, want %q", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("keys %q, want %q", got, tc.want)
				}
			}
		})
	}
}
