package syncer

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Scenario tests in the spirit of rclone's bisync tests: each folder under
// testdata/scenarios holds
//
//	local/, cloud/          the initial trees (either may be absent)
//	scenario.txt            the steps (see runStep)
//	want/                   the expected end state of both sides, or
//	want-local/, want-cloud/ when the sides are expected to differ
//
// A file whose whole content is "@big <MiB>" stands for that many MiB of
// bytes generated from its path. Conflict file names are compared with
// their time stamp replaced by STAMP.
func TestScenarios(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "scenarios", "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	// multipart uploads above 1 MiB (rclone's minimum part is 5 MiB)
	old := testUploadCutoff
	testUploadCutoff = "1Mi"
	t.Cleanup(func() { testUploadCutoff = old })
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) { runScenario(t, dir) })
	}
}

type scenario struct {
	dir   string
	s3    *embedS3
	p     *pair
	root  string // the notes folder
	work  string
	prof  Profile
	steps int
}

func runScenario(t *testing.T, dir string) {
	s3 := newEmbedS3(t)
	base := t.TempDir()
	sc := &scenario{dir: dir, s3: s3, root: filepath.Join(base, "notes"), work: filepath.Join(base, "state")}
	if err := os.Mkdir(sc.root, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range readTree(t, filepath.Join(dir, "local")) {
		writeLocal(t, sc.root, name, body)
	}
	for name, body := range readTree(t, filepath.Join(dir, "cloud")) {
		s3.put(t, name, body)
	}
	f, err := os.Open(filepath.Join(dir, "scenario.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc.prof = ProfileBalanced
	sc.p = nil
	scan := bufio.NewScanner(f)
	line := 0
	for scan.Scan() {
		line++
		text := strings.TrimSpace(scan.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		args, err := splitArgs(text)
		if err != nil {
			t.Fatalf("scenario.txt:%d: %v", line, err)
		}
		sc.runStep(t, line, args)
	}

	local, cloud := normalize(treeFiles(t, sc.root)), normalize(s3.files(t))
	if want := readTree(t, filepath.Join(dir, "want")); want != nil {
		assertTree(t, "local", local, want)
		assertTree(t, "cloud", cloud, want)
	} else {
		assertTree(t, "local", local, readTree(t, filepath.Join(dir, "want-local")))
		assertTree(t, "cloud", cloud, readTree(t, filepath.Join(dir, "want-cloud")))
	}
	if t.Failed() && sc.p != nil {
		t.Logf("engine log:\n%s", sc.p.logs.String())
	}
}

func (sc *scenario) engine(t *testing.T) *pair {
	if sc.p == nil {
		sc.p = newEmbedPairAt(t, sc.s3, sc.root, sc.work, "laptop", sc.prof)
	}
	return sc.p
}

// runStep runs one line of scenario.txt:
//
//	profile <safe|balanced|fast>          the engine's profile (before the first pass)
//	pass [key=value|force|dryrun|resync]  a pass; checks err=<ErrName>, resync=, reason=<substring>,
//	                                      uploaded=, downloaded=, deleted_local=, deleted_remote=,
//	                                      conflicts=; profile=<name> for this pass
//	local|cloud write <path> <content>    create or change a file
//	local big <path> <MiB>                a generated file of that size
//	local|cloud delete <path>
//	local|cloud rename <from> <to>
//	local append|unappend <path> <line>   add or remove a line (for .bmignore)
//	local rmroot                          remove the notes folder
//	sleep <duration>
func (sc *scenario) runStep(t *testing.T, line int, args []string) {
	t.Helper()
	fail := func(format string, a ...any) {
		t.Helper()
		t.Fatalf("scenario.txt:%d %q: %s", line, strings.Join(args, " "), fmt.Sprintf(format, a...))
	}
	need := func(n int) {
		if len(args) < n {
			fail("want %d arguments", n)
		}
	}
	switch args[0] {
	case "profile":
		need(2)
		sc.prof = Profile(args[1])
	case "sleep":
		need(2)
		d, err := time.ParseDuration(args[1])
		if err != nil {
			fail("%v", err)
		}
		time.Sleep(d)
	case "pass":
		sc.pass(t, args[1:], fail)
	case "local":
		need(2)
		sc.localStep(t, args[1:], need, fail)
	case "cloud":
		need(3)
		switch args[1] {
		case "write":
			need(4)
			sc.s3.put(t, args[2], []byte(strings.Join(args[3:], " ")+"\n"))
		case "delete":
			sc.s3.del(t, args[2])
		case "rename":
			need(4)
			sc.s3.rename(t, args[2], args[3])
		default:
			fail("unknown cloud step")
		}
	default:
		fail("unknown step")
	}
}

func (sc *scenario) localStep(t *testing.T, args []string, need func(int), fail func(string, ...any)) {
	t.Helper()
	path := func(i int) string { return filepath.Join(sc.root, filepath.FromSlash(args[i])) }
	var err error
	switch args[0] {
	case "write":
		need(4)
		writeLocal(t, sc.root, args[1], []byte(strings.Join(args[2:], " ")+"\n"))
	case "big":
		need(4)
		n, _ := strconv.Atoi(args[2])
		writeLocal(t, sc.root, args[1], bigBody(args[1], n))
	case "delete":
		need(3)
		err = os.Remove(path(1))
	case "rename":
		need(4)
		if err = os.MkdirAll(filepath.Dir(path(2)), 0o755); err == nil {
			err = os.Rename(path(1), path(2))
		}
	case "append", "unappend":
		need(4)
		var b []byte
		if b, err = os.ReadFile(path(1)); err != nil {
			break
		}
		text := strings.Join(args[2:], " ")
		if args[0] == "append" {
			b = append(b, []byte(text+"\n")...)
		} else {
			b = []byte(strings.Replace(string(b), text+"\n", "", 1))
		}
		err = os.WriteFile(path(1), b, 0o644)
	case "rmroot":
		err = os.RemoveAll(sc.root)
	default:
		fail("unknown local step")
	}
	if err != nil {
		fail("%v", err)
	}
}

var typedErrors = map[string]error{
	"ErrLocalRootMissing":  ErrLocalRootMissing,
	"ErrLocalRootEmpty":    ErrLocalRootEmpty,
	"ErrMaxDeleteExceeded": ErrMaxDeleteExceeded,
	"ErrAccessCheckFailed": ErrAccessCheckFailed,
	"ErrResyncRequired":    ErrResyncRequired,
}

func (sc *scenario) pass(t *testing.T, args []string, fail func(string, ...any)) {
	t.Helper()
	p := sc.engine(t)
	var opt PassOptions
	want := map[string]string{}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "force":
			opt.Force = true
		case "dryrun":
			opt.DryRun = true
		case "resync":
			if v == "" {
				opt.Resync = true
			} else {
				want[k] = v
			}
		case "profile":
			opt.Profile = Profile(v)
		default:
			want[k] = v
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := p.engine.Pass(ctx, opt)
	sc.steps++
	if name, ok := want["err"]; ok {
		if !errors.Is(err, typedErrors[name]) {
			fail("err = %v, want %s", err, name)
		}
	} else if err != nil {
		t.Logf("log:\n%s", p.logs.String())
		fail("pass: %v", err)
	}
	got := map[string]string{
		"resync":         strconv.FormatBool(res.Resync),
		"uploaded":       strconv.Itoa(res.Uploaded),
		"downloaded":     strconv.Itoa(res.Downloaded),
		"deleted_local":  strconv.Itoa(res.DeletedLocal),
		"deleted_remote": strconv.Itoa(res.DeletedRemote),
		"conflicts":      strconv.Itoa(res.Conflicts),
	}
	for k, v := range want {
		switch k {
		case "err":
		case "reason":
			if !strings.Contains(res.ResyncReason, v) {
				fail("resync reason %q, want %q in it", res.ResyncReason, v)
			}
		default:
			g, ok := got[k]
			if !ok {
				fail("unknown check %q", k)
			}
			if g != v {
				fail("%s = %s, want %s (result %+v)", k, g, v, res)
			}
		}
	}
}

// splitArgs splits on spaces; "double quotes" group (with Go escapes).
func splitArgs(s string) ([]string, error) {
	var out []string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		if s[0] == '"' {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, err
			}
			u, _ := strconv.Unquote(q)
			out = append(out, u)
			s = s[len(q):]
			continue
		}
		i := strings.IndexByte(s, ' ')
		if i < 0 {
			i = len(s)
		}
		out = append(out, s[:i])
		s = s[i:]
	}
	return out, nil
}

func writeLocal(t testing.TB, root, name string, body []byte) {
	t.Helper()
	path := filepath.Join(root, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := os.Chtimes(path, now, now); err != nil {
		t.Fatal(err)
	}
}

// bigBody is n MiB of bytes generated from name.
func bigBody(name string, n int) []byte {
	seed := sha256.Sum256([]byte(name))
	r := rand.New(rand.NewChaCha8(seed))
	b := make([]byte, n<<20)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// readTree reads a testdata tree (nil if absent), expanding "@big" files.
func readTree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	if _, err := os.Stat(root); err != nil {
		return nil
	}
	out := map[string][]byte{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		b, err := os.ReadFile(path)
		if n, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "@big "); ok {
			mib, _ := strconv.Atoi(n)
			b = bigBody(rel, mib)
		}
		out[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var stampPattern = regexp.MustCompile(`\.conflict-\d{8}-\d{6}-`)

func normalize(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[stampPattern.ReplaceAllString(k, ".conflict-STAMP-")] = v
	}
	return out
}

func assertTree(t *testing.T, side string, got map[string]string, want map[string][]byte) {
	t.Helper()
	w := map[string]string{}
	for k, v := range want {
		if len(v) > 64<<10 {
			v = []byte(fmt.Sprintf("sha256:%x", sha256.Sum256(v)))
		}
		w[k] = string(v)
	}
	var gk, wk []string
	for k := range got {
		gk = append(gk, k)
	}
	for k := range w {
		wk = append(wk, k)
	}
	sort.Strings(gk)
	sort.Strings(wk)
	if strings.Join(gk, "\n") != strings.Join(wk, "\n") {
		t.Errorf("%s has\n  %s\nwant\n  %s", side, strings.Join(gk, "\n  "), strings.Join(wk, "\n  "))
		return
	}
	for k, v := range w {
		if got[k] != v {
			t.Errorf("%s %q = %.80q, want %.80q", side, k, got[k], v)
		}
	}
}
