package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/e2e/harness"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// Config says what a run measures and how many samples it takes.
type Config struct {
	// Mode names the run in the report ("bench", "bench-short", "test"),
	// and the section of docs/BENCHMARKS.md it fills.
	Mode string
	// Invocation is the command line the report says the run came from
	// (default: make MODE).
	Invocation string
	// Bin holds bm-agent, bm-server and rclone (see Build).
	Bin string
	// Sizes are the tree sizes, in notes, smallest first.
	Sizes []int
	// FullSizes are the sizes at which every figure is measured; at the
	// others, only the first sync, the no-change pass and local → bucket.
	FullSizes []int
	// Rounds of the no-change pass, alternating bm-agent and rclone.
	Rounds int
	// Edits is the number of local → bucket samples (single-note edits).
	Edits int
	// DeviceEdits is the number of device → device samples.
	DeviceEdits int
	// Puts is the number of objects another S3 client writes, PutGap
	// apart, each awaited in the folder for up to PutTimeout.
	Puts       int
	PutGap     time.Duration
	PutTimeout time.Duration
	// Idle is how long the idle daemon is watched.
	Idle time.Duration
	// Keep leaves each size's directory (trees, logs) in place.
	Keep bool
	// Log receives progress lines.
	Log io.Writer `json:"-"`
}

// Bench is `make bench`: 1k, 10k and 50k notes, every figure at 10k and 50k.
func Bench() Config {
	return Config{Mode: "bench", Sizes: []int{1000, 10000, 50000}, FullSizes: []int{10000, 50000},
		Rounds: 5, Edits: 20, DeviceEdits: 20, Puts: 10, PutGap: 2 * time.Second, PutTimeout: 75 * time.Second, Idle: time.Minute}
}

// Short is `make bench-short`: 1k and 10k notes, every figure at 10k, fewer
// samples and half a minute of idle, to stay under five minutes on two
// shared cores.
func Short() Config {
	return Config{Mode: "bench-short", Sizes: []int{1000, 10000}, FullSizes: []int{10000},
		Rounds: 3, Edits: 8, DeviceEdits: 5, Puts: 3, PutGap: 2 * time.Second, PutTimeout: 70 * time.Second, Idle: 30 * time.Second}
}

// Tiny is the smallest run that produces every figure (the test's).
func Tiny() Config {
	return Config{Mode: "test", Sizes: []int{200}, FullSizes: []int{200},
		Rounds: 2, Edits: 3, DeviceEdits: 3, Puts: 2, PutGap: time.Second, PutTimeout: 8 * time.Second, Idle: 8 * time.Second}
}

const (
	agentEmail = "bench-agent@example.com"
	seedEmail  = "bench-seed@example.com"
	// seedInterval is the seed's loop: a pass, sleep 60 s, repeat.
	seedInterval = 60 * time.Second
)

// Run measures every size of cfg and returns the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	bin, err := filepath.Abs(cfg.Bin)
	if err != nil {
		return nil, err
	}
	cfg.Bin = bin
	rep := newReport(ctx, cfg)
	noise := newNoiseMeter()
	cal := noise.calibrate()
	fmt.Fprintf(cfg.Log, "bench: calibration loop %s, load %.2f\n", cal.Round(time.Millisecond), noise.loadStart)
	for i, n := range cfg.Sizes {
		r := &sizeRun{cfg: cfg, n: n, idx: i, full: slices.Contains(cfg.FullSizes, n), log: cfg.Log}
		res, err := r.run(ctx)
		if err != nil {
			return rep, fmt.Errorf("%d notes: %w", n, err)
		}
		rep.Sizes = append(rep.Sizes, res)
		cal = noise.calibrate()
		fmt.Fprintf(cfg.Log, "bench: %d notes done; calibration loop %s, load %.2f\n", n, cal.Round(time.Millisecond), LoadAvg())
	}
	rep.Noise = noise.finish()
	rep.Finished = time.Now()
	for i := range rep.Sizes {
		rep.Sizes[i].Table = Rows(rep.Sizes[i])
	}
	return rep, nil
}

// sizeRun is the measurement of one tree size on a server of its own.
type sizeRun struct {
	cfg  Config
	n    int
	idx  int
	full bool
	log  io.Writer

	dir      string
	h        *harness.Harness
	proxy    *Proxy
	s3Direct string // the S3 endpoint itself, past the proxy
	agent    *harness.Agent
	// seed runs the seed's command and the --fast-list command, on a
	// tenant of its own.
	seed *Rclone
	// agent2Keys are the access keys the second daemon signs with.
	agent2Keys map[string]bool
	agentDev   *harness.Device // an S3 client on the agent's bucket, past the proxy
	agentPw    string
	// metricsToken is the bearer token bm-server's /metrics asks for.
	metricsToken string
	res          SizeResult
}

func (r *sizeRun) logf(format string, args ...any) {
	fmt.Fprintf(r.log, "bench: %d notes: "+format+"\n", append([]any{r.n}, args...)...)
}

func (r *sizeRun) run(ctx context.Context) (res SizeResult, err error) {
	r.res = SizeResult{Notes: r.n, Full: r.full}
	// Short path: the daemons' unix sockets live under it.
	if r.dir, err = os.MkdirTemp("", "bmb-"); err != nil {
		return r.res, err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w (logs in %s)", err, r.dir)
		} else if !r.cfg.Keep {
			os.RemoveAll(r.dir)
		}
	}()
	defer r.stop()
	if err := r.start(ctx); err != nil {
		return r.res, err
	}

	steps := []struct {
		name string
		do   func(context.Context) error
		full bool
	}{
		{"first sync", r.firstSync, false},
		{"no-change pass", r.noChange, false},
		{"local → bucket", r.localToBucket, false},
		{"device → device", r.deviceToDevice, true},
		{"object PUT → folder", r.putToFolder, true},
		{"idle", r.idle, true},
	}
	for _, s := range steps {
		if s.full && !r.full {
			continue
		}
		if err := s.do(ctx); err != nil {
			return r.res, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return r.res, nil
}

// start generates both trees, starts bm-server with the proxy in front of
// its S3 endpoint, and logs in the S3 clients of both tenants.
func (r *sizeRun) start(ctx context.Context) error {
	t := time.Now()
	b, err := GenerateTree(r.n, filepath.Join(r.dir, "agent-notes"), filepath.Join(r.dir, "seed-notes"))
	if err != nil {
		return fmt.Errorf("generate trees: %w", err)
	}
	r.res.Bytes = b
	r.logf("two trees of %d notes (%.1f MB each) in %s", r.n, float64(r.res.Bytes)/1e6, time.Since(t).Round(time.Millisecond))

	if r.proxy, err = Listen(); err != nil {
		return err
	}
	s3Addr, err := FreeAddr()
	if err != nil {
		return err
	}
	r.s3Direct = "http://" + s3Addr
	go func() { _ = r.proxy.Serve(r.s3Direct) }()
	// /metrics on the API listener needs a token.
	r.metricsToken = harness.RandomPassword()
	tokenFile := filepath.Join(r.dir, "metrics.token")
	if err := os.WriteFile(tokenFile, []byte(r.metricsToken), 0o600); err != nil {
		return fmt.Errorf("metrics token: %w", err)
	}
	r.h = &harness.Harness{Bin: r.cfg.Bin, Dir: r.dir,
		// The last --s3-addr wins: the endpoint on a port known here, and
		// the proxy as the endpoint clients are given.
		ServerArgs: []string{"--s3-addr", s3Addr, "--s3-public-url", r.proxy.URL(), "--metrics-token-file", tokenFile}}
	seedPw, agentPw := harness.RandomPassword(), harness.RandomPassword()
	if err := r.h.AddUser(ctx, seedEmail, seedPw); err != nil {
		return err
	}
	if err := r.h.StartServer(ctx, agentEmail, agentPw); err != nil {
		return err
	}
	rclone := filepath.Join(r.cfg.Bin, "rclone")
	seedDev, err := r.h.NewDevice(ctx, seedEmail, seedPw)
	if err != nil {
		return err
	}
	if seedDev.Creds.EndpointURL != r.proxy.URL() {
		return fmt.Errorf("the server hands out %s as the S3 endpoint, not the proxy %s", seedDev.Creds.EndpointURL, r.proxy.URL())
	}
	if r.seed, err = NewRclone(rclone, filepath.Join(r.dir, "seed-notes"), filepath.Join(r.dir, "rclone-seed"), seedDev.Creds); err != nil {
		return err
	}
	// --check-access wants the check file on both sides before any run:
	// the seed's setup puts it in the bucket too.
	if err := seedDev.PutObject(ctx, checkFile, []byte(checkFileBody)); err != nil {
		return fmt.Errorf("put %s: %w", checkFile, err)
	}
	if r.agentDev, err = r.h.NewDevice(ctx, agentEmail, agentPw); err != nil {
		return err
	}
	direct := r.agentDev.Creds
	direct.EndpointURL = r.s3Direct
	r.agentDev.S3 = harness.NewS3Client(direct) // its polls are not counted
	r.agentPw = agentPw
	return nil
}

func (r *sizeRun) stop() {
	if r.h != nil {
		r.h.Stop()
	}
	if r.proxy != nil {
		_ = r.proxy.Close()
	}
}

// FreeAddr is a loopback address no one listens on right now.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// agentCounts are the requests the first daemon signed so far.
func (r *sizeRun) agentCounts() Counts {
	c := Counts{}
	for _, k := range r.proxy.Keys() {
		if k == r.seed.key || r.agent2Keys[k] || k == "" {
			continue
		}
		for class, n := range r.proxy.Counts(k) {
			c[class] += n
		}
	}
	return c
}

// seedRun runs rc with args and counts its requests.
func (r *sizeRun) seedRun(ctx context.Context, rc *Rclone, args []string) (Pass, error) {
	before := r.proxy.Counts(rc.key)
	run, err := rc.Run(ctx, args...)
	p := Pass{Wall: Num(run.Wall.Seconds()), CPU: Num(run.CPU.Seconds()), PeakRSSMB: mb(run.PeakRSS), Requests: r.proxy.Counts(rc.key).Sub(before)}
	return p, err
}

// startAgent starts a daemon named name (its own home, folder and device
// name) with the file keyring, and logs it in.
func (r *sizeRun) startAgent(ctx context.Context, name string) (*harness.Agent, error) {
	home := filepath.Join(r.dir, name)
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	cfg, _ := json.Marshal(map[string]any{"device": "bench-" + name})
	if err := os.WriteFile(filepath.Join(home, "config.json"), cfg, 0o600); err != nil {
		return nil, err
	}
	return r.h.StartAgent(ctx, name, "BM_AGENT_KEYRING=file")
}

// loginAndSync logs a in and waits for its first sync: the daemon idle
// after a pass, and done (the bucket or the folder holds the tree). It
// returns the wall time from the login (or the first pass, if earlier) to
// the end of the last pass, and that pass.
func (r *sizeRun) loginAndSync(ctx context.Context, a *harness.Agent, done func(context.Context) error) (time.Duration, ipc.PassSummary, error) {
	if _, err := r.h.Login(ctx, a, agentEmail, r.agentPw); err != nil {
		return 0, ipc.PassSummary{}, err
	}
	loggedIn := time.Now()
	var st ipc.Status
	if _, err := poll(ctx, r.syncTimeout(), 100*time.Millisecond, func() error {
		var err error
		if st, err = idleAfter(ctx, a, time.Time{}); err != nil {
			return err
		}
		return done(ctx)
	}); err != nil {
		return 0, ipc.PassSummary{}, fmt.Errorf("first sync of %s: %w", filepath.Base(a.Home), err)
	}
	hist, err := a.IPC.History(ctx, 100)
	if err != nil {
		return 0, ipc.PassSummary{}, err
	}
	start := loggedIn
	for _, p := range hist.Passes {
		if p.Skipped == "" && p.Start.Before(start) {
			start = p.Start
		}
	}
	return passEnd(*st.LastSync).Sub(start), *st.LastSync, nil
}

func passEnd(p ipc.PassSummary) time.Time {
	return p.Start.Add(time.Duration(p.DurationMS) * time.Millisecond)
}

// syncTimeout bounds a sync of the whole tree.
func (r *sizeRun) syncTimeout() time.Duration {
	return 2*time.Minute + time.Duration(r.n)*30*time.Millisecond
}

// idleAfter is a's status if it is idle after a good pass that ended
// after since, an error saying what it is doing otherwise.
func idleAfter(ctx context.Context, a *harness.Agent, since time.Time) (ipc.Status, error) {
	st, err := a.IPC.Status(ctx)
	switch {
	case err != nil:
		return st, err
	case st.State != ipc.StateIdle || st.LastSync == nil:
		return st, fmt.Errorf("state %s %s", st.State, st.Error)
	case st.LastSync.Error != "":
		return st, fmt.Errorf("the last pass failed: %s", st.LastSync.Error)
	case passEnd(*st.LastSync).Before(since):
		return st, errors.New("idle, but no pass since the change")
	}
	return st, nil
}

// waitIdle waits until a is idle after a pass that ended after since.
func (r *sizeRun) waitIdle(ctx context.Context, a *harness.Agent, since time.Time) (ipc.Status, error) {
	var st ipc.Status
	_, err := poll(ctx, r.syncTimeout(), 50*time.Millisecond, func() error {
		var err error
		st, err = idleAfter(ctx, a, since)
		return err
	})
	if err != nil {
		return st, fmt.Errorf("%s not idle after a pass within %s: %w", filepath.Base(a.Home), r.syncTimeout(), err)
	}
	return st, nil
}

// poll calls f every interval until it returns nil or timeout passes, and
// returns the time from the start of the poll to f's last call.
func poll(ctx context.Context, timeout, interval time.Duration, f func() error) (time.Duration, error) {
	start := time.Now()
	for {
		err := f()
		took := time.Since(start)
		if err == nil || took > timeout {
			return took, err
		}
		select {
		case <-ctx.Done():
			return took, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// whilePaused runs f with the daemon's passes paused, so that the seed's
// command has the machine to itself, then resumes it and waits for the
// pass a resume starts.
func (r *sizeRun) whilePaused(ctx context.Context, f func() error) error {
	a := r.agent
	if err := a.IPC.Pause(ctx); err != nil {
		return err
	}
	if _, err := poll(ctx, r.syncTimeout(), 20*time.Millisecond, func() error {
		st, err := a.IPC.Status(ctx)
		if err == nil && st.State != ipc.StatePaused {
			err = fmt.Errorf("state %s", st.State)
		}
		return err
	}); err != nil {
		return fmt.Errorf("pause: %w", err)
	}
	if err := f(); err != nil {
		return err
	}
	t := time.Now()
	if err := a.IPC.Resume(ctx); err != nil {
		return err
	}
	// The resume's pass, or (should it not come) five seconds of idle.
	_, err := poll(ctx, r.syncTimeout(), 20*time.Millisecond, func() error {
		_, err := idleAfter(ctx, a, t)
		if err != nil && time.Since(t) > 5*time.Second {
			_, err = idleAfter(ctx, a, time.Time{})
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	return nil
}

// firstSync measures the daemon's first sync and the seed's --resync of
// the same tree, in an order that alternates from size to size, and gives
// the --fast-list command its own baseline.
func (r *sizeRun) firstSync(ctx context.Context) error {
	agentFirst := func() error {
		var err error
		if r.agent, err = r.startAgent(ctx, "agent"); err != nil {
			return err
		}
		wall, last, err := r.loginAndSync(ctx, r.agent, r.bucketHolds)
		if err != nil {
			return err
		}
		_, peak, err := ProcMem(r.agent.Process().Pid)
		if err != nil {
			return err
		}
		r.res.FirstSyncAgent = Pass{Wall: Num(wall.Seconds()), Engine: Num(float64(last.DurationMS) / 1000), PeakRSSMB: mb(peak), Requests: r.agentCounts()}
		r.logf("bm-agent first sync %.2f s, %s requests, peak RSS %.0f MB", wall.Seconds(), r.res.FirstSyncAgent.Requests, float64(r.res.FirstSyncAgent.PeakRSSMB))
		return nil
	}
	seedFirst := func() error {
		var err error
		if r.res.FirstSyncSeed, err = r.seedRun(ctx, r.seed, r.seed.SeedArgs(true)); err != nil {
			return err
		}
		p := r.res.FirstSyncSeed
		r.logf("the seed's command --resync %.2f s, %s requests, peak RSS %.0f MB", float64(p.Wall), p.Requests, float64(p.PeakRSSMB))
		return r.seedPasses(ctx)
	}
	if r.idx%2 == 1 {
		r.res.FirstSyncOrder = "the seed, then bm-agent"
		if err := seedFirst(); err != nil {
			return err
		}
		return agentFirst()
	}
	r.res.FirstSyncOrder = "bm-agent, then the seed"
	if err := agentFirst(); err != nil {
		return err
	}
	return r.whilePaused(ctx, seedFirst)
}

// seedPasses times the seed's command with nothing to do and over one
// changed note, then gives the --fast-list command its baseline on the
// same folder and bucket. Every run of the seed's command comes before
// that baseline: the two keep listings of their own, and a change one
// makes would be news to the other.
func (r *sizeRun) seedPasses(ctx context.Context) error {
	var err error
	if r.res.NoChangeSeed, err = r.seedRun(ctx, r.seed, r.seed.SeedArgs(false)); err != nil {
		return err
	}
	p := r.res.NoChangeSeed
	r.logf("the seed's command with nothing to do %.2f s, %s requests", float64(p.Wall), p.Requests)
	if _, _, err := editNote(r.seed.Local, r.n/2, 0); err != nil {
		return err
	}
	if r.res.OneChangeSeed, err = r.seedRun(ctx, r.seed, r.seed.SeedArgs(false)); err != nil {
		return err
	}
	p = r.res.OneChangeSeed
	r.logf("the seed's command over one changed note %.2f s, %s requests", float64(p.Wall), p.Requests)
	// The tree is in the bucket already, where the server's times are not
	// the files' times: a plain --resync would rewrite every object (and
	// then stop, every object "changed"); with path2 winning, the
	// folder's file times are set to the server's instead, which is what
	// --use-server-modtime needs to see both sides alike.
	if r.res.FastListBaseline, err = r.seedRun(ctx, r.seed, append(r.seed.FastListArgs(true), "--resync-mode", "path2")); err != nil {
		return err
	}
	p = r.res.FastListBaseline
	r.logf("the --fast-list command's baseline (--resync --resync-mode path2) %.2f s, %s requests", float64(p.Wall), p.Requests)
	return nil
}

// bucketHolds checks the daemon's bucket holds every note (read past the
// proxy).
func (r *sizeRun) bucketHolds(ctx context.Context) error {
	n, err := countObjects(ctx, r.agentDev)
	if err == nil && n < r.n {
		err = fmt.Errorf("the bucket holds %d of %d notes", n, r.n)
	}
	return err
}

// agentPass runs one pass of the daemon through the local API (`bm-agent
// sync`) and counts its requests.
func (r *sizeRun) agentPass(ctx context.Context) (Pass, ipc.PassSummary, error) {
	if _, err := r.waitIdle(ctx, r.agent, time.Time{}); err != nil {
		return Pass{}, ipc.PassSummary{}, err
	}
	pid := r.agent.Process().Pid
	before := r.agentCounts()
	cpu0, _ := ProcCPU(pid)
	t := time.Now()
	sum, err := r.agent.IPC.Sync(ctx, ipc.SyncRequest{Wait: true})
	wall := time.Since(t)
	cpu1, _ := ProcCPU(pid)
	if err == nil && sum.Error != "" {
		err = errors.New(sum.Error)
	}
	return Pass{Wall: Num(wall.Seconds()), Engine: Num(float64(sum.DurationMS) / 1000), CPU: Num((cpu1 - cpu0).Seconds()),
		Requests: r.agentCounts().Sub(before)}, sum, err
}

// noChange alternates the daemon's pass and `rclone bisync --fast-list
// --use-server-modtime` as a fresh process, Rounds times.
func (r *sizeRun) noChange(ctx context.Context) error {
	agentTurn := func() error {
		p, sum, err := r.agentPass(ctx)
		if err != nil {
			return err
		}
		p.Changed = sum.Uploaded + sum.Downloaded + sum.DeletedLocal + sum.DeletedRemote
		r.res.NoChangeAgent = append(r.res.NoChangeAgent, p)
		return nil
	}
	// No pause here: the daemon is idle, and its next pass is an interval
	// away.
	rcloneTurn := func() error {
		p, err := r.seedRun(ctx, r.seed, r.seed.FastListArgs(false))
		r.res.NoChangeFastList = append(r.res.NoChangeFastList, p)
		return err
	}
	for i := range r.cfg.Rounds {
		turns := []func() error{agentTurn, rcloneTurn}
		if i%2 == 1 {
			turns[0], turns[1] = turns[1], turns[0]
		}
		for _, f := range turns {
			if err := f(); err != nil {
				return err
			}
		}
	}
	a, f := medianPass(r.res.NoChangeAgent), medianPass(r.res.NoChangeFastList)
	r.logf("no-change pass: bm-agent %.3f s, %s requests; --fast-list %.3f s, %s", float64(a.Wall), a.Requests, float64(f.Wall), f.Requests)
	return nil
}

// editNote rewrites note i in folder with a body of its own and returns it.
func editNote(folder string, i, k int) (string, []byte, error) {
	rel := NotePath(i)
	body := append(noteBody(i), fmt.Sprintf("\nedit %d at %s\n", k, time.Now().Format(time.RFC3339Nano))...)
	return rel, body, os.WriteFile(filepath.Join(folder, filepath.FromSlash(rel)), body, 0o600)
}

// gap is a pause of 200-500 ms between samples, varied so that they do
// not lock to one of the daemon's timers.
func gap(k int) time.Duration {
	return 200*time.Millisecond + time.Duration(k*7919%300)*time.Millisecond
}

// localToBucket edits one note at a time in the daemon's folder and times
// each edit to the bucket (read past the proxy).
func (r *sizeRun) localToBucket(ctx context.Context) error {
	const timeout = 2 * time.Minute
	for k := range r.cfg.Edits {
		if _, err := r.waitIdle(ctx, r.agent, time.Time{}); err != nil {
			return err
		}
		time.Sleep(gap(k))
		before := r.agentCounts()
		t := time.Now()
		rel, body, err := editNote(r.agent.Folder, (k*7919+13)%r.n, k)
		if err != nil {
			return err
		}
		took, err := poll(ctx, timeout, 25*time.Millisecond, func() error {
			got, err := r.agentDev.GetObject(ctx, rel)
			if err == nil && !bytes.Equal(got, body) {
				err = errors.New("old content")
			}
			return err
		})
		r.res.LocalToBucket.add(took, err == nil, timeout)
		if _, err := r.waitIdle(ctx, r.agent, t); err != nil {
			return err
		}
		r.res.EditRequests = append(r.res.EditRequests, r.agentCounts().Sub(before))
		if p, ok := r.uploadPass(ctx, t); ok {
			r.res.EditPassEngine = append(r.res.EditPassEngine, float64(p.DurationMS)/1000)
		}
	}
	l := &r.res.LocalToBucket
	l.finish()
	r.logf("local → bucket p50 %s, p95 %s (%d samples, %d missed); one-note pass %.3f s of engine time, %s requests",
		fmtSeconds(l.P50), fmtSeconds(l.P95), l.N(), l.Missed, Median(r.res.EditPassEngine), medianCounts(r.res.EditRequests))
	return nil
}

// uploadPass is the daemon's pass since t that uploaded a file.
func (r *sizeRun) uploadPass(ctx context.Context, t time.Time) (ipc.PassSummary, bool) {
	hist, err := r.agent.IPC.History(ctx, 10)
	if err != nil {
		return ipc.PassSummary{}, false
	}
	for _, p := range hist.Passes {
		if p.Uploaded > 0 && !passEnd(p).Before(t) {
			return p, true
		}
	}
	return ipc.PassSummary{}, false
}

// copyTree copies the regular files under src to dst, times included.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			return err
		}
		return os.Chtimes(to, info.ModTime(), info.ModTime())
	})
}

// folderHolds is a check that folder holds n files or more.
func folderHolds(folder string, n int) func(context.Context) error {
	return func(context.Context) error {
		got := 0
		err := filepath.WalkDir(folder, func(_ string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				got++
			}
			return err
		})
		if err == nil && got < n {
			err = fmt.Errorf("the folder holds %d of %d notes", got, n)
		}
		return err
	}
}

// deviceToDevice starts a second daemon on the same account, its folder a
// copy of the first one's (a device that has the notes already: its first
// sync finds both sides alike), then edits notes in the first one's folder
// and times each to the second one's; then it stops the second daemon.
func (r *sizeRun) deviceToDevice(ctx context.Context) error {
	if _, err := r.waitIdle(ctx, r.agent, time.Time{}); err != nil {
		return err
	}
	if err := copyTree(r.agent.Folder, filepath.Join(r.dir, "agent2-notes")); err != nil {
		return err
	}
	known := map[string]bool{}
	for _, k := range r.proxy.Keys() {
		known[k] = true
	}
	a2, err := r.startAgent(ctx, "agent2")
	if err != nil {
		return err
	}
	defer func() {
		_ = a2.Process().Signal(syscall.SIGTERM)
		_ = a2.Wait()
	}()
	wall, _, err := r.loginAndSync(ctx, a2, folderHolds(a2.Folder, r.n))
	if err != nil {
		return err
	}
	r.agent2Keys = map[string]bool{}
	c2 := Counts{}
	for _, k := range r.proxy.Keys() {
		if !known[k] {
			r.agent2Keys[k] = true
			for class, n := range r.proxy.Counts(k) {
				c2[class] += n
			}
		}
	}
	r.res.SecondDeviceFirstSync = &Pass{Wall: Num(wall.Seconds()), Requests: c2}
	r.logf("second daemon's first sync (its folder a copy) %.2f s, %s requests", wall.Seconds(), c2)

	lat := &Latency{}
	const timeout = 2 * time.Minute
	for k := range r.cfg.DeviceEdits {
		for _, a := range []*harness.Agent{r.agent, a2} {
			if _, err := r.waitIdle(ctx, a, time.Time{}); err != nil {
				return err
			}
		}
		time.Sleep(gap(k))
		rel, body, err := editNote(r.agent.Folder, (k*104729+7)%r.n, 1000+k)
		if err != nil {
			return err
		}
		took, err := poll(ctx, timeout, 10*time.Millisecond, func() error {
			got, err := os.ReadFile(filepath.Join(a2.Folder, filepath.FromSlash(rel)))
			if err == nil && !bytes.Equal(got, body) {
				err = errors.New("old content")
			}
			return err
		})
		lat.add(took, err == nil, timeout)
	}
	lat.finish()
	r.res.DeviceToDevice = lat
	hist, err := a2.IPC.History(ctx, 100)
	if err != nil {
		return err
	}
	live := slices.ContainsFunc(hist.Passes, func(p ipc.PassSummary) bool { return p.Trigger == "remote" })
	r.res.PushLive = &live
	how := "change events woke the second daemon"
	if !live {
		how = "no change event woke the second daemon"
	}
	r.logf("device → device p50 %s, p95 %s (%d samples, %d missed; %s)", fmtSeconds(lat.P50), fmtSeconds(lat.P95), lat.N(), lat.Missed, how)
	return nil
}

// putToFolder writes new objects with another S3 client (past the proxy),
// PutGap apart, and times each to the daemon's folder.
func (r *sizeRun) putToFolder(ctx context.Context) error {
	if _, err := r.waitIdle(ctx, r.agent, time.Time{}); err != nil {
		return err
	}
	type put struct {
		rel  string
		body []byte
		at   time.Time
		done bool
	}
	var puts []*put
	lat := &Latency{}
	check := func() {
		for _, p := range puts {
			if p.done {
				continue
			}
			got, err := os.ReadFile(filepath.Join(r.agent.Folder, filepath.FromSlash(p.rel)))
			if err == nil && bytes.Equal(got, p.body) {
				p.done = true
				lat.add(time.Since(p.at), true, r.cfg.PutTimeout)
			}
		}
	}
	pending := func() bool { return slices.ContainsFunc(puts, func(p *put) bool { return !p.done }) }
	wait := func(until time.Time, all bool) error {
		for time.Now().Before(until) && (!all || pending()) {
			if err := ctx.Err(); err != nil {
				return err
			}
			check()
			time.Sleep(10 * time.Millisecond)
		}
		return nil
	}
	for k := range r.cfg.Puts {
		p := &put{rel: fmt.Sprintf("from-s3/put-%02d.md", k),
			body: fmt.Appendf(nil, "# put %d\n\nwritten by another S3 client at %s\n", k, time.Now().Format(time.RFC3339Nano))}
		p.at = time.Now()
		if err := r.agentDev.PutObject(ctx, p.rel, p.body); err != nil {
			return err
		}
		puts = append(puts, p)
		if k < r.cfg.Puts-1 {
			if err := wait(p.at.Add(r.cfg.PutGap), false); err != nil {
				return err
			}
		}
	}
	if err := wait(puts[len(puts)-1].at.Add(r.cfg.PutTimeout), true); err != nil {
		return err
	}
	for _, p := range puts {
		if !p.done {
			lat.add(0, false, r.cfg.PutTimeout)
		}
	}
	lat.finish()
	r.res.PutToFolder = lat
	r.logf("object PUT → folder p50 %s, max %s (%d samples, %d not there within %s)",
		fmtSeconds(lat.P50), fmtSeconds(lat.Max), lat.N(), lat.Missed, r.cfg.PutTimeout)
	return nil
}

// idle watches the daemon do nothing for cfg.Idle: its CPU time and
// memory from /proc, its S3 requests at the proxy, its API requests in
// bm-server's metrics, and its passes.
func (r *sizeRun) idle(ctx context.Context) error {
	if _, err := r.waitIdle(ctx, r.agent, time.Time{}); err != nil {
		return err
	}
	time.Sleep(2 * time.Second) // past the last pass's own follow-ups
	pid := r.agent.Process().Pid
	api0, srvCPU0, err := r.serverMetrics(ctx)
	if err != nil {
		return err
	}
	hist0, err := r.agent.IPC.History(ctx, 1)
	if err != nil {
		return err
	}
	s3Before := r.agentCounts()
	cpu0, err := ProcCPU(pid)
	if err != nil {
		return err
	}
	t0 := time.Now()
	var maxRSS int64
	for time.Since(t0) < r.cfg.Idle {
		rss, _, err := ProcMem(pid)
		if err != nil {
			return err
		}
		maxRSS = max(maxRSS, rss)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(time.Second, r.cfg.Idle-time.Since(t0))):
		}
	}
	cpu1, err := ProcCPU(pid)
	if err != nil {
		return err
	}
	el := time.Since(t0)
	rss, _, err := ProcMem(pid)
	if err != nil {
		return err
	}
	api1, srvCPU1, err := r.serverMetrics(ctx)
	if err != nil {
		return err
	}
	hist1, err := r.agent.IPC.History(ctx, 100)
	if err != nil {
		return err
	}
	passes := 0
	for _, p := range hist1.Passes {
		if len(hist0.Passes) > 0 && !p.Start.After(hist0.Passes[0].Start) {
			break
		}
		passes++
	}
	r.res.Idle = &Idle{
		Seconds:          Num(el.Seconds()),
		CPUPercent:       Num(100 * (cpu1 - cpu0).Seconds() / el.Seconds()),
		RSSMB:            mb(rss),
		MaxRSSMB:         mb(max(maxRSS, rss)),
		S3Requests:       r.agentCounts().Sub(s3Before),
		APIRequests:      api1 - api0,
		Passes:           passes,
		ServerCPUPercent: Num(100 * (srvCPU1 - srvCPU0) / el.Seconds()),
	}
	i := r.res.Idle
	r.logf("idle %s: CPU %.2f %% of a core, RSS %.0f MB, %s S3 requests, %d API requests, %d passes (server CPU %.2f %%)",
		el.Round(time.Second), float64(i.CPUPercent), float64(i.RSSMB), i.S3Requests, i.APIRequests, i.Passes, float64(i.ServerCPUPercent))
	return nil
}

// serverMetrics reads bm-server's /metrics: API requests answered (but
// those to /metrics itself) and the server process's CPU seconds.
func (r *sizeRun) serverMetrics(ctx context.Context) (requests int64, cpuSeconds float64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.h.ServerURL+"/metrics", nil)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+r.metricsToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	for line := range strings.Lines(string(b)) {
		name, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch {
		case strings.HasPrefix(name, "bm_http_requests_total{"):
			if strings.Contains(line, `route="GET /metrics"`) {
				continue
			}
			// the value is the last field: labels may hold spaces
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			requests += int64(v)
		case name == "process_cpu_seconds_total":
			cpuSeconds, _ = strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return requests, cpuSeconds, nil
}

func mb(b int64) Num { return Num(math.Round(float64(b)/(1<<20)*10) / 10) }

// noiseMeter follows how busy and how steady the machine was.
type noiseMeter struct {
	cals      []time.Duration
	loadStart float64
	cpu0      cpuTimes
}

func newNoiseMeter() *noiseMeter {
	return &noiseMeter{loadStart: LoadAvg(), cpu0: readCPUTimes()}
}

func (m *noiseMeter) calibrate() time.Duration {
	d := Calibrate()
	m.cals = append(m.cals, d)
	return d
}

func (m *noiseMeter) finish() Noise {
	m.calibrate()
	cpu1 := readCPUTimes()
	n := Noise{CPUs: runtime.NumCPU(), LoadStart: Num(m.loadStart), LoadEnd: Num(LoadAvg())}
	lo, hi := slices.Min(m.cals), slices.Max(m.cals)
	for _, c := range m.cals {
		n.CalibrationMS = append(n.CalibrationMS, Num(float64(c.Microseconds())/1000))
	}
	n.CalibrationSpread = Num(100 * (float64(hi) - float64(lo)) / float64(lo))
	if dt := cpu1.total - m.cpu0.total; dt > 0 {
		n.StealPercent = Num(100 * float64(cpu1.steal-m.cpu0.steal) / float64(dt))
		n.BusyPercent = Num(100 * (1 - float64(cpu1.idle-m.cpu0.idle)/float64(dt)))
	}
	return n
}

// countObjects counts the objects in dev's bucket.
func countObjects(ctx context.Context, dev *harness.Device) (int, error) {
	n := 0
	pages := s3.NewListObjectsV2Paginator(dev.S3, &s3.ListObjectsV2Input{Bucket: &dev.Creds.BucketName})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return n, err
		}
		n += len(page.Contents)
	}
	return n, nil
}
