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
