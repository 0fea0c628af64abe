package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Pass is one measured sync pass (or process run).
type Pass struct {
	Wall Num `json:"wall_s"`
	// Engine is the daemon's own duration of the pass (its last one).
	Engine    Num    `json:"engine_s,omitempty"`
	CPU       Num    `json:"cpu_s,omitempty"`
	PeakRSSMB Num    `json:"peak_rss_mb,omitempty"`
	Requests  Counts `json:"requests"`
	// Changed counts the files a pass meant to change nothing changed.
	Changed int `json:"changed,omitempty"`
}

// Idle is the idle daemon, watched for Seconds.
type Idle struct {
	Seconds    Num    `json:"seconds"`
	CPUPercent Num    `json:"cpu_percent"`
	RSSMB      Num    `json:"rss_mb"`
	MaxRSSMB   Num    `json:"max_rss_mb"`
	S3Requests Counts `json:"s3_requests"`
	// APIRequests are the tenant API requests bm-server answered meanwhile
	// (all the daemon's: nothing else talks to it then).
	APIRequests int64 `json:"api_requests"`
	// Passes is the number of passes the daemon ran meanwhile.
	Passes           int `json:"passes"`
	ServerCPUPercent Num `json:"server_cpu_percent"`
}

// SizeResult holds every figure for one tree size.
type SizeResult struct {
	Notes int   `json:"notes"`
	Bytes int64 `json:"bytes"`
	// Full: every figure was measured at this size.
	Full           bool   `json:"full"`
	FirstSyncOrder string `json:"first_sync_order"`
	FirstSyncAgent Pass   `json:"first_sync_agent"`
	// FirstSyncSeed is the seed's command with --resync.
	FirstSyncSeed Pass `json:"first_sync_seed"`
	// FastListBaseline is the --fast-list command's own --resync.
	FastListBaseline Pass   `json:"fast_list_baseline"`
	NoChangeAgent    []Pass `json:"no_change_agent"`
	NoChangeFastList []Pass `json:"no_change_fast_list"`
	NoChangeSeed     Pass   `json:"no_change_seed"`
	// OneChangeSeed is the seed's command over one changed note.
	OneChangeSeed Pass    `json:"one_change_seed"`
	LocalToBucket Latency `json:"local_to_bucket"`
	// EditPassEngine is the daemon's duration of each pass that uploaded
	// one edited note; EditRequests the requests of each edit.
	EditPassEngine        []float64 `json:"edit_pass_engine_s"`
	EditRequests          []Counts  `json:"edit_requests"`
	SecondDeviceFirstSync *Pass     `json:"second_device_first_sync,omitempty"`
	DeviceToDevice        *Latency  `json:"device_to_device,omitempty"`
	// PushLive: a change event woke the second daemon.
	PushLive    *bool    `json:"push_live,omitempty"`
	PutToFolder *Latency `json:"put_to_folder,omitempty"`
	Idle        *Idle    `json:"idle,omitempty"`
	Table       []Row    `json:"table"`
}

// Noise says how steady the machine was during the run.
type Noise struct {
	CPUs int `json:"cpus"`
	// CalibrationMS are the timings of Calibrate at the start, after each
	// size and at the end; CalibrationSpread is (max-min)/min in percent.
	CalibrationMS     []Num `json:"calibration_ms"`
	CalibrationSpread Num   `json:"calibration_spread_percent"`
	LoadStart         Num   `json:"load_start"`
	LoadEnd           Num   `json:"load_end"`
	// StealPercent and BusyPercent are of all CPUs over the run.
	StealPercent Num `json:"steal_percent"`
	BusyPercent  Num `json:"busy_percent"`
}

// Report is a whole run.
type Report struct {
	Mode      string            `json:"mode"`
	Started   time.Time         `json:"started"`
	Finished  time.Time         `json:"finished"`
	Host      string            `json:"host"`
	CPUModel  string            `json:"cpu_model"`
	GoVersion string            `json:"go_version"`
	Commit    string            `json:"commit"`
	Dirty     bool              `json:"dirty"`
	Rclone    string            `json:"rclone"`
	Commands  map[string]string `json:"commands"`
	Config    Config            `json:"config"`
	Noise     Noise             `json:"noise"`
	Sizes     []SizeResult      `json:"sizes"`
}

func newReport(ctx context.Context, cfg Config) *Report {
	host, _ := os.Hostname()
	rep := &Report{Mode: cfg.Mode, Started: time.Now(), Host: host, CPUModel: cpuModel(), GoVersion: runtime.Version(), Config: cfg}
	rep.Commit, rep.Dirty = gitState(ctx)
	if out, err := goCmd(ctx, "version", "-m", filepath.Join(cfg.Bin, "rclone")); err == nil {
		for line := range strings.Lines(out) {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == "dep" && f[1] == rcloneModule {
				rep.Rclone = f[2]
			}
		}
	}
	rc := &Rclone{Local: "~/basic-memory", Bucket: "BUCKET", Dir: "DIR"}
	rep.Commands = map[string]string{
		"bm-agent":           "bm-agent run --folder ~/basic-memory (its defaults: 1 s quiet window, 60 s interval); passes timed through its local API (bm-agent sync)",
		"seed":               rc.CommandLine(rc.SeedArgs(false)),
		"seed first sync":    rc.CommandLine(rc.SeedArgs(true)),
		"no-change compare":  rc.CommandLine(rc.FastListArgs(false)),
		"no-change baseline": rc.CommandLine(append(rc.FastListArgs(true), "--resync-mode", "path2")),
	}
	return rep
}

// Row is one line of a size's table.
type Row struct {
	Figure string `json:"figure"`
	Goal   string `json:"goal"`
	Agent  string `json:"bm_agent"`
	Seed   string `json:"seed"`
	Ratio  string `json:"ratio"`
	// Met is "yes", "no", or "" where the goal has no test here.
	Met string `json:"met"`
}

func medianPass(ps []Pass) Pass {
	if len(ps) == 0 {
		return Pass{Wall: Num(math.NaN())}
	}
	s := slices.Clone(ps)
	slices.SortFunc(s, func(a, b Pass) int { return cmpNum(a.Wall, b.Wall) })
	return s[(len(s)-1)/2]
}

func cmpNum(a, b Num) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func medianCounts(cs []Counts) Counts {
	if len(cs) == 0 {
		return nil
	}
	s := slices.Clone(cs)
	slices.SortFunc(s, func(a, b Counts) int { return int(a.Total() - b.Total()) })
	return s[(len(s)-1)/2]
}

func fmtSeconds(v Num) string {
	f := float64(v)
	switch {
	case math.IsNaN(f):
		return "–"
	case math.IsInf(f, 1):
		return "never"
	case f < 1:
		return fmt.Sprintf("%.0f ms", f*1000)
	case f < 10:
		return fmt.Sprintf("%.2f s", f)
	}
	return fmt.Sprintf("%.1f s", f)
}

func fmtLatency(l *Latency, q Num) string {
	if l == nil {
		return "–"
	}
	s := fmtSeconds(q)
	if math.IsInf(float64(q), 1) {
		s = fmt.Sprintf("> %s", fmtSeconds(Num(l.Timeout)))
	}
	if l.Missed > 0 {
		s += fmt.Sprintf(" (%d of %d not within %s)", l.Missed, l.N(), fmtSeconds(Num(l.Timeout)))
	}
	return s
}

func ratio(a, b Num) string {
	if !a.Known() || !b.Known() || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", float64(a)/float64(b))
}

func met(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

// Rows is the table of one size: each figure, its goal from issue 12, the
// seed's figure and the ratio.
func Rows(s SizeResult) []Row {
	var rows []Row
	add := func(r Row) { rows = append(rows, r) }
	n := s.Notes

	fa, fs := s.FirstSyncAgent, s.FirstSyncSeed
	add(Row{"first sync, wall", "≥ 2× faster than the seed's --resync (ratio ≤ 0.50)",
		fmtSeconds(fa.Wall), fmtSeconds(fs.Wall) + " (--resync)", ratio(fa.Wall, fs.Wall), met(fa.Wall.Known() && fs.Wall.Known() && fa.Wall <= fs.Wall/2)})
	add(Row{"first sync, S3 requests", "no HEAD after a PUT",
		fa.Requests.String(), fs.Requests.String(), ratio(Num(fa.Requests.Total()), Num(fs.Requests.Total())), met(fa.Requests[ClassHead] <= 5)})
	add(Row{"first sync, peak RSS", "≤ 250 MB (at 50,000 notes)",
		fmt.Sprintf("%.0f MB", float64(fa.PeakRSSMB)), fmt.Sprintf("%.0f MB", float64(fs.PeakRSSMB)), ratio(fa.PeakRSSMB, fs.PeakRSSMB), met(fa.PeakRSSMB <= 250)})

	na, nf := medianPass(s.NoChangeAgent), medianPass(s.NoChangeFastList)
	rounds := len(s.NoChangeAgent)
	add(Row{fmt.Sprintf("no-change pass, wall (median of %d)", rounds), "≤ 0.5× `rclone bisync --fast-list --use-server-modtime`",
		fmtSeconds(na.Wall), fmtSeconds(nf.Wall) + " (--fast-list)", ratio(na.Wall, nf.Wall), met(na.Wall.Known() && nf.Wall.Known() && na.Wall <= nf.Wall/2)})
	limit := int64((n+999)/1000 + 3)
	add(Row{"no-change pass, S3 requests", fmt.Sprintf("≤ ceil(N/1000)+3 = %d", limit),
		na.Requests.String(), nf.Requests.String() + " (--fast-list)", ratio(Num(na.Requests.Total()), Num(nf.Requests.Total())), met(na.Requests.Total() <= limit)})
	ns := s.NoChangeSeed
	add(Row{"no-change pass, against the seed's own command", "",
		fmtSeconds(na.Wall), fmt.Sprintf("%s, %s", fmtSeconds(ns.Wall), ns.Requests), ratio(na.Wall, ns.Wall), ""})

	l := &s.LocalToBucket
	one := s.OneChangeSeed.Wall
	l2b := Num(1.2)
	if n > 10000 {
		l2b = 1.5
	}
	// The seed: a pass, sleep 60 s, repeat. A change waits U(0, 60 s) for
	// the next pass, then that pass's time.
	add(Row{"local → bucket, p50", fmt.Sprintf("≤ %.1f s", float64(l2b)),
		fmtLatency(l, l.P50), fmtSeconds(30+one) + " (model)", ratio(l.P50, 30+one), met(l.P50 <= l2b)})
	add(Row{"local → bucket, p95", "≤ 2 s",
		fmtLatency(l, l.P95), fmtSeconds(57+one) + " (model)", ratio(l.P95, 57+one), met(l.P95 <= 2)})
	eng := Num(Median(s.EditPassEngine))
	add(Row{"one-note pass, engine time (median)", "≤ 150 ms (at 50,000 notes)",
		fmtSeconds(eng), fmtSeconds(one) + " (a fresh process)", ratio(eng, one), met(eng.Known() && eng <= 0.150)})
	er := medianCounts(s.EditRequests)
	add(Row{"one-note pass, S3 requests (median)", "in proportion to the change, not the tree",
		er.String(), s.OneChangeSeed.Requests.String(), ratio(Num(er.Total()), Num(s.OneChangeSeed.Requests.Total())), ""})

	if d := s.DeviceToDevice; d != nil {
		// Two independent loops: U(0,60) + U(0,60) + two passes; the sum
		// of two uniforms has p50 60 s and p95 60·(2-√0.1) s.
		p50, p95 := 60+2*one, Num(60*(2-math.Sqrt(0.1)))+2*one
		add(Row{"device → device, p50", "≤ 1.5 s (at 10,000 notes)",
			fmtLatency(d, d.P50), fmtSeconds(p50) + " (model)", ratio(d.P50, p50), met(d.P50 <= 1.5)})
		add(Row{"device → device, p95", "",
			fmtLatency(d, d.P95), fmtSeconds(p95) + " (model)", ratio(d.P95, p95), ""})
	}
	if p := s.PutToFolder; p != nil {
		add(Row{"object PUT by another S3 client → folder, p50", "≤ 2 s",
			fmtLatency(p, p.P50), fmtSeconds(30+one) + " (model)", ratio(p.P50, 30+one), met(p.P50 <= 2)})
		add(Row{"object PUT by another S3 client → folder, max", "",
			fmtLatency(p, p.Max), fmtSeconds(60+one) + " (model)", ratio(p.Max, 60+one), ""})
	}
	if i := s.Idle; i != nil {
		// The seed's process runs one pass a minute and is gone between.
		seedCPU := Num(100 * float64(s.NoChangeSeed.CPU) / seedInterval.Seconds())
		add(Row{"idle CPU (bm-agent with push live)", "≤ 0.3 % of a core (at 50,000 notes)",
			fmt.Sprintf("%.2f %%", float64(i.CPUPercent)), fmt.Sprintf("%.2f %% (a pass a minute)", float64(seedCPU)), ratio(i.CPUPercent, seedCPU), met(i.CPUPercent <= 0.3)})
		add(Row{"idle resident memory", "≤ 80 MB",
			fmt.Sprintf("%.0f MB (max %.0f)", float64(i.RSSMB), float64(i.MaxRSSMB)), fmt.Sprintf("%.0f MB while its pass runs", float64(s.NoChangeSeed.PeakRSSMB)), "–", met(i.MaxRSSMB <= 80)})
		add(Row{fmt.Sprintf("idle requests (%.0f s)", float64(i.Seconds)), "none that nothing asked for",
			fmt.Sprintf("S3 %s, API %d", i.S3Requests, i.APIRequests),
			fmt.Sprintf("S3 %d a minute", s.NoChangeSeed.Requests.Total()),
			"–", met(i.S3Requests.Total() == 0 && i.APIRequests == 0)})
		add(Row{fmt.Sprintf("idle full passes (%.0f s)", float64(i.Seconds)), "none more often than every 15 min",
			fmt.Sprintf("%d", i.Passes), "one a minute", "–", met(i.Passes == 0)})
	}
	return rows
}

// Markdown is the report as markdown: the machine, how noisy it was, and a
// table per size.
func (rep *Report) Markdown() string {
	var b strings.Builder
	dirty := ""
	if rep.Dirty {
		dirty = " plus uncommitted changes"
	}
	inv := rep.Config.Invocation
	if inv == "" {
		inv = "make " + rep.Mode
	}
	fmt.Fprintf(&b, "Run %s, %s to %s (%s), on %s: %d × %s, %s; commit %s%s; rclone %s.\n\n",
		"`"+inv+"`", rep.Started.Format("2006-01-02 15:04"), rep.Finished.Format("15:04 MST"),
		rep.Finished.Sub(rep.Started).Round(time.Second), rep.Host, rep.Noise.CPUs, rep.CPUModel, rep.GoVersion, rep.Commit, dirty, rep.Rclone)
	b.WriteString(rep.NoiseLine() + "\n")
	for _, s := range rep.Sizes {
		fmt.Fprintf(&b, "\n### %s notes (%.1f MB)\n\n", thousands(s.Notes), float64(s.Bytes)/1e6)
		b.WriteString("| figure | goal (issue 12) | bm-agent | seed's command | bm-agent ÷ seed | goal met |\n")
		b.WriteString("| --- | --- | --- | --- | --- | --- |\n")
		for _, r := range s.Table {
			goal := r.Goal
			if goal == "" {
				goal = "–"
			}
			m := r.Met
			if m == "" {
				m = "–"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.Figure, goal, r.Agent, r.Seed, r.Ratio, m)
		}
		var notes []string
		notes = append(notes, "first syncs ran "+s.FirstSyncOrder)
		if fl := s.FastListBaseline; fl.Wall.Known() {
			notes = append(notes, fmt.Sprintf("the --fast-list command's baseline (--resync --resync-mode path2) took %s, %s requests", fmtSeconds(fl.Wall), fl.Requests))
		}
		if d := s.SecondDeviceFirstSync; d != nil {
			notes = append(notes, fmt.Sprintf("the second daemon's first sync (its folder a copy of the first's) took %s, %s requests", fmtSeconds(d.Wall), d.Requests))
		}
		if s.PushLive != nil {
			if *s.PushLive {
				notes = append(notes, "change events were live (they woke the second daemon)")
			} else {
				notes = append(notes, "no change event woke the second daemon")
			}
		}
		if i := s.Idle; i != nil {
			notes = append(notes, fmt.Sprintf("bm-server used %.2f %% of a core meanwhile", float64(i.ServerCPUPercent)))
		}
		fmt.Fprintf(&b, "\n%s.\n", capitalize(strings.Join(notes, "; ")))
	}
	return b.String()
}

// NoiseLine says in one line how noisy the machine was.
func (rep *Report) NoiseLine() string {
	n := rep.Noise
	var cals []string
	for _, c := range n.CalibrationMS {
		cals = append(cals, fmt.Sprintf("%.0f", float64(c)))
	}
	return fmt.Sprintf("Noise: the calibration loop (SHA-256 of 64 MiB, best of 3) took %s ms from start to end, a spread of %.0f %%; load average %.2f at the start, %.2f at the end; the CPUs were %.0f %% busy and %.1f %% stolen by the hypervisor over the run.",
		strings.Join(cals, ", "), float64(n.CalibrationSpread), float64(n.LoadStart), float64(n.LoadEnd), float64(n.BusyPercent), float64(n.StealPercent))
}

// Text is the report for a terminal: the same tables, aligned.
func (rep *Report) Text() string {
	var b strings.Builder
	for _, s := range rep.Sizes {
		fmt.Fprintf(&b, "\n%s notes\n", thousands(s.Notes))
		w := [5]int{}
		head := Row{"figure", "goal", "bm-agent", "seed", "ratio", "met"}
		all := append([]Row{head}, s.Table...)
		for _, r := range all {
			for i, c := range []string{r.Figure, r.Goal, r.Agent, r.Seed, r.Ratio} {
				w[i] = max(w[i], len([]rune(c)))
			}
		}
		for _, r := range all {
			for i, c := range []string{r.Figure, r.Goal, r.Agent, r.Seed, r.Ratio} {
				fmt.Fprintf(&b, "%s%s  ", c, strings.Repeat(" ", w[i]-len([]rune(c))))
			}
			b.WriteString(r.Met + "\n")
		}
	}
	b.WriteString("\n" + rep.NoiseLine() + "\n")
	return b.String()
}

// WriteJSON writes the report to path.
func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
