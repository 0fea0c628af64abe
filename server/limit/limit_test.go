package limit

import (
	"bufio"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestClientKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.7:4242", "192.0.2.7"},
		{"192.0.2.7", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:1", "192.0.2.7"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:80", "fe80::/64"},
		{"@", "@"},
	} {
		if got := ClientKey(tc.in); got != tc.want {
			t.Errorf("ClientKey(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// clock is a settable time for the limiters.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestKeyed(t *testing.T) {
	c := &clock{t: time.Unix(1e9, 0)}
	k := NewKeyed(6, 2) // one every 10 s, two at once
	k.now = c.now
	for i, tc := range []struct {
		key     string
		advance time.Duration
		ok      bool
		wait    time.Duration
	}{
		{"a", 0, true, 0},
		{"a", 0, true, 0},
		{"a", 0, false, 10 * time.Second},
		{"b", 0, true, 0}, // another key has its own bucket
		{"a", 5 * time.Second, false, 5 * time.Second},
		{"a", 5 * time.Second, true, 0},
		{"a", 0, false, 10 * time.Second},
	} {
		c.t = c.t.Add(tc.advance)
		ok, wait := k.Allow(tc.key)
		if ok != tc.ok || wait.Round(time.Millisecond) != tc.wait {
			t.Errorf("step %d (%s): Allow = %v, %s; want %v, %s", i, tc.key, ok, wait, tc.ok, tc.wait)
		}
	}
	c.t = c.t.Add(time.Hour)
	k.Allow("c") // sweeps
	if n := k.Len(); n != 1 {
		t.Errorf("after an hour %d keys tracked, want 1 (the idle ones forgotten)", n)
	}
	var none *Keyed = NewKeyed(-1, 1)
	if ok, _ := none.Allow("x"); !ok {
		t.Error("a negative rate limits")
	}
}

func TestKeyedOverflow(t *testing.T) {
	k := NewKeyed(1, 1)
	for i := range MaxKeys {
		k.m["k"+strconv.Itoa(i)] = &keyedEntry{seen: time.Now()}
	}
	k.lastSweep = time.Now()
	// A new key past MaxKeys shares the overflow bucket.
	if ok, _ := k.Allow("new-1"); !ok {
		t.Fatal("first overflow key refused")
	}
	if ok, _ := k.Allow("new-2"); ok {
		t.Error("second overflow key allowed: new keys past MaxKeys must share one bucket")
	}
	if n := k.Len(); n != MaxKeys+1 {
		t.Errorf("%d keys tracked, want %d", n, MaxKeys+1)
	}
}

func TestBackoff(t *testing.T) {
	c := &clock{t: time.Unix(1e9, 0)}
	b := NewBackoff(2, time.Second, 8*time.Second, time.Hour)
	b.now = c.now
	for i, tc := range []struct {
		op   string // fail, wait, reset
		adv  time.Duration
		want time.Duration
	}{
		{"fail", 0, 0},
		{"fail", 0, 0}, // two free
		{"fail", 0, time.Second},
		{"wait", 500 * time.Millisecond, 500 * time.Millisecond},
		{"fail", 500 * time.Millisecond, 2 * time.Second},
		{"fail", 0, 4 * time.Second},
		{"fail", 0, 8 * time.Second},
		{"fail", 0, 8 * time.Second}, // capped
		{"wait", 8 * time.Second, 0},
		{"fail", 2 * time.Hour, 0}, // forgotten after an hour
		{"reset", 0, 0},
		{"fail", 0, 0},
	} {
		c.t = c.t.Add(tc.adv)
		var got time.Duration
		switch tc.op {
		case "fail":
			got = b.Fail("acct")
		case "wait":
			got = b.Wait("acct")
		case "reset":
			b.Reset("acct")
		}
		if got != tc.want {
			t.Errorf("step %d: %s = %s, want %s", i, tc.op, got, tc.want)
		}
	}
	if w := b.Wait("other"); w != 0 {
		t.Errorf("another key waits %s", w)
	}
}

func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{0, "1"}, {time.Millisecond, "1"}, {time.Second, "1"}, {1001 * time.Millisecond, "2"}, {time.Minute, "60"}} {
		if got := RetryAfter(tc.d); got != tc.want {
			t.Errorf("RetryAfter(%s) = %s, want %s", tc.d, got, tc.want)
		}
	}
}

func TestConnsBoundsAndRefusal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := NewConns(3, 2)
	lln := c.Listen(ln, HTTPRefusal(5*time.Second, "text/plain", "full"))
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			conn, err := lln.Accept()
			if err != nil {
				return
			}
			accepted <- conn
		}
	}()
	dial := func(ip string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		conn, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	refused := func(conn net.Conn) bool {
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		line, _ := bufio.NewReader(conn).ReadString('\n')
		return strings.HasPrefix(line, "HTTP/1.1 503")
	}
	for i, tc := range []struct {
		ip      string
		refused bool
	}{
		{"127.0.0.1", false},
		{"127.0.0.1", false},
		{"127.0.0.1", true}, // past 2 for the address
		{"127.0.0.2", false},
		{"127.0.0.3", true}, // past 3 in all
	} {
		conn := dial(tc.ip)
		_, _ = conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		if got := refused(conn); got != tc.refused {
			t.Errorf("connection %d from %s: refused %v, want %v", i, tc.ip, got, tc.refused)
		}
	}
	if c.Open() != 3 || c.Refused() != 2 {
		t.Errorf("open %d, refused %d; want 3, 2", c.Open(), c.Refused())
	}
	// Closing one (twice: counted once) frees a slot.
	first := <-accepted
	first.Close()
	first.Close()
	if c.Open() != 2 || c.Clients() != 2 {
		t.Errorf("after a close: open %d, clients %d; want 2, 2", c.Open(), c.Clients())
	}
	conn := dial("127.0.0.3")
	_, _ = conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	if refused(conn) {
		t.Error("a freed slot was not given to the next client")
	}
}
