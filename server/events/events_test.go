package events

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

func recv(t *testing.T, s *Subscription) (Event, bool) {
	t.Helper()
	select {
	case ev := <-s.C():
		return ev, true
	case <-time.After(100 * time.Millisecond):
		return Event{}, false
	}
}

func TestHubFanOutByTenant(t *testing.T) {
	h := NewHub(4)
	a1, a2, b := h.Subscribe("A"), h.Subscribe("A"), h.Subscribe("B")
	defer a1.Close()
	defer a2.Close()
	defer b.Close()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if n := h.Publish(Event{TenantID: "A", Device: "laptop", Reason: "sync", At: at}); n != 2 {
		t.Errorf("Publish delivered to %d, want 2", n)
	}
	for i, s := range []*Subscription{a1, a2} {
		ev, ok := recv(t, s)
		if !ok || !reflect.DeepEqual(ev, Event{ID: h.idOf(1), TenantID: "A", Device: "laptop", Reason: "sync", At: at}) {
			t.Errorf("subscriber A%d got %+v ok=%v", i+1, ev, ok)
		}
	}
	if ev, ok := recv(t, b); ok {
		t.Errorf("tenant B received A's event %+v", ev)
	}
	if got := h.LastPublished("A"); !got.Equal(at) {
		t.Errorf("LastPublished(A) = %v", got)
	}
	if got := h.LastPublished("B"); !got.IsZero() {
		t.Errorf("LastPublished(B) = %v", got)
	}
}

func TestHubDropsSlowSubscriber(t *testing.T) {
	h := NewHub(2)
	slow, fast := h.Subscribe("A"), h.Subscribe("A")
	defer fast.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 10; i++ {
			h.Publish(Event{TenantID: "A", Reason: "r"})
			<-fast.C() // the fast one keeps up
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a slow subscriber")
	}
	select {
	case <-slow.Done():
	default:
		t.Fatal("slow subscriber not dropped")
	}
	select {
	case <-fast.Done():
		t.Fatal("fast subscriber dropped")
	default:
	}
	if h.Dropped() != 1 || h.Subscribers("A") != 1 {
		t.Errorf("dropped=%d subscribers=%d, want 1, 1", h.Dropped(), h.Subscribers("A"))
	}
	slow.Close() // idempotent after a drop
	fast.Close()
	fast.Close()
	if h.Subscribers("A") != 0 {
		t.Errorf("subscribers after close = %d", h.Subscribers("A"))
	}
}

func TestServeSSE(t *testing.T) {
	h := NewHub(4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = ServeSSE(w, r, h.Subscribe("A"), Replay{}, 50*time.Millisecond, nil)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	rd := bufio.NewReader(resp.Body)
	readBlock := func() string {
		var b strings.Builder
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				t.Fatalf("read: %v (so far %q)", err, b.String())
			}
			if line == "\n" {
				return b.String()
			}
			b.WriteString(line)
		}
	}
	if got := readBlock(); !strings.HasPrefix(got, ": connected") {
		t.Errorf("first block = %q", got)
	}
	if got, want := readBlock(), ": heartbeat\nid: "+h.idOf(0)+"\n"; got != want {
		t.Errorf("second block = %q, want a heartbeat at the hub's position %q", got, want)
	}
	for h.Subscribers("A") == 0 {
		time.Sleep(time.Millisecond)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h.Publish(Event{TenantID: "A", Device: "d1", Reason: "sync", At: at, Keys: []string{"a b.md"}})
	var got string
	for got = readBlock(); strings.HasPrefix(got, ": heartbeat\n"); got = readBlock() {
	}
	data, ok := strings.CutPrefix(got, "id: "+h.idOf(1)+"\nevent: bucket-changed\ndata: ")
	if !ok {
		t.Fatalf("event block = %q", got)
	}
	var ev Event
	if err := json.Unmarshal([]byte(strings.TrimSpace(data)), &ev); err != nil || !reflect.DeepEqual(ev, Event{TenantID: "A", Device: "d1", Reason: "sync", At: at, Keys: []string{"a b.md"}}) {
		t.Errorf("event = %+v err=%v", ev, err)
	}
	cancel()
	deadline := time.Now().Add(2 * time.Second)
	for h.Subscribers("A") != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := h.Subscribers("A"); n != 0 {
		t.Errorf("subscription not closed after the client left: %d", n)
	}
}
