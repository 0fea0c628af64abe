package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/server/issuer"
	"github.com/basicmachines-co/bm-agent/server/keyring"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// balancer is the load balancer in front of a test's replicas: one public
// URL (the issuer's, in every token) sent to the replica it is set to.
type balancer struct {
	url    string
	target atomic.Pointer[url.URL]
}

func newBalancer(t *testing.T) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{url: "http://" + ln.Addr().String()}
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(b.target.Load())
		r.Out.Host = r.In.Host // the replicas see the public host, as behind a real balancer
	}}
	srv := &http.Server{Handler: proxy, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return b
}

// to sends the balancer's requests to r from now on.
func (b *balancer) to(t *testing.T, r *running) {
	t.Helper()
	u, err := url.Parse("http://" + r.apiLn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b.target.Store(u)
}

func newMasterKeyText(t *testing.T) string {
	t.Helper()
	raw := make([]byte, keyring.MasterKeyLen)
	rand.Read(raw)
	return base64.StdEncoding.EncodeToString(raw)
}

// replicaConfig is the configuration of a replica behind b on the
// database dsn with master key mk ("": none), in a data dir of its own.
func replicaConfig(b *balancer, dsn, mk string) func(*Config) {
	return func(c *Config) {
		c.DB, c.MasterKey, c.PublicURL = dsn, mk, b.url
	}
}

// newRefused builds a server from a replica's configuration and returns
// New's error (a server it builds is closed).
func newRefused(t *testing.T, mod func(*Config)) error {
	t.Helper()
	cfg := Config{Addr: "127.0.0.1:0", S3Addr: "127.0.0.1:0", DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)}
	mod(&cfg)
	srv, err := New(context.Background(), cfg)
	if err == nil {
		srv.Close()
	}
	return err
}

func tokenKid(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

func jwksOf(t *testing.T, base string) []string {
	t.Helper()
	resp, body := get(t, base+issuer.PathJWKS, "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("JWKS = %d %s", resp.StatusCode, body)
	}
	var set issuer.JWKSet
	if err := json.Unmarshal([]byte(body), &set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}

func noFiles(t *testing.T, dataDir string) {
	t.Helper()
	for _, f := range []string{issuerKeyFile, oauthSecretFile} {
		if _, err := os.Stat(filepath.Join(dataDir, f)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s in a replica's data dir (%v): replicas with a master key keep no key files", f, err)
		}
	}
}

// TestFleetKeysAcrossReplicas: two replicas on one PostgreSQL, each with
// the embedded storage in a data dir of its own and no shared file, given
// one master key: a token issued by one works at the other, and so does
// its refresh token. After `keys rotate`, a token of the new key signed by
// one replica works at once at the other (which had not read the keys
// since), and a token of the old key still works at both. A replica given
// another master key, or none, or an issuer.pem of its own refuses to
// start, saying why.
func TestFleetKeysAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	dsn := pg.Get(t).NewDatabase(t)
	mk := newMasterKeyText(t)
	lb := newBalancer(t)
	r1 := serve(t, replicaConfig(lb, dsn, mk))
	r2 := serve(t, replicaConfig(lb, dsn, mk))
	noFiles(t, r1.cfg.DataDir)
	noFiles(t, r2.cfg.DataDir)

	lb.to(t, r1)
	tok := loginTokens(t, r1.Server, demoEmail, demoPassword)
	lb.to(t, r2)
	if resp, body := get(t, lb.url+tenantapi.PathMountInfo, tok.AccessToken, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("replica 2: mount info with replica 1's token = %d %s", resp.StatusCode, body)
	}
	refreshed, err := refresh(t, r2.Server, tok.RefreshToken)
	if err != nil {
		t.Fatalf("replica 2: replica 1's refresh token: %v", err)
	}
	k1 := tokenKid(t, tok.AccessToken)
	if got := jwksOf(t, "http://"+r1.apiLn.Addr().String()); len(got) != 1 || got[0] != k1 {
		t.Errorf("replica 1's JWKS = %v, want [%s]", got, k1)
	}
	if got := jwksOf(t, "http://"+r2.apiLn.Addr().String()); len(got) != 1 || got[0] != k1 {
		t.Errorf("replica 2's JWKS = %v, want [%s]", got, k1)
	}

	// keys rotate; replica 1 reads the keys (as within 30 s it would),
	// replica 2 does not.
	retired, active, err := RotateSigningKey(ctx, r1.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if retired.KID != k1 || active.KID == k1 {
		t.Fatalf("rotation: retired %s, active %s; the key was %s", retired.KID, active.KID, k1)
	}
	if err := r1.issuer.ReloadKeys(ctx); err != nil {
		t.Fatal(err)
	}
	lb.to(t, r1)
	fresh, err := refresh(t, r1.Server, refreshed.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if kid := tokenKid(t, fresh.AccessToken); kid != active.KID {
		t.Fatalf("replica 1 signs with %s after the rotation, want %s", kid, active.KID)
	}
	// Replica 2 reads the keys for the new kid on its first token.
	lb.to(t, r2)
	start := time.Now()
	first, _ := get(t, lb.url+tenantapi.PathMountInfo, fresh.AccessToken, nil)
	firstTook := time.Since(start)
	if first.StatusCode != http.StatusOK {
		t.Errorf("the new key's first token at replica 2, which had not read the keys since the rotation: mount info = %d", first.StatusCode)
	}
	start = time.Now()
	get(t, lb.url+tenantapi.PathMountInfo, fresh.AccessToken, nil)
	t.Logf("FIGURE the new key's first token at the replica that had not read the keys: HTTP %d in %s (reading the keys from PostgreSQL); the next request %s",
		first.StatusCode, firstTook.Round(time.Microsecond), time.Since(start).Round(time.Microsecond))
	for what, tok := range map[string]string{"the new key's token": fresh.AccessToken, "the old key's token": refreshed.AccessToken} {
		for _, r := range []*running{r2, r1} {
			lb.to(t, r)
			if resp, body := get(t, lb.url+tenantapi.PathMountInfo, tok, nil); resp.StatusCode != http.StatusOK {
				t.Errorf("%s at %s after the rotation: mount info = %d %s", what, r.apiLn.Addr(), resp.StatusCode, body)
			}
		}
	}
	if got := jwksOf(t, "http://"+r2.apiLn.Addr().String()); len(got) != 2 || got[0] != active.KID || got[1] != k1 {
		t.Errorf("replica 2's JWKS after the rotation = %v, want [%s %s]", got, active.KID, k1)
	}

	// Replicas that would split the fleet.
	if err := newRefused(t, replicaConfig(lb, dsn, newMasterKeyText(t))); err == nil || !errors.Is(err, keyring.ErrWrongMasterKey) ||
		!strings.Contains(err.Error(), "the master key does not match the one this database was set up with") {
		t.Errorf("a replica with another master key: %v", err)
	}
	if err := newRefused(t, replicaConfig(lb, dsn, "")); !errors.Is(err, keyring.ErrMasterKeyRequired) {
		t.Errorf("a replica without a master key: %v", err)
	}
	var ownKey string
	err = newRefused(t, func(c *Config) {
		replicaConfig(lb, dsn, mk)(c)
		ownKey = filepath.Join(c.DataDir, issuerKeyFile)
		if _, err := issuer.LoadOrCreateKey(ownKey); err != nil {
			t.Fatal(err)
		}
	})
	if !errors.Is(err, keyring.ErrFileDiffers) || !strings.Contains(err.Error(), ownKey) {
		t.Errorf("a replica with an issuer.pem of its own: %v; want ErrFileDiffers naming %s", err, ownKey)
	}
	if err := newRefused(t, func(c *Config) {
		replicaConfig(lb, dsn, "")(c)
		c.MasterKeyFile = filepath.Join(t.TempDir(), "fleet.key")
		os.WriteFile(c.MasterKeyFile, []byte(mk), 0o644)
	}); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Errorf("a master key file others may read: %v", err)
	}
	// DATA-DIR/master.key is the embedded S3 endpoint's own key.
	if err := newRefused(t, func(c *Config) {
		replicaConfig(lb, dsn, "")(c)
		c.MasterKeyFile = filepath.Join(c.DataDir, embeddedKeyFile)
	}); err == nil || !strings.Contains(err.Error(), "embedded S3") {
		t.Errorf("the embedded S3's key file as the master key file: %v", err)
	}
}

// TestFleetKeysImportFiles: a server that ran without a master key (its
// issuer.pem and oauth.secret in its data dir), restarted with one,
// imports both: the access and refresh tokens it issued before still
// work, there and at a new replica without the files.
func TestFleetKeysImportFiles(t *testing.T) {
	dsn := pg.Get(t).NewDatabase(t)
	lb := newBalancer(t)
	dataDir := t.TempDir()
	r0 := serve(t, func(c *Config) { replicaConfig(lb, dsn, "")(c); c.DataDir = dataDir })
	if !strings.Contains(r0.logs.String(), "every replica on this database must have the same two") {
		t.Error("no warning that replicas on PostgreSQL without a master key must share the files")
	}
	lb.to(t, r0)
	tok := loginTokens(t, r0.Server, demoEmail, demoPassword)
	if _, err := r0.stop(t); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{issuerKeyFile, oauthSecretFile} {
		if _, err := os.Stat(filepath.Join(dataDir, f)); err != nil {
			t.Fatalf("without a master key: %v", err)
		}
	}

	mk := newMasterKeyText(t)
	r1 := serve(t, func(c *Config) { replicaConfig(lb, dsn, mk)(c); c.DataDir = dataDir })
	r2 := serve(t, replicaConfig(lb, dsn, mk))
	noFiles(t, r2.cfg.DataDir)
	for _, r := range []*running{r1, r2} {
		lb.to(t, r)
		if resp, body := get(t, lb.url+tenantapi.PathMountInfo, tok.AccessToken, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: a token issued before the master key = %d %s", r.apiLn.Addr(), resp.StatusCode, body)
		}
	}
	if _, err := refresh(t, r2.Server, tok.RefreshToken); err != nil {
		t.Errorf("replica 2: a refresh token issued before the master key: %v", err)
	}
}

// TestFleetKeysConcurrentStart: two replicas starting at once on an empty
// PostgreSQL database agree on one signing key and one OAuth secret.
func TestFleetKeysConcurrentStart(t *testing.T) {
	dsn := pg.Get(t).NewDatabase(t)
	mk := newMasterKeyText(t)
	lb := newBalancer(t)
	srvs := make([]*Server, 2)
	errs := make([]error, 2)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range srvs {
		cfg := Config{Addr: "127.0.0.1:0", S3Addr: "127.0.0.1:0", DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)}
		replicaConfig(lb, dsn, mk)(&cfg)
		wg.Go(func() {
			<-start
			srvs[i], errs[i] = New(context.Background(), cfg)
		})
	}
	close(start)
	wg.Wait()
	for i, srv := range srvs {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		t.Cleanup(srv.Close)
	}
	if a, b := srvs[0].issuer.KeyID(), srvs[1].issuer.KeyID(); a != b {
		t.Errorf("the replicas sign with %s and %s", a, b)
	}
	keys, err := srvs[0].Store().SigningKeys(context.Background(), time.Time{})
	if err != nil || len(keys) != 1 {
		t.Errorf("%d signing keys in the database (%v), want 1", len(keys), err)
	}
	if _, err := srvs[0].Store().SealedSecret(context.Background(), keyring.OAuthSecretName); err != nil {
		t.Errorf("the OAuth secret: %v", err)
	}
}
