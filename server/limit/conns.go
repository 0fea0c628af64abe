package limit

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Conns bounds the connections held at once, in all and per client
// address (ClientKey), over every listener it wraps (Listen), so that one
// budget of file descriptors serves the API and the S3 endpoint. A
// connection past a bound is refused gracefully: it is answered with the
// listener's refusal (an HTTP 503 with Retry-After), its request drained
// for a moment, and closed. It is safe for concurrent use.
type Conns struct {
	max, perClient int

	mu       sync.Mutex
	total    int
	byClient map[string]int

	refusing chan struct{} // a slot per refusal in progress
	refused  atomic.Int64
}

// RefusalLinger bounds how long a refused connection is kept: to read
// the request (an HTTP client takes an answer before its request for a
// broken connection, not for a refusal), answer it, and read what else
// the client sent (closing with unread data would reset the connection,
// and the client could lose the answer).
const RefusalLinger = time.Second

// maxRefusing bounds the refusals in progress; past it a connection is
// closed at once, without an answer.
const maxRefusing = 1024

// NewConns returns a bound of max connections in all and perClient per
// client address; a bound <= 0 is no bound.
func NewConns(max, perClient int) *Conns {
	return &Conns{max: max, perClient: perClient, byClient: map[string]int{}, refusing: make(chan struct{}, maxRefusing)}
}

// Open is the number of connections held.
func (c *Conns) Open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// Clients is the number of client addresses holding a connection.
func (c *Conns) Clients() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byClient)
}

// Refused is the number of connections refused so far.
func (c *Conns) Refused() int64 { return c.refused.Load() }

func (c *Conns) acquire(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max > 0 && c.total >= c.max {
		return false
	}
	if c.perClient > 0 && c.byClient[key] >= c.perClient {
		return false
	}
	c.total++
	c.byClient[key]++
	return true
}

func (c *Conns) release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	if n := c.byClient[key] - 1; n > 0 {
		c.byClient[key] = n
	} else {
		delete(c.byClient, key)
	}
}

// Listen wraps ln: the connections it accepts count against c, and a
// connection past c's bounds is answered with refusal (a whole HTTP
// response; see HTTPRefusal) and closed.
func (c *Conns) Listen(ln net.Listener, refusal []byte) net.Listener {
	return &listener{Listener: ln, c: c, refusal: refusal}
}

type listener struct {
	net.Listener
	c       *Conns
	refusal []byte
}

// Accept returns the next connection within the bounds, refusing the
// others meanwhile.
func (l *listener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := ClientKey(conn.RemoteAddr().String())
		if l.c.acquire(key) {
			return &countedConn{Conn: conn, release: func() { l.c.release(key) }}, nil
		}
		l.c.refused.Add(1)
		l.refuse(conn)
	}
}

// refuse answers conn with the refusal in the background (while slots
// last; otherwise it just closes it).
func (l *listener) refuse(conn net.Conn) {
	select {
	case l.c.refusing <- struct{}{}:
	default:
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // free the descriptor and the port now
		}
		_ = conn.Close()
		return
	}
	go func() {
		defer func() { <-l.c.refusing }()
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(RefusalLinger))
		if !readHeader(conn) {
			return
		}
		if _, err := conn.Write(l.refusal); err != nil {
			return
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		_ = conn.SetReadDeadline(time.Now().Add(RefusalLinger / 4))
		_, _ = io.Copy(io.Discard, io.LimitReader(conn, 64<<10))
	}()
}

// readHeader reads from conn until the end of a request header (at most
// 16 KiB); false if the client sent none before the deadline.
func readHeader(conn net.Conn) bool {
	buf := make([]byte, 16<<10)
	n := 0
	for n < len(buf) {
		m, err := conn.Read(buf[n:])
		n += m
		if bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
			return true
		}
		if err != nil {
			return false
		}
	}
	return true
}

// countedConn gives its slot back when closed (once).
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// HTTPRefusal is a whole HTTP/1.1 503 response asking to retry after
// retryAfter, with body of contentType, that closes the connection.
func HTTPRefusal(retryAfter time.Duration, contentType, body string) []byte {
	return []byte("HTTP/1.1 503 Service Unavailable\r\n" +
		"Content-Type: " + contentType + "\r\n" +
		"Retry-After: " + RetryAfter(retryAfter) + "\r\n" +
		"Connection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// Bounds of DefaultMaxConns.
const (
	fallbackMaxConns = 4096
	ceilingMaxConns  = 50_000
	// fdReserve is kept for what is not a client connection: the
	// database, bucket files being read or written, the hook's processes.
	fdReserve = 256
)

// DefaultMaxConns is a bound of connections that leaves room in the
// process's limit of open files: three quarters of it less a reserve
// (4,096 when the limit is unknown), at most 50,000.
func DefaultMaxConns() int {
	n := openFilesLimit()
	if n == 0 || n > 1<<31 {
		return fallbackMaxConns
	}
	return min(max(int(n)*3/4-fdReserve, 64), ceilingMaxConns)
}
