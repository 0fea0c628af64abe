package load

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/basicmachines-co/bm-agent/bench"
	"github.com/basicmachines-co/bm-agent/server/storage/minio/miniotest"
	"github.com/basicmachines-co/bm-agent/server/store/pgtest"
)

// audience is the aud of the harness's tokens (bm-server's --oidc-audience).
const audience = "bm-load"

// fleet is PostgreSQL, MinIO, the OIDC issuer and the bm-server replicas.
type fleet struct {
	bin      string // holds bm-server
	dir      string
	pg       *pgtest.Server
	minio    *miniotest.Cluster
	issuer   *issuer
	replicas []*replica
}

// replica is one bm-server process.
type replica struct {
	i    int
	addr string // host:port of its API
	cmd  *exec.Cmd
	log  string
	done chan struct{}

	mu      sync.Mutex
	peakRSS int64 // bytes, sampled
	killed  bool
}

func startFleet(ctx context.Context, cfg Config) (_ *fleet, err error) {
	f := &fleet{bin: cfg.Bin}
	defer func() {
		if err != nil {
			f.stop()
		}
	}()
	if f.dir, err = os.MkdirTemp("", "bm-load-"); err != nil {
		return nil, err
	}
	if f.pg, err = pgtest.Start(ctx); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	dsn, err := f.pg.CreateDatabase(ctx)
	if err != nil {
		return nil, err
	}
	// distributed MinIO: four one-drive nodes, erasure-coded (the
	// tested path for more than one machine); replica i talks to node i
	if f.minio, err = miniotest.NewCluster(4, 1); err != nil {
		return nil, fmt.Errorf("minio: %w", err)
	}
	if f.issuer, err = startIssuer(); err != nil {
		return nil, fmt.Errorf("oidc issuer: %w", err)
	}
	for i := range cfg.Replicas {
		r, err := f.startReplica(ctx, i, dsn)
		if err != nil {
			return nil, fmt.Errorf("replica %d: %w", i, err)
		}
		f.replicas = append(f.replicas, r)
	}
	cfg.logf("fleet up: %d replicas on one PostgreSQL and a MinIO of %d nodes", len(f.replicas), len(f.minio.Nodes))
	return f, nil
}

func (f *fleet) startReplica(ctx context.Context, i int, dsn string) (*replica, error) {
	addr, err := bench.FreeAddr()
	if err != nil {
		return nil, err
	}
	s3Addr, err := bench.FreeAddr()
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(f.dir, "replica-"+strconv.Itoa(i))
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	r := &replica{i: i, addr: addr, log: filepath.Join(f.dir, fmt.Sprintf("replica-%d.log", i)), done: make(chan struct{})}
	logf, err := os.Create(r.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	bin := filepath.Join(f.bin, "bm-server")
	r.cmd = exec.Command(bin,
		"--addr", addr, "--s3-addr", s3Addr, "--data-dir", dataDir, "--db", dsn,
		"--storage", "minio", "--storage-endpoint", f.minio.Nodes[i%len(f.minio.Nodes)].URL, "--storage-path-style",
		"--auth-mode", "oidc", "--oidc-issuer", f.issuer.url, "--oidc-audience", audience, "--oidc-auto-provision",
		// every simulated device comes from 127.0.0.1: a real fleet's
		// devices come from as many addresses
		"--max-conns-per-client", "100000")
	r.cmd.Env = append(os.Environ(),
		"BM_SERVER_STORAGE_ACCESS_KEY="+miniotest.RootUser, "BM_SERVER_STORAGE_SECRET_KEY="+miniotest.RootPassword)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start bm-server: %w", err)
	}
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	go r.sampleMemory()
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		select {
		case <-r.done:
			b, _ := os.ReadFile(r.log)
			return nil, fmt.Errorf("bm-server exited: %s", lastBytes(b, 2000))
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("bm-server not ready within 30 s (log %s)", r.log)
		}
	}
}

func lastBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// sampleMemory records the replica's peak resident memory until it exits.
func (r *replica) sampleMemory() {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
		}
		rss, peak, err := bench.ProcMem(r.cmd.Process.Pid)
		if err != nil {
			continue
		}
		r.mu.Lock()
		r.peakRSS = max(r.peakRSS, rss, peak)
		r.mu.Unlock()
	}
}

func (r *replica) peak() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peakRSS
}

// kill ends the replica at once, as a crash or a lost machine would.
func (r *replica) kill() {
	r.mu.Lock()
	r.killed = true
	r.mu.Unlock()
	_ = r.cmd.Process.Kill()
	<-r.done
}

func (f *fleet) stop() {
	for _, r := range f.replicas {
		select {
		case <-r.done:
		default:
			_ = r.cmd.Process.Signal(os.Interrupt)
			select {
			case <-r.done:
			case <-time.After(15 * time.Second):
				_ = r.cmd.Process.Kill()
				<-r.done
			}
		}
	}
	if f.issuer != nil {
		f.issuer.close()
	}
	if f.minio != nil {
		f.minio.Stop()
	}
	if f.pg != nil {
		f.pg.Stop()
	}
	if f.dir != "" {
		os.RemoveAll(f.dir)
	}
}

// issuer is an OIDC issuer on loopback: discovery, a JWKS of one RSA key,
// and tokens for any tenant.
type issuer struct {
	url string
	key *rsa.PrivateKey
	srv *http.Server
}

func startIssuer() (*issuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	is := &issuer{url: "http://" + ln.Addr().String(), key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": is.url, "authorization_endpoint": is.url + "/authorize", "token_endpoint": is.url + "/token",
			"jwks_uri": is.url + "/jwks", "id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "load", Algorithm: "RS256", Use: "sig"}}})
	})
	is.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := is.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "load: oidc issuer:", err)
		}
	}()
	return is, nil
}

// token is an access token of tenant's user for ttl.
func (is *issuer) token(tenant, user string, ttl time.Duration) (string, error) {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: is.key, KeyID: "load"}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		return "", err
	}
	now := time.Now()
	return jwt.Signed(s).Claims(jwt.Claims{
		Issuer: is.url, Subject: user, Audience: jwt.Audience{audience},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(ttl)),
	}).Claims(map[string]any{
		"tenant_id": tenant, "email": user + "@load.example",
		"subscription_status": "active", "subscription_tier": "pro",
	}).Serialize()
}

func (is *issuer) close() { _ = is.srv.Close() }
