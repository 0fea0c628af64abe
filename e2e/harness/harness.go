// Package harness runs bm-server and bm-agent as processes, the way a
// person does, and drives them through their real interfaces: the ipc
// socket, the OAuth pages (with a scripted browser) and the S3 endpoint.
// The demo (cmd/bm-demo, `make demo`) and the end-to-end suite (package
// e2e) both use it.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/oauth2"

	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/server/issuer/issuertest"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// Harness runs bm-server and bm-agent as processes, the way a person does,
// and drives them through their real interfaces: the ipc socket, the OAuth
// pages and the S3 endpoint.
type Harness struct {
	Bin    string // where bm-agent and bm-server are
	Dir    string // everything the run writes
	Stdout io.Writer

	ServerURL, S3URL string
	// AgentArgs are added to every `bm-agent run` (e.g. --debug, --interval).
	AgentArgs []string
	// ServerArgs and ServerEnv are added to bm-server's command line and
	// environment (another storage provider, say).
	ServerArgs, ServerEnv []string
	// PrepareAgent, if set, is called with each agent's command and home
	// before it starts (to run it as another user, say).
	PrepareAgent func(cmd *exec.Cmd, a *Agent) error
	server       *exec.Cmd
	agents       []*exec.Cmd
	// the server's account and arguments, for RestartServer
	email, password string
}

// Agent is one running bm-agent daemon.
type Agent struct {
	Home, Folder, Socket string
	Env                  []string
	IPC                  *ipc.Client
	cmd                  *exec.Cmd
}

// Process is the agent's OS process (to signal it).
func (a *Agent) Process() *os.Process { return a.cmd.Process }

// Wait waits for the agent's process to exit.
func (a *Agent) Wait() error { return a.cmd.Wait() }

// RandomPassword is a fresh random password (24 hex digits).
func RandomPassword() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (h *Harness) logFile(name string) (*os.File, error) {
	return os.OpenFile(filepath.Join(h.Dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
}

// AddUser creates an account with `bm-server user add` before the server starts.
func (h *Harness) AddUser(ctx context.Context, email, password string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(h.Bin, "bm-server"), "user", "add", email, "--data-dir", filepath.Join(h.Dir, "server"))
	cmd.Env = append(os.Environ(), "BM_SERVER_PASSWORD="+password)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("bm-server user add: %w: %s", err, out)
	}
	return nil
}

// serverLog opens the server's log for appending, and says where this
// start's lines begin.
func (h *Harness) serverLog() (*os.File, int64, error) {
	logf, err := h.logFile("bm-server.log")
	if err != nil {
		return nil, 0, err
	}
	offset, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		logf.Close()
		return nil, 0, err
	}
	return logf, offset, nil
}

// StartServer starts bm-server on loopback with its embedded defaults and a
// demo account, and waits until it answers.
func (h *Harness) StartServer(ctx context.Context, email, password string) error {
	logf, offset, err := h.serverLog()
	if err != nil {
		return err
	}
	// Port 0: the server binds free ports itself and logs them, so no
	// other process can take a port between our choosing and its binding.
	return h.startServer(ctx, logf, offset, email, password, "127.0.0.1:0", "127.0.0.1:0")
}

// StopServer stops the server with SIGTERM, as an outage would (the
// agents stay up).
func (h *Harness) StopServer() error {
	if h.server == nil || h.server.Process == nil {
		return errors.New("no server running")
	}
	_ = h.server.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- h.server.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = h.server.Process.Kill()
		<-done
	}
	h.server = nil
	return nil
}

// RestartServer starts the stopped server again on the addresses it had,
// with its data, so the agents find it where they left it.
func (h *Harness) RestartServer(ctx context.Context) error {
	logf, offset, err := h.serverLog()
	if err != nil {
		return err
	}
	api, err1 := url.Parse(h.ServerURL)
	s3u, err2 := url.Parse(h.S3URL)
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	return h.startServer(ctx, logf, offset, h.email, h.password, api.Host, s3u.Host)
}

func (h *Harness) startServer(ctx context.Context, logf *os.File, offset int64, email, password, addr, s3Addr string) error {
	h.email, h.password = email, password
	// No load balancer to drain for: SIGTERM stops the server at once.
	cmd := exec.Command(filepath.Join(h.Bin, "bm-server"), append([]string{
		"--addr", addr, "--s3-addr", s3Addr, "--data-dir", filepath.Join(h.Dir, "server"), "--demo-email", email,
		"--drain-delay", "0"}, h.ServerArgs...)...)
	cmd.Env = append(append(os.Environ(), "BM_SERVER_DEMO_PASSWORD="+password), h.ServerEnv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start bm-server: %w", err)
	}
	h.server = cmd
	var err error
	if h.ServerURL, h.S3URL, err = listeningURLs(ctx, logf.Name(), offset, 20*time.Second); err != nil {
		return err
	}
	return waitHTTP(ctx, h.ServerURL+"/healthz", 20*time.Second)
}

var listeningLine = regexp.MustCompile(`msg="bm-server listening" api=(\S+) s3=(\S+)`)

// listeningURLs waits for bm-server's "listening" log line (after offset
// in its log file) and returns the API and S3 URLs it names.
func listeningURLs(ctx context.Context, logPath string, offset int64, d time.Duration) (api, s3URL string, err error) {
	deadline := time.Now().Add(d)
	for {
		b, err := os.ReadFile(logPath)
		if err == nil && int64(len(b)) > offset {
			if m := listeningLine.FindSubmatch(b[offset:]); m != nil {
				return string(m[1]), string(m[2]), nil
			}
		}
		if time.Now().After(deadline) {
			return "", "", fmt.Errorf("bm-server did not say where it listens within %s (see %s)", d, logPath)
		}
		select {
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func waitHTTP(ctx context.Context, u string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer within %s (last error: %v)", u, d, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// StartAgent starts `bm-agent run` with its own home and notes folder and
// waits for its socket to answer.
func (h *Harness) StartAgent(ctx context.Context, name string, extraEnv ...string) (*Agent, error) {
	a := &Agent{
		Home:   filepath.Join(h.Dir, name),
		Folder: filepath.Join(h.Dir, name+"-notes"),
	}
	a.Socket = filepath.Join(a.Home, "bm-agent.sock")
	if err := os.MkdirAll(a.Home, 0o700); err != nil {
		return nil, err
	}
	logf, err := h.logFile(name + ".log")
	if err != nil {
		return nil, err
	}
	a.Env = append(os.Environ(),
		"BM_AGENT_HOME="+a.Home,
		"BASIC_MEMORY_CLOUD_HOST="+h.ServerURL,
		"BASIC_MEMORY_CLOUD_DOMAIN="+h.ServerURL,
	)
	a.Env = append(a.Env, extraEnv...)
	cmd := exec.Command(filepath.Join(h.Bin, "bm-agent"), append([]string{"run", "--folder", a.Folder, "--socket", a.Socket}, h.AgentArgs...)...)
	cmd.Env = a.Env
	cmd.Stdout, cmd.Stderr = logf, logf
	if h.PrepareAgent != nil {
		if err := h.PrepareAgent(cmd, a); err != nil {
			return nil, fmt.Errorf("start bm-agent: %w", err)
		}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start bm-agent: %w", err)
	}
	a.cmd = cmd
	h.agents = append(h.agents, cmd)
	a.IPC = ipc.NewClient(a.Socket)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := a.IPC.Status(ctx); err == nil {
			return a, nil
		} else if time.Now().After(deadline) {
			return nil, fmt.Errorf("bm-agent did not answer on %s: %w", a.Socket, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// CLI runs a bm-agent client command against a and returns its output.
func (h *Harness) CLI(ctx context.Context, a *Agent, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(h.Bin, "bm-agent"), append(args, "--socket", a.Socket)...)
	cmd.Env = a.Env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("bm-agent %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Login logs a in through the real OAuth flow: the daemon starts it, and the
// browser step is done over HTTP through the issuer's own login page.
func (h *Harness) Login(ctx context.Context, a *Agent, email, password string) (ipc.Status, error) {
	start, err := a.IPC.Login(ctx)
	if err != nil {
		return ipc.Status{}, fmt.Errorf("login: %w", err)
	}
	if err := issuertest.BrowserLogin(ctx, start.URL, email, password); err != nil {
		return ipc.Status{}, fmt.Errorf("browser step: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := a.IPC.Status(ctx)
		if err == nil && st.LoggedIn && st.State != "starting" {
			return st, nil
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("agent not logged in after the browser step: state %q %s", st.State, st.Error)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Device is a separate client of the tenant API with its own key and an
// independent S3 client (aws-sdk-go-v2), like a second device would have.
type Device struct {
	Creds tenantapi.MountCredentials
	S3    *s3.Client
	Token *oauth2.Token
}

// NewDevice logs in as email through the authorization code + PKCE flow and
// mints a bucket-scoped key with POST /tenant/mount/credentials.
func (h *Harness) NewDevice(ctx context.Context, email, password string) (*Device, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	conf := &oauth2.Config{
		ClientID:    tenantapi.DefaultClientID,
		Endpoint:    oauth2.Endpoint{AuthURL: h.ServerURL + "/oauth2/authorize", TokenURL: h.ServerURL + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: "http://" + ln.Addr().String() + "/callback",
		Scopes:      strings.Fields(tenantapi.DefaultScopes),
	}
	verifier := oauth2.GenerateVerifier()
	state := RandomPassword()
	codes := make(chan string, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("state") != state {
			http.Error(w, "bad state", http.StatusBadRequest)
			return
		}
		codes <- r.URL.Query().Get("code")
		fmt.Fprintln(w, "ok")
	})}
	go srv.Serve(ln)
	defer srv.Close()
	if err := issuertest.BrowserLogin(ctx, conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), email, password); err != nil {
		return nil, fmt.Errorf("device login: %w", err)
	}
	var code string
	select {
	case code = <-codes:
	case <-time.After(10 * time.Second):
		return nil, errors.New("device login: no code reached the callback")
	}
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, fmt.Errorf("device login: exchange: %w", err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.ServerURL+tenantapi.PathMountCredentials, bytes.NewReader([]byte(`{"description":"harness device"}`)))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("mint key: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("mint key: %s: %s", resp.Status, body)
	}
	d := &Device{Token: tok}
	if err := json.Unmarshal(body, &d.Creds); err != nil {
		return nil, fmt.Errorf("mint key: %w", err)
	}
	d.S3 = NewS3Client(d.Creds)
	return d, nil
}

// NewS3Client is an aws-sdk-go-v2 client for a bucket-scoped key.
func NewS3Client(c tenantapi.MountCredentials) *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(c.EndpointURL),
		Region:       c.Region,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(c.AccessKey, c.SecretKey, ""),
	})
}

// GetObject reads key from the device's bucket.
func (d *Device) GetObject(ctx context.Context, key string) ([]byte, error) {
	out, err := d.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: &d.Creds.BucketName, Key: &key})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// PutObject writes key into the device's bucket.
func (d *Device) PutObject(ctx context.Context, key string, body []byte) error {
	_, err := d.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: &d.Creds.BucketName, Key: &key, Body: bytes.NewReader(body)})
	return err
}

// NotifySync tells the server that this device changed the bucket (POST
// /sync), as bm-agent does after a pass that wrote, so the tenant's other
// devices hear of it at once.
func (d *Device) NotifySync(ctx context.Context, serverURL string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, serverURL+tenantapi.PathSync,
		strings.NewReader(`{"device":"other-device","reason":"test"}`))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+d.Token.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST /sync: %s", resp.Status)
	}
	return nil
}

// DeleteObject removes key from the device's bucket.
func (d *Device) DeleteObject(ctx context.Context, key string) error {
	_, err := d.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &d.Creds.BucketName, Key: &key})
	return err
}

// Poll calls f every 100 ms until it returns nil or timeout passes.
func Poll(ctx context.Context, timeout time.Duration, f func() error) (time.Duration, error) {
	start := time.Now()
	for {
		err := f()
		if err == nil {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return time.Since(start), err
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop ends the agents and the server with SIGTERM (then SIGKILL).
func (h *Harness) Stop() {
	for _, c := range append(h.agents, h.server) {
		if c == nil || c.Process == nil {
			continue
		}
		_ = c.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = c.Process.Kill()
			<-done
		}
	}
	h.agents, h.server = nil, nil
}

// DeviceLogin logs a in the way a person on a headless machine does: it
// runs `bm-agent login --device` as a process, reads the verification URL
// and the code from its output, approves them through the issuer's own
// device page, and returns the command's whole output once it exits.
func (h *Harness) DeviceLogin(ctx context.Context, a *Agent, email, password string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(h.Bin, "bm-agent"), "login", "--device", "--socket", a.Socket)
	cmd.Env = a.Env
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("device login: %w", err)
	}
	exited := make(chan error, 1)
	go func() { err := cmd.Wait(); pw.Close(); exited <- err }()
	var out strings.Builder
	approved := make(chan error, 1)
	sc := bufio.NewScanner(pr)
	started := false
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if u := strings.TrimSpace(line); !started && strings.Contains(u, "/oauth2/device?user_code=") {
			started = true
			go func() { approved <- issuertest.DeviceApprove(ctx, u, "", email, password) }()
		}
	}
	err := <-exited
	if !started {
		return out.String(), fmt.Errorf("device login: no verification URL in the output (exit: %v)", err)
	}
	if aerr := <-approved; aerr != nil {
		return out.String(), fmt.Errorf("device login: approve: %w", aerr)
	}
	if err != nil {
		return out.String(), fmt.Errorf("device login: bm-agent login --device: %w", err)
	}
	return out.String(), nil
}
