package cloudapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestEventsReadsAndReconnects(t *testing.T) {
	eventsMinBackoff, eventsMaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	defer func() { eventsMinBackoff, eventsMaxBackoff = time.Second, time.Minute }()
	var conns atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != PathTenantEvents || r.Header.Get("Authorization") != "Bearer test-access" {
			http.Error(w, `{"detail":"no"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		switch conns.Add(1) {
		case 1:
			fmt.Fprint(w, ": connected\nretry: 10\n\n")
			fmt.Fprint(w, "event: bucket-changed\ndata: {\"tenant_id\":\"t1\",\"device\":\"laptop\",\n")
			fmt.Fprint(w, "data: \"reason\":\"sync\"}\n\n")
			fmt.Fprint(w, "event: other\ndata: {}\n\n")
			fmt.Fprint(w, "event: bucket-changed\r\ndata: not json\r\n\r\n")
			// then the connection ends
		case 2:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		default:
			fmt.Fprint(w, "event: bucket-changed\ndata: {\"tenant_id\":\"t1\",\"device\":\"phone\"}\n\n")
		}
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []string
	events := 0
	stop := errors.New("stop")
	err := c.FollowEvents(ctx, func(ev ChangeEvent) error {
		events++
		switch {
		case ev.Reconnected:
			got = append(got, "reconnected")
		default:
			got = append(got, ev.TenantID+"/"+ev.Device+"/"+ev.Reason)
		}
		if events == 3 {
			return stop
		}
		return nil
	}, func(live bool) { got = append(got, fmt.Sprintf("live=%v", live)) })
	if !errors.Is(err, stop) {
		t.Fatalf("Events = %v, want fn's error", err)
	}
	// live while a stream is open: not for the 503 in between
	if want := "live=true,t1/laptop/sync,live=false,live=true,reconnected,t1/phone/,live=false"; strings.Join(got, ",") != want {
		t.Errorf("events = %v, want %s", got, want)
	}
	if conns.Load() != 3 {
		t.Errorf("connections = %d, want 3 (one failed with 503)", conns.Load())
	}
}

// TestEventsReconnectAsked: a server that ends the stream with
// `event: reconnect` (as bm-server does at shutdown) is reconnected to
// after the retry: time it gives, though the backoff would wait a minute
// and the old connection stays open; the reconnect event is no change.
func TestEventsReconnectAsked(t *testing.T) {
	eventsMinBackoff, eventsMaxBackoff = time.Minute, time.Hour // any backoff outlasts the test
	defer func() { eventsMinBackoff, eventsMaxBackoff = time.Second, time.Minute }()
	var conns atomic.Int32
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		switch conns.Add(1) {
		case 1:
			fmt.Fprint(w, ": connected\nretry: 5000\n\n")
			fmt.Fprint(w, "event: bucket-changed\ndata: {\"tenant_id\":\"t1\",\"device\":\"laptop\"}\n\n")
			fmt.Fprint(w, "retry: 20\nevent: reconnect\ndata: {\"reason\":\"shutdown\"}\n\n")
			w.(http.Flusher).Flush()
			// The connection stays open: the client must go on the event.
			select {
			case <-r.Context().Done():
			case <-release:
			}
		default:
			fmt.Fprint(w, ": connected\nretry: 5000\n\n")
			fmt.Fprint(w, "event: bucket-changed\ndata: {\"tenant_id\":\"t1\",\"device\":\"phone\"}\n\n")
		}
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []string
	stop := errors.New("stop")
	err := c.FollowEvents(ctx, func(ev ChangeEvent) error {
		switch {
		case ev.Reconnected:
			got = append(got, "reconnected")
		default:
			got = append(got, ev.TenantID+"/"+ev.Device)
		}
		if len(got) == 3 {
			return stop
		}
		return nil
	}, nil)
	if !errors.Is(err, stop) {
		t.Fatalf("FollowEvents = %v (events %v), want fn's error: no prompt reconnection", err, got)
	}
	if want := "t1/laptop,reconnected,t1/phone"; strings.Join(got, ",") != want {
		t.Errorf("events = %v, want %s", got, want)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("connections = %d, want 2", n)
	}
}

func TestEventsStopsOnUnauthorized(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"detail":"token expired"}`)
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.Events(ctx, func(ChangeEvent) error { return nil })
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Errorf("Events = %v, want a 401 APIError", err)
	}
	if ctx.Err() != nil {
		t.Error("Events retried a 401 until the context ended")
	}
}

// TestEventsResume: a reconnection names the last event handled (an
// event's id, or a heartbeat's when it came later, never the id of an
// event fn did not finish); a server that resumes the stream replays
// instead of the synthetic Reconnected, one that cannot (or does not
// say it did) gets it.
func TestEventsResume(t *testing.T) {
	eventsMinBackoff, eventsMaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	defer func() { eventsMinBackoff, eventsMaxBackoff = time.Second, time.Minute }()
	var conns atomic.Int32
	lastIDs := make(chan string, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := conns.Add(1)
		lastIDs <- r.Header.Get("Last-Event-ID")
		if n == 2 {
			w.Header().Set(ResumedHeader, "1")
		}
		w.Header().Set("Content-Type", "text/event-stream")
		switch n {
		case 1:
			fmt.Fprint(w, ": connected\n\n")
			fmt.Fprint(w, "id: e.1\nevent: bucket-changed\ndata: {\"tenant_id\":\"t\",\"keys\":[\"a.md\"]}\n\n")
			fmt.Fprint(w, ": heartbeat\nid: e.7\n\n")
			fmt.Fprint(w, "id: e.8\nevent: bucket-changed\ndata: {\"tenant_id\":\"t\",\"keys\":[\"cut\"") // cut mid-event
		case 2:
			fmt.Fprint(w, "id: e.9\nevent: bucket-changed\ndata: {\"tenant_id\":\"t\",\"keys\":[\"b.md\"]}\n\n")
		default:
			fmt.Fprint(w, "id: e.20\nevent: bucket-changed\ndata: {\"tenant_id\":\"t\",\"reason\":\"resync\"}\n\n")
		}
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []string
	stop := errors.New("stop")
	err := c.FollowEvents(ctx, func(ev ChangeEvent) error {
		switch {
		case ev.Reconnected:
			got = append(got, "reconnected")
		case ev.Reason == ReasonResync:
			got = append(got, ev.ID+":resync")
			return stop
		default:
			got = append(got, ev.ID+":"+strings.Join(ev.Keys, ","))
		}
		return nil
	}, nil)
	if !errors.Is(err, stop) {
		t.Fatalf("FollowEvents = %v", err)
	}
	if want := "e.1:a.md,e.9:b.md,reconnected,e.20:resync"; strings.Join(got, ",") != want {
		t.Errorf("events = %v, want %s", got, want)
	}
	var sent []string
	for range 3 {
		sent = append(sent, <-lastIDs)
	}
	if want := []string{"", "e.7", "e.9"}; strings.Join(sent, ",") != strings.Join(want, ",") {
		t.Errorf("Last-Event-ID sent %q, want %q", sent, want)
	}
}
