package bench

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/internal/testenv"
)

// TestBenchShortRuns runs the whole harness at its smallest (200 notes, a
// few samples) so that `make test` keeps it working. It checks that every
// figure was produced and the files written; it never checks a timing.
func TestBenchShortRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs bm-server, bm-agent and rclone")
	}
	_, err := exec.LookPath("go")
	testenv.Require(t, "the go command", err)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin := t.TempDir()
	if _, err := Build(ctx, bin); err != nil {
		t.Fatal(err)
	}
	cfg := Tiny()
	cfg.Bin, cfg.Log = bin, testLog{t}
	start := time.Now()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the harness ran in %s", time.Since(start).Round(time.Second))
	if len(rep.Sizes) != 1 {
		t.Fatalf("%d sizes in the report, want 1", len(rep.Sizes))
	}
	s := rep.Sizes[0]
	pass := func(name string, p Pass) {
		t.Helper()
		if !(p.Wall > 0) || p.Requests.Total() == 0 {
			t.Errorf("%s: wall %v, %s requests: not measured", name, p.Wall, p.Requests)
		}
	}
	pass("bm-agent first sync", s.FirstSyncAgent)
	pass("seed --resync", s.FirstSyncSeed)
	pass("fast-list baseline", s.FastListBaseline)
	pass("seed's no-change pass", s.NoChangeSeed)
	pass("seed's one-change pass", s.OneChangeSeed)
	if s.FirstSyncAgent.PeakRSSMB <= 0 || s.FirstSyncSeed.PeakRSSMB <= 0 {
		t.Errorf("peak RSS not measured: bm-agent %v MB, seed %v MB", s.FirstSyncAgent.PeakRSSMB, s.FirstSyncSeed.PeakRSSMB)
	}
	for name, ps := range map[string][]Pass{"bm-agent no-change": s.NoChangeAgent, "fast-list no-change": s.NoChangeFastList} {
		if len(ps) != cfg.Rounds {
			t.Errorf("%s: %d rounds, want %d", name, len(ps), cfg.Rounds)
		}
		for _, p := range ps {
			pass(name, p)
		}
	}
	latency := func(name string, l *Latency, want int) {
		t.Helper()
		if l == nil || l.N() != want || math.IsNaN(float64(l.P50)) {
			t.Errorf("%s: %+v, want %d samples", name, l, want)
		}
	}
	latency("local → bucket", &s.LocalToBucket, cfg.Edits)
	latency("device → device", s.DeviceToDevice, cfg.DeviceEdits)
	latency("object PUT → folder", s.PutToFolder, cfg.Puts)
	if len(s.EditRequests) != cfg.Edits || len(s.EditPassEngine) == 0 {
		t.Errorf("one-note passes: %d request counts, %d engine times", len(s.EditRequests), len(s.EditPassEngine))
	}
	if s.SecondDeviceFirstSync == nil || s.SecondDeviceFirstSync.Requests.Total() == 0 || s.PushLive == nil {
		t.Errorf("second daemon: %+v, push live %v", s.SecondDeviceFirstSync, s.PushLive)
	}
	if i := s.Idle; i == nil || !(i.Seconds > 0) || !(i.RSSMB > 0) || !i.CPUPercent.Known() {
		t.Errorf("idle: %+v", i)
	}
	if len(rep.Noise.CalibrationMS) < 3 || !(rep.Noise.CalibrationMS[0] > 0) {
		t.Errorf("noise: %+v", rep.Noise)
	}
	if len(s.Table) < 15 {
		t.Errorf("the table has %d rows", len(s.Table))
	}
	for _, r := range s.Table {
		if r.Agent == "" || r.Agent == "–" || r.Seed == "" || r.Seed == "–" {
			t.Errorf("row %q lacks a figure: %+v", r.Figure, r)
		}
	}

	dir := t.TempDir()
	doc, out := filepath.Join(dir, "BENCHMARKS.md"), filepath.Join(dir, "bench.json")
	if err := rep.WriteJSON(out); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if b, err := os.ReadFile(out); err != nil || json.Unmarshal(b, &back) != nil {
		t.Fatalf("the JSON report does not read back: %v", err)
	}
	if err := WriteDoc(doc, rep); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| figure | goal (issue 12) |", "### 200 notes", "Noise:", "local → bucket, p50", beginMarker("bench")} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the doc lacks %q", want)
		}
	}
	t.Log("\n" + rep.Text())
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestClassify(t *testing.T) {
	for _, c := range []struct{ method, target, want string }{
		{"GET", "/bucket?list-type=2&prefix=a", ClassList},
		{"GET", "/bucket/", ClassList},
		{"GET", "/", ClassList},
		{"GET", "/bucket?location", ClassOther},
		{"GET", "/bucket/a/b.md", ClassGet},
		{"HEAD", "/bucket/a.md", ClassHead},
		{"HEAD", "/bucket", ClassHead},
		{"PUT", "/bucket/a.md", ClassPut},
		{"DELETE", "/bucket/a.md", ClassDelete},
		{"POST", "/bucket?delete", ClassPost},
		{"PATCH", "/bucket/a.md", ClassOther},
	} {
		r, _ := http.NewRequest(c.method, "http://127.0.0.1:1"+c.target, nil)
		if got := Classify(r); got != c.want {
			t.Errorf("%s %s: %s, want %s", c.method, c.target, got, c.want)
		}
	}
}

func TestAccessKey(t *testing.T) {
	r, _ := http.NewRequest("GET", "http://127.0.0.1:1/b/k", nil)
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=abc")
	if got := AccessKey(r); got != "AKIDEXAMPLE" {
		t.Errorf("header: %q", got)
	}
	r, _ = http.NewRequest("GET", "http://127.0.0.1:1/b/k?X-Amz-Credential=AKIDQUERY%2F20250101%2Fus-east-1%2Fs3%2Faws4_request", nil)
	if got := AccessKey(r); got != "AKIDQUERY" {
		t.Errorf("presigned: %q", got)
	}
	r, _ = http.NewRequest("GET", "http://127.0.0.1:1/b/k", nil)
	if got := AccessKey(r); got != "" {
		t.Errorf("anonymous: %q", got)
	}
}

func TestCounts(t *testing.T) {
	c := Counts{ClassList: 11, ClassHead: 10000, ClassPut: 3}
	if got, want := c.String(), "10014 (LIST 11, HEAD 10000, PUT 3)"; got != want {
		t.Errorf("String: %q, want %q", got, want)
	}
	d := c.Sub(Counts{ClassList: 10, ClassHead: 10000})
	if d.Total() != 4 || d[ClassList] != 1 || d[ClassPut] != 3 {
		t.Errorf("Sub: %v", d)
	}
	if Counts(nil).String() != "0" {
		t.Errorf("empty: %q", Counts(nil).String())
	}
}

func TestQuantile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	if Median(xs) != 3 || Quantile(xs, 0.95) != 5 || Quantile(xs, 0) != 1 {
		t.Errorf("median %v p95 %v p0 %v", Median(xs), Quantile(xs, 0.95), Quantile(xs, 0))
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("the median of nothing is a number")
	}
	var l Latency
	l.add(time.Second, true, 10*time.Second)
	l.add(0, false, 10*time.Second)
	l.add(0, false, 10*time.Second)
	l.finish()
	if !math.IsInf(float64(l.P50), 1) || l.N() != 3 {
		t.Errorf("a median over missed samples: %+v", l)
	}
	if b, err := json.Marshal(l); err != nil || !strings.Contains(string(b), `"p50_s":null`) {
		t.Errorf("JSON: %s %v", b, err)
	}
	if got := fmtLatency(&l, l.P50); got != "> 10.0 s (2 of 3 not within 10.0 s)" {
		t.Errorf("fmtLatency: %q", got)
	}
}

func TestGenerateTreeIsDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	na, err1 := GenerateTree(250, a)
	nb, err2 := GenerateTree(250, b)
	if err1 != nil || err2 != nil || na != nb || na < 250*200 {
		t.Fatalf("%d and %d bytes: %v %v", na, nb, err1, err2)
	}
	for _, i := range []int{0, 99, 100, 249} {
		p := filepath.FromSlash(NotePath(i))
		x, _ := os.ReadFile(filepath.Join(a, p))
		y, _ := os.ReadFile(filepath.Join(b, p))
		sx, _ := os.Stat(filepath.Join(a, p))
		sy, _ := os.Stat(filepath.Join(b, p))
		if string(x) != string(y) || len(x) == 0 || !sx.ModTime().Equal(sy.ModTime()) {
			t.Errorf("note %d differs between two trees", i)
		}
	}
	if NotePath(12345) != "area-02/topic-023/note-12345.md" {
		t.Errorf("NotePath: %s", NotePath(12345))
	}
}

func TestWriteDocReplacesItsSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "B.md")
	rep := &Report{Mode: "bench-short", Started: time.Now(), Finished: time.Now()}
	if err := WriteDoc(path, rep); err != nil {
		t.Fatal(err)
	}
	rep.Host = "second-run-host"
	if err := WriteDoc(path, rep); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	doc := string(b)
	if strings.Count(doc, beginMarker("bench-short")) != 1 || strings.Count(doc, "Noise:") != 1 || !strings.Contains(doc, "second-run-host") {
		t.Errorf("the section was not replaced:\n%s", doc)
	}
	if !strings.Contains(doc, beginMarker("bench")+"\nNot run yet.") || !strings.HasPrefix(doc, "# Benchmarks") {
		t.Errorf("the other section or the header is missing:\n%s", doc)
	}
}
