package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/server/events"
	"github.com/basicmachines-co/bm-agent/server/ops"
	"github.com/basicmachines-co/bm-agent/server/storage/minio/miniotest"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// sseBlock is one block of an event stream, its fields as sent.
type sseBlock struct {
	fields map[string]string // event, data, retry, id (the last of each)
	raw    string
}

// rawStream reads GET /tenant/events as blocks, until the stream ends.
type rawStream struct {
	blocks chan sseBlock
	ended  chan struct{}
}

// openStream opens GET /tenant/events at r with token.
func openStream(t *testing.T, r *running, token string) *rawStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL()+tenantapi.PathTenantEvents, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /tenant/events: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GET /tenant/events = %d %s", resp.StatusCode, b)
	}
	rs := &rawStream{blocks: make(chan sseBlock, 64), ended: make(chan struct{})}
	go func() {
		defer close(rs.ended)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		b := sseBlock{fields: map[string]string{}}
		for sc.Scan() {
			line := sc.Text()
			if line == "" {
				rs.blocks <- b
				b = sseBlock{fields: map[string]string{}}
				continue
			}
			b.raw += line + "\n"
			if field, value, ok := strings.Cut(line, ":"); ok && field != "" {
				b.fields[field] = strings.TrimPrefix(value, " ")
			}
		}
	}()
	return rs
}

// nextEvent waits for the stream's next block with an event field.
func (rs *rawStream) nextEvent(t *testing.T, within time.Duration) sseBlock {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case b := <-rs.blocks:
			if b.fields["event"] != "" {
				return b
			}
		case <-rs.ended:
			t.Fatal("event stream ended")
		case <-deadline:
			t.Fatalf("no event within %s", within)
		}
	}
}

// readyz is GET /readyz at r: its status and report, or an error when
// nothing answers.
func readyz(url string) (int, ops.ReadyReport, error) {
	resp, err := http.Get(url + "/readyz")
	if err != nil {
		return 0, ops.ReadyReport{}, err
	}
	defer resp.Body.Close()
	var rep ops.ReadyReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return resp.StatusCode, rep, err
	}
	return resp.StatusCode, rep, nil
}

// TestShutdownDrains: once Serve's context ends, /readyz answers 503 at
// once while every other request is still served (without keep-alive)
// and the event streams still flow, for the drain delay; then the
// streams get `event: reconnect` after a short retry:, and the listener
// closes.
func TestShutdownDrains(t *testing.T) {
	r := serve(t, func(c *Config) { c.DrainDelay = time.Hour })
	// The drain ends when the test says (written before the cancel that
	// makes Serve read it).
	release := make(chan time.Time)
	var asked atomic.Int64
	r.drainAfter = func(d time.Duration) <-chan time.Time { asked.Store(int64(d)); return release }

	token := login(t, r.Server, demoEmail, demoPassword)
	acc, err := r.Store().AccountByEmail(context.Background(), demoEmail)
	if err != nil {
		t.Fatal(err)
	}
	stream := openStream(t, r, token)
	waitFor(t, 10*time.Second, "subscribed", func() bool { return r.Events().Subscribers(acc.TenantID) == 1 })
	if code, rep, err := readyz(r.URL()); code != http.StatusOK || err != nil {
		t.Fatalf("readyz before the shutdown = %d %+v %v", code, rep, err)
	}

	r.cancel()
	waitFor(t, 10*time.Second, "/readyz answers 503 once the shutdown began", func() bool {
		code, _, _ := readyz(r.URL())
		return code == http.StatusServiceUnavailable
	})
	code, rep, err := readyz(r.URL())
	if code != http.StatusServiceUnavailable || err != nil || rep.Status != "unavailable" || !strings.HasPrefix(rep.Checks[ops.CheckShutdown], "draining") {
		t.Errorf("readyz while draining = %d %+v %v", code, rep, err)
	}
	// Still serving, with no keep-alive.
	resp, body := get(t, r.URL()+tenantapi.PathMountInfo, token, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, acc.TenantID) {
		t.Errorf("GET /tenant/mount/info while draining = %d %s", resp.StatusCode, body)
	}
	if !resp.Close {
		t.Error("an answer while draining keeps its connection alive")
	}
	if code, body := do(t, http.MethodPost, r.URL()+tenantapi.PathSync, token, `{"device":"phone"}`, nil); code != http.StatusAccepted {
		t.Errorf("POST /sync while draining = %d %s", code, body)
	}
	if ev := stream.nextEvent(t, 10*time.Second); ev.fields["event"] != events.KindBucketChanged || !strings.Contains(ev.fields["data"], `"device":"phone"`) {
		t.Errorf("stream while draining got %q, want the bucket change", ev.raw)
	}
	select {
	case <-r.done:
		t.Fatal("Serve returned before the drain delay passed")
	default:
	}
	if got := time.Duration(asked.Load()); got != time.Hour {
		t.Errorf("drained for %v, want the configured hour", got)
	}

	close(release) // the drain delay is over
	ev := stream.nextEvent(t, 10*time.Second)
	if ev.fields["event"] != events.KindReconnect || ev.fields["retry"] != "1000" || ev.fields["data"] != `{"reason":"shutdown"}` {
		t.Errorf("last block = %q, want a reconnect with retry: 1000", ev.raw)
	}
	select {
	case <-stream.ended:
	case <-time.After(10 * time.Second):
		t.Error("the stream stayed open after the reconnect event")
	}
	select {
	case <-r.done:
		if r.err != nil {
			t.Errorf("Serve = %v", r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after the drain")
	}
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(r.URL(), "http://"), 2*time.Second); err == nil {
		c.Close()
		t.Error("the API listener still accepts after Serve returned")
	}
}

// TestDrainDelayElapses: with a real drain delay, Serve returns no sooner
// than that after its context ends.
func TestDrainDelayElapses(t *testing.T) {
	const delay = 500 * time.Millisecond
	r := serve(t, func(c *Config) { c.DrainDelay = delay })
	start := time.Now()
	r.cancel()
	<-r.done
	if took := time.Since(start); took < delay {
		t.Errorf("Serve returned %v after the cancel, before the %v drain delay", took, delay)
	}
}

// tcpRelay forwards a loopback address to target and can be cut (the
// listener and every relayed connection closed, as if the target went
// away) and restored on the same address.
type tcpRelay struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]bool
}

func newRelay(t *testing.T, target string) *tcpRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl := &tcpRelay{addr: ln.Addr().String(), target: target, conns: map[net.Conn]bool{}}
	rl.serve(ln)
	t.Cleanup(rl.cut)
	return rl
}

func (rl *tcpRelay) serve(ln net.Listener) {
	rl.mu.Lock()
	rl.ln = ln
	rl.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", rl.target)
			if err != nil {
				c.Close()
				continue
			}
			rl.mu.Lock()
			rl.conns[c], rl.conns[up] = true, true
			rl.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				dst.Close()
				src.Close()
			}
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
}

// cut closes the listener and every relayed connection.
func (rl *tcpRelay) cut() {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.ln != nil {
		rl.ln.Close()
		rl.ln = nil
	}
	for c := range rl.conns {
		c.Close()
	}
	clear(rl.conns)
}

// restore listens on the relay's address again.
func (rl *tcpRelay) restore(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	waitFor(t, 10*time.Second, "relay listens again", func() bool {
		ln, err = net.Listen("tcp", rl.addr)
		return err == nil
	})
	rl.serve(ln)
}

// TestReadyzFollowsDependencies: /readyz is 503 while the replica cannot
// reach PostgreSQL (its connections cut, new ones refused) or MinIO (the
// server killed), naming the failing check, and 200 again once they are
// back.
func TestReadyzFollowsDependencies(t *testing.T) {
	dsn := pg.Get(t).NewDatabase(t)
	mio := miniotest.Start(t)
	// The store reaches PostgreSQL through a relay the test can cut.
	host := strings.TrimPrefix(dsn, "postgres://postgres@")
	host = host[:strings.IndexByte(host, '/')]
	relay := newRelay(t, host)
	r := serve(t, func(c *Config) {
		c.DB = strings.Replace(dsn, host, relay.addr, 1)
		useMinIO(c, mio.URL)
	})
	want := func(what string, code int, failing string) {
		t.Helper()
		waitFor(t, 30*time.Second, what, func() bool {
			got, rep, err := readyz(r.URL())
			if err != nil || got != code {
				return false
			}
			for name, res := range rep.Checks {
				if (res == "ok") == (name == failing) {
					return false
				}
			}
			return len(rep.Checks) == 2
		})
		_, rep, _ := readyz(r.URL())
		t.Logf("%s: %+v", what, rep)
	}
	want("ready with both", http.StatusOK, "")

	relay.cut()
	want("PostgreSQL unreachable: 503", http.StatusServiceUnavailable, "store")
	relay.restore(t)
	want("PostgreSQL back: ready", http.StatusOK, "")

	mio.Kill()
	want("MinIO down: 503", http.StatusServiceUnavailable, "storage")
	if err := mio.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	want("MinIO back: ready", http.StatusOK, "")
}
