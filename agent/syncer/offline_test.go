package syncer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/server/s3embed"
	"github.com/basicmachines-co/bm-agent/server/s3embed/s3test"
)

// A bucket that cannot be reached is reported as offline in seconds, not
// after rclone's minutes of retries: a refused connection, an endpoint
// that accepts and never answers, and one that dies in the middle of a
// pass.
func TestOfflineIsToldInSeconds(t *testing.T) {
	c := clouds()["embedded"](t)
	p := newGuardPair(t, c, "laptop", nil)
	seed(t, p, 12)
	p.pass(t, PassOptions{})
	p.write(t, "x.md", "x")

	elsewhere := func(endpoint string) *Engine {
		cfg := p.engine.cfg
		cfg.Remote.Endpoint = endpoint
		e, err := New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	timed := func(what string, e *Engine, limit time.Duration) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start := time.Now()
		_, err := e.Pass(ctx, PassOptions{})
		took := time.Since(start)
		t.Logf("%s: offline after %v: %v", what, took.Round(time.Millisecond), err)
		if !errors.Is(err, ErrOffline) || errors.Is(err, context.Canceled) {
			t.Errorf("%s: %v, want ErrOffline (and not a cancellation)", what, err)
		}
		if took > limit {
			t.Errorf("%s: told after %v, want within %v", what, took, limit)
		}
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + l.Addr().String()
	l.Close()
	timed("connection refused", elsewhere(refused), 2*time.Second)

	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer bl.Close()
	go func() {
		for {
			conn, err := bl.Accept()
			if err != nil {
				return
			}
			defer conn.Close() // accept, never answer
		}
	}()
	timed("no answer", elsewhere("http://"+bl.Addr().String()), probeTimeout+2*time.Second)

	// In the middle of a pass: a big upload, then the endpoint goes away.
	root := t.TempDir()
	srv, err := s3embed.New(root, s3test.Key{AccessKey: testKey, SecretKey: testSecret, Bucket: testBucket}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.CreateBucket(context.Background(), testBucket); err != nil {
		t.Fatal(err)
	}
	var hs *httptest.Server
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			time.Sleep(20 * time.Millisecond) // a slow link, so the pass is still running
		}
		srv.Handler().ServeHTTP(w, r)
	})
	hs = httptest.NewServer(slow)
	e := elsewhere(hs.URL)
	for i := range 400 {
		writeLocal(t, p.local, fmt.Sprintf("big/%03d.md", i), []byte(fmt.Sprintf("note %d", i)))
	}
	go func() {
		time.Sleep(1500 * time.Millisecond)
		hs.CloseClientConnections()
		hs.Listener.Close()
		hs.CloseClientConnections()
	}()
	timed("died during the pass", e, 1500*time.Millisecond+probeEvery+probeTimeout+3*time.Second)
	hs.Close()
}
