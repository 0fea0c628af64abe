package syncer

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/rclone/rclone/cmd/bisync"
)

// otherClient is another S3 client of the pair's bucket (not rclone, not
// the engine): what a second device, a script or a web upload would be.
type otherClient struct {
	c      *s3.Client
	bucket string
}

func newOtherClient(e *embedS3) otherClient {
	return otherClient{c: newS3Client(e.remote(), time.Minute, 3), bucket: testBucket}
}

func (o otherClient) put(t testing.TB, key, body string) {
	t.Helper()
	_, err := o.c.PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(o.bucket), Key: aws.String(key), Body: strings.NewReader(body),
	})
	if err != nil {
		t.Fatalf("other client: put %s: %v", key, err)
	}
}

func (o otherClient) del(t testing.TB, key string) {
	t.Helper()
	_, err := o.c.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(o.bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("other client: delete %s: %v", key, err)
	}
}

// steadyPair is a pair over the embedded S3 endpoint with n notes synced,
// whose last pass found no change without running bisync; want is what
// both sides hold.
func steadyPair(t *testing.T, profile Profile, n int) (*embedS3, *pair, map[string]string) {
	t.Helper()
	s3 := newEmbedS3(t)
	p := newEmbedPair(t, s3, "laptop", profile)
	want := map[string]string{}
	for i := range n {
		name := fmt.Sprintf("d%d/note-%02d.md", i%3, i)
		body := fmt.Sprintf("note %02d, first version", i)
		p.write(t, name, body)
		want[name] = body
	}
	p.write(t, "scratch.tmp", "ignored by the default .bmignore")
	for i := 0; ; i++ {
		runs := p.engine.bisyncRuns.Load()
		res := p.pass(t, PassOptions{Trigger: "setup"})
		if res.Unchanged {
			if p.engine.bisyncRuns.Load() != runs {
				t.Fatalf("setup: a pass that found no change ran bisync")
			}
			break
		}
		if i == 3 {
			t.Fatalf("setup: no pass found the pair unchanged after %d passes; log:\n%s", i+1, p.logs.String())
		}
	}
	if profile == ProfileSafe {
		want[AccessCheckFile] = accessCheckBody
	}
	assertSides(t, s3, p, want, "after setup")
	return s3, p, want
}

// assertSides checks that the folder and the bucket both hold want.
func assertSides(t *testing.T, s3 *embedS3, p *pair, want map[string]string, when string) {
	t.Helper()
	local := p.files(t)
	delete(local, "scratch.tmp") // ignored: never in the bucket
	if !maps.Equal(local, want) {
		t.Errorf("%s: the folder holds\n%v\nwant\n%v", when, local, want)
	}
	if cloud := s3.files(t); !maps.Equal(cloud, want) {
		t.Errorf("%s: the bucket holds\n%v\nwant\n%v", when, cloud, want)
	}
}

// editSameSize writes body (of the file's size) over the file at path and
// gives it the modtime at makes of its old one; it returns the old and
// the new modtime as the file system keeps them.
func editSameSize(t *testing.T, path, body string, at func(was time.Time) time.Time) (was, now time.Time) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != int64(len(body)) {
		t.Fatalf("edit of %s: %d bytes over %d", path, len(body), st.Size())
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	setMtime(t, path, at(st.ModTime()))
	st2, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.ModTime(), st2.ModTime()
}

// sameSecond is another moment of the same second as was.
func sameSecond(was time.Time) time.Time {
	return was.Truncate(time.Second).Add(time.Duration((was.Nanosecond() + 500_000_000) % 1_000_000_000))
}

// setMtime sets a local file's modtime.
func setMtime(t *testing.T, path string, at time.Time) {
	t.Helper()
	if err := os.Chtimes(path, at, at); err != nil {
		t.Fatal(err)
	}
}

// TestUnchangedPassSkipsBisync: a full pass over a tree that changed on
// neither side since the last pass does not run bisync, lists the bucket
// once (a LIST per 1,000 keys, besides the reachability probes), leaves
// both listings as they were, and is reported as a pass that did nothing.
func TestUnchangedPassSkipsBisync(t *testing.T) {
	const n = 2100
	s3 := newEmbedS3Seeded(t, func(dir string) { makeNotes(t, dir, n) })
	p := newEmbedPair(t, s3, "laptop", ProfileBalanced)
	makeNotes(t, p.local, n)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := p.engine.Pass(ctx, PassOptions{Trigger: "baseline"}); err != nil {
		t.Fatalf("baseline: %v", err)
	}
	listings := func() [2][]byte {
		var out [2][]byte
		for i, l := range []string{p.engine.listing1, p.engine.listing2} {
			b, err := os.ReadFile(l)
			if err != nil {
				t.Fatal(err)
			}
			out[i] = b
		}
		return out
	}
	for i := range 2 {
		before := listings()
		runs := p.engine.bisyncRuns.Load()
		s3.srv.ResetStats()
		start := time.Now()
		res, err := p.engine.Pass(ctx, PassOptions{Trigger: "interval"})
		took := time.Since(start)
		if err != nil {
			t.Fatalf("pass %d: %v", i, err)
		}
		st := s3.srv.Stats()
		t.Logf("no-change pass %d over %d notes: %d requests %v in %s", i, n, st["total"], st, took)
		if !res.Unchanged || p.engine.bisyncRuns.Load() != runs {
			t.Fatalf("pass %d: unchanged=%v, bisync runs %d -> %d; want a pass that skips bisync; log:\n%s",
				i, res.Unchanged, runs, p.engine.bisyncRuns.Load(), p.logs.String())
		}
		if res.Resync || res.Quick || res.Skipped != "" || res.Uploaded+res.Downloaded+res.DeletedLocal+res.DeletedRemote+res.Conflicts != 0 ||
			res.RemoteChanged || res.LocalChanged || len(res.Plan) != 0 || len(res.Failures) != 0 {
			t.Errorf("pass %d is not a plain no-change pass: %+v", i, res)
		}
		// the listing pages, the pass's probe, and the reachability
		// watch's probes (one per probeEvery while the pass runs)
		pages := int64(math.Ceil(n / 1000.0))
		if limit := pages + 3 + int64(took/probeEvery); st["total"] > limit {
			t.Errorf("pass %d made %d requests, want <= %d: %v", i, st["total"], limit, st)
		}
		if st["ListObjectsV2"] < pages || st["ListObjectsV2"] != st["total"] {
			t.Errorf("pass %d: requests %v, want the bucket's %d listing pages and nothing but listings", i, st, pages)
		}
		if after := listings(); !bytes.Equal(after[0], before[0]) || !bytes.Equal(after[1], before[1]) {
			t.Errorf("pass %d rewrote the listings", i)
		}
	}

	// what the caller records of it (history, state, the last sync) is
	// what it records of a pass in which bisync found no change
	p.engine.noUnchangedCheck = true
	withBisync, err := p.engine.Pass(ctx, PassOptions{Trigger: "interval"})
	p.engine.noUnchangedCheck = false
	if err != nil {
		t.Fatal(err)
	}
	skipped, err := p.engine.Pass(ctx, PassOptions{Trigger: "interval"})
	if err != nil || !skipped.Unchanged {
		t.Fatalf("pass after bisync's: unchanged=%v, %v", skipped.Unchanged, err)
	}
	for _, r := range []*Result{&withBisync, &skipped} {
		r.Start, r.Duration, r.Unchanged = time.Time{}, 0, false
	}
	if !reflect.DeepEqual(withBisync, skipped) {
		t.Errorf("a pass that skipped bisync = %+v\nwant what bisync's no-change pass gives: %+v", skipped, withBisync)
	}
}

// TestUnchangedPassRunsOnChange: each kind of change on either side, and
// each thing that casts doubt on the listings, makes the full pass run
// bisync, and the change syncs; the pass after is a no-change one again.
func TestUnchangedPassRunsOnChange(t *testing.T) {
	const victim = "d1/note-04.md"
	for _, tt := range []struct {
		name   string
		change func(t *testing.T, s3 *embedS3, p *pair, want map[string]string)
		resync bool // the change makes the pass a safe resync
	}{
		{"local edit, same size, same second", func(t *testing.T, _ *embedS3, p *pair, want map[string]string) {
			body := strings.Replace(want[victim], "first", "FIRST", 1)
			was, now := editSameSize(t, filepath.Join(p.local, filepath.FromSlash(victim)), body, sameSecond)
			if now.Equal(was) {
				t.Skip("this file system keeps whole seconds: the edit cannot be told by its modtime")
			}
			want[victim] = body
		}, false},
		{"local edit, same size, modtime a microsecond later", func(t *testing.T, _ *embedS3, p *pair, want map[string]string) {
			body := strings.Replace(want[victim], "first", "fIrst", 1)
			was, now := editSameSize(t, filepath.Join(p.local, filepath.FromSlash(victim)), body,
				func(was time.Time) time.Time { return was.Add(time.Microsecond) })
			if !now.Equal(was.Add(time.Microsecond)) {
				t.Skip("this file system does not keep microseconds")
			}
			want[victim] = body
		}, false},
		{"local create", func(t *testing.T, _ *embedS3, p *pair, want map[string]string) {
			p.write(t, "d2/new.md", "made here")
			want["d2/new.md"] = "made here"
		}, false},
		{"local delete", func(t *testing.T, _ *embedS3, p *pair, want map[string]string) {
			if err := os.Remove(filepath.Join(p.local, filepath.FromSlash(victim))); err != nil {
				t.Fatal(err)
			}
			delete(want, victim)
		}, false},
		{"local rename", func(t *testing.T, _ *embedS3, p *pair, want map[string]string) {
			to := "d0/renamed.md"
			if err := os.Rename(filepath.Join(p.local, filepath.FromSlash(victim)), filepath.Join(p.local, filepath.FromSlash(to))); err != nil {
				t.Fatal(err)
			}
			want[to] = want[victim]
			delete(want, victim)
		}, false},
		{"local file the filters file excludes, then a local create", func(t *testing.T, _ *embedS3, p *pair, want map[string]string) {
			p.write(t, "d0/half-done.md"+PartialSuffix, "a download in progress")
			runs := p.engine.bisyncRuns.Load()
			if res := p.pass(t, PassOptions{}); !res.Unchanged || p.engine.bisyncRuns.Load() != runs {
				t.Errorf("a file bisync's filters exclude made the pass run bisync")
			}
			if err := os.Remove(filepath.Join(p.local, "d0", "half-done.md"+PartialSuffix)); err != nil {
				t.Fatal(err)
			}
			p.write(t, "d2/new.md", "made here")
			want["d2/new.md"] = "made here"
		}, false},
		{"local touch, content the same", func(t *testing.T, _ *embedS3, p *pair, want map[string]string) {
			setMtime(t, filepath.Join(p.local, filepath.FromSlash(victim)), time.Now().Add(time.Second))
		}, false},
		{"remote create by another client", func(t *testing.T, s3 *embedS3, _ *pair, want map[string]string) {
			newOtherClient(s3).put(t, "d2/from-web.md", "uploaded elsewhere")
			want["d2/from-web.md"] = "uploaded elsewhere"
		}, false},
		{"remote edit by another client, same size", func(t *testing.T, s3 *embedS3, _ *pair, want map[string]string) {
			body := strings.Replace(want[victim], "first", "other", 1)
			newOtherClient(s3).put(t, victim, body)
			want[victim] = body
		}, false},
		{"remote delete by another client", func(t *testing.T, s3 *embedS3, _ *pair, want map[string]string) {
			newOtherClient(s3).del(t, victim)
			delete(want, victim)
		}, false},
		{"remote rename", func(t *testing.T, s3 *embedS3, _ *pair, want map[string]string) {
			s3.rename(t, victim, "d0/moved.md")
			want["d0/moved.md"] = want[victim]
			delete(want, victim)
		}, false},
		{".bmignore change", func(t *testing.T, _ *embedS3, p *pair, want map[string]string) {
			path := filepath.Join(p.local, IgnoreFile)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, append(b, "!/keep.tmp\n"...), 0o644); err != nil {
				t.Fatal(err)
			}
			p.write(t, "keep.tmp", "no longer ignored")
			want["keep.tmp"] = "no longer ignored"
		}, true},
		{"path1 listing missing, a remote create", func(t *testing.T, s3 *embedS3, p *pair, want map[string]string) {
			if err := os.Remove(p.engine.listing1); err != nil {
				t.Fatal(err)
			}
			newOtherClient(s3).put(t, "d2/from-web.md", "uploaded elsewhere")
			want["d2/from-web.md"] = "uploaded elsewhere"
		}, true},
		{"path2 listing missing", func(t *testing.T, _ *embedS3, p *pair, _ map[string]string) {
			if err := os.Remove(p.engine.listing2); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"a listing line corrupt", func(t *testing.T, _ *embedS3, p *pair, _ map[string]string) {
			editFile(t, p.engine.listing2, func(s string) string {
				lines := strings.SplitAfter(s, "\n")
				lines[3] = "- garbage\n"
				return strings.Join(lines, "")
			})
		}, false},
		{"a listing truncated", func(t *testing.T, _ *embedS3, p *pair, _ map[string]string) {
			editFile(t, p.engine.listing1, func(s string) string { return s[:len(s)-7] })
		}, false},
		{"a listing of another format version", func(t *testing.T, _ *embedS3, p *pair, _ map[string]string) {
			editFile(t, p.engine.listing1, func(s string) string { return strings.Replace(s, " v1 ", " v2 ", 1) })
		}, false},
		{"a listing line twice", func(t *testing.T, _ *embedS3, p *pair, _ map[string]string) {
			editFile(t, p.engine.listing2, func(s string) string {
				lines := strings.SplitAfter(s, "\n")
				return s + lines[2]
			})
		}, false},
		{"a listing an aborted run left", func(t *testing.T, _ *embedS3, p *pair, _ map[string]string) {
			if err := os.WriteFile(p.engine.listing1+"-new", []byte("# left over\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"filters file hash changed", func(t *testing.T, _ *embedS3, p *pair, _ map[string]string) {
			path := filepath.Join(p.engine.cfg.WorkDir, filtersFileName+".md5")
			if err := os.WriteFile(path, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s3, p, want := steadyPair(t, ProfileBalanced, 12)
			tt.change(t, s3, p, want)
			runs := p.engine.bisyncRuns.Load()
			res := p.pass(t, PassOptions{Trigger: "interval"})
			if res.Unchanged || p.engine.bisyncRuns.Load() == runs {
				t.Fatalf("the pass after the change skipped bisync (unchanged=%v); log:\n%s", res.Unchanged, p.logs.String())
			}
			if res.Resync != tt.resync {
				t.Errorf("resync = %v (%s), want %v", res.Resync, res.ResyncReason, tt.resync)
			}
			assertSides(t, s3, p, want, "after the change's pass")
			// then steady again: a pass that finds nothing, without bisync
			steady := false
			for range 2 {
				runs = p.engine.bisyncRuns.Load()
				res := p.pass(t, PassOptions{Trigger: "interval"})
				if res.Unchanged {
					if p.engine.bisyncRuns.Load() != runs {
						t.Errorf("a pass reported unchanged ran bisync")
					}
					steady = true
					break
				}
			}
			if !steady {
				t.Errorf("two passes after the change's pass ran bisync still; log:\n%s", p.logs.String())
			}
			assertSides(t, s3, p, want, "after the next passes")
		})
	}
}

// TestUnchangedPassAccessCheck: in the safe profile (access check files)
// the no-change check holds as in the others, and a side whose check
// file is gone makes the pass run bisync, which stops on it.
func TestUnchangedPassAccessCheck(t *testing.T) {
	_, p, _ := steadyPair(t, ProfileSafe, 12)
	if err := os.Remove(filepath.Join(p.local, AccessCheckFile)); err != nil {
		t.Fatal(err)
	}
	runs := p.engine.bisyncRuns.Load()
	_, err := p.engine.Pass(context.Background(), PassOptions{})
	if p.engine.bisyncRuns.Load() == runs {
		t.Fatalf("the pass skipped bisync with the access check file gone (err %v)", err)
	}
	if err == nil || !strings.Contains(err.Error(), "access") {
		t.Errorf("pass = %v, want the access check's failure", err)
	}
	if accessCheckPasses([]string{"a.md"}, []string{"a.md"}) || accessCheckPasses([]string{AccessCheckFile}, []string{"a.md"}) ||
		!accessCheckPasses([]string{AccessCheckFile, "x/" + AccessCheckFile}, []string{"x/" + AccessCheckFile, AccessCheckFile}) {
		t.Errorf("accessCheckPasses is not bisync's check")
	}
}

// TestListingLineIsBisyncs: the line the no-change check expects for a
// file is the one bisync's fileList.save writes (its format, with no hash
// and no ID), whatever the name and size.
func TestListingLineIsBisyncs(t *testing.T) {
	const bisyncLineFormat = "%s %8d %s %s %s %q\n" // cmd/bisync/listing.go
	at := time.Date(2026, 12, 3, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))
	for _, name := range []string{"a.md", `dir/say "hi".md`, "ü/ß 日本.md", "tab\there.md", "line\nbreak.md", "bad\xffutf8.md", `back\slash.md`} {
		for _, size := range []int64{0, 7, 12345678, 123456789012, -1} {
			want := fmt.Sprintf(bisyncLineFormat, "-", size, "-", "-", at.In(bisync.TZ).Format(listingTimeFormat), name)
			if got := listingLine1(name, size, at) + "\n"; got != want {
				t.Errorf("listingLine1(%q, %d) = %q, want %q", name, size, got, want)
			}
		}
	}
}

// TestRulesLead: the engine's own filters file leads its ignore rules
// (so the no-change check may leave the file's filter to the guards);
// a file with a rule of its own does not.
func TestRulesLead(t *testing.T) {
	dir := t.TempDir()
	m, err := newIgnoreMatcher(filterRules(DefaultIgnore))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		file []byte
		want bool
	}{
		{"the engine's", bisyncFilters(DefaultIgnore), true},
		{"with CRLF and blank lines", bytes.ReplaceAll(append([]byte("\n; a comment\n"), bisyncFilters(DefaultIgnore)...), []byte("\n"), []byte("\r\n")), true},
		{"a rule more", append(bisyncFilters(DefaultIgnore), "- *.md\n"...), false},
		{"a rule less", bytes.Replace(bisyncFilters(DefaultIgnore), []byte("- /"+IgnoreFile+"\n"), nil, 1), false},
		{"another order", []byte(strings.Join([]string{filterHeader[2], filterHeader[1]}, "\n")), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "filters")
			if err := os.WriteFile(path, tt.file, 0o600); err != nil {
				t.Fatal(err)
			}
			if got := rulesLead(path, m); got != tt.want {
				t.Errorf("rulesLead = %v, want %v", got, tt.want)
			}
		})
	}
	if rulesLead(filepath.Join(dir, "missing"), m) || rulesLead(filepath.Join(dir, "filters"), nil) {
		t.Errorf("rulesLead of a missing file or no matcher = true")
	}
}

func editFile(t *testing.T, path string, edit func(string) string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(edit(string(b))), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestUnchangedPassLedger: a run of random edits on both sides (creates,
// same-size edits within the same second, deletes, renames here; creates,
// edits and deletes by another S3 client there), each step followed by a
// pass, with steps that change nothing between: after every pass both
// sides hold exactly the ledger of what was written last, nothing is
// lost, and the steps without a change are the ones bisync did not run.
func TestUnchangedPassLedger(t *testing.T) {
	s3, p, want := steadyPair(t, ProfileBalanced, 15)
	other := newOtherClient(s3)
	rng := rand.New(rand.NewPCG(12, 2026))
	names := func() []string { return slices.Sorted(maps.Keys(want)) }
	next := 0
	fresh := func() string { next++; return fmt.Sprintf("d%d/made-%03d.md", next%4, next) }
	skipped, ran := 0, 0
	for step := range 40 {
		touched := map[string]bool{}
		pick := func() (string, bool) {
			all := names()
			for range 10 {
				if len(all) == 0 {
					break
				}
				n := all[rng.IntN(len(all))]
				if !touched[n] {
					touched[n] = true
					return n, true
				}
			}
			return "", false
		}
		ops := 0
		if step%3 != 0 { // every third step changes nothing
			ops = 1 + rng.IntN(3)
		}
		var did []string
		create := func(side string, write func(name, body string)) {
			n := fresh()
			touched[n] = true
			body := fmt.Sprintf("%s %d", side, step)
			write(n, body)
			want[n] = body
			did = append(did, side+" create "+n)
		}
		for range ops {
			switch rng.IntN(7) {
			case 0:
				create("local", func(n, body string) { p.write(t, n, body) })
			case 1: // local edit, same size, same second
				n, ok := pick()
				if !ok {
					continue
				}
				body := []byte(want[n])
				body[0] ^= 0x20 // same size, another letter case
				editSameSize(t, filepath.Join(p.local, filepath.FromSlash(n)), string(body), sameSecond)
				want[n] = string(body)
				did = append(did, "local same-size edit "+n)
			case 2: // local delete
				n, ok := pick()
				if !ok {
					continue
				}
				if err := os.Remove(filepath.Join(p.local, filepath.FromSlash(n))); err != nil {
					t.Fatal(err)
				}
				delete(want, n)
				did = append(did, "local delete "+n)
			case 3: // local rename
				n, ok := pick()
				if !ok {
					continue
				}
				to := fresh()
				touched[to] = true
				path := filepath.Join(p.local, filepath.FromSlash(to))
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(filepath.Join(p.local, filepath.FromSlash(n)), path); err != nil {
					t.Fatal(err)
				}
				want[to] = want[n]
				delete(want, n)
				did = append(did, "local rename "+n+" "+to)
			case 4:
				create("remote", func(n, body string) { other.put(t, n, body) })
			case 5: // remote edit, same size
				n, ok := pick()
				if !ok {
					continue
				}
				body := []byte(want[n])
				body[len(body)-1] ^= 0x01
				other.put(t, n, string(body))
				want[n] = string(body)
				did = append(did, "remote same-size edit "+n)
			case 6: // remote delete
				n, ok := pick()
				if !ok {
					continue
				}
				other.del(t, n)
				delete(want, n)
				did = append(did, "remote delete "+n)
			}
		}
		runs := p.engine.bisyncRuns.Load()
		res := p.pass(t, PassOptions{Trigger: "interval"})
		bisyncRan := p.engine.bisyncRuns.Load() != runs
		if len(did) > 0 && (res.Unchanged || !bisyncRan) {
			t.Fatalf("step %d (%v): the pass skipped bisync", step, did)
		}
		if res.Unchanged {
			skipped++
		} else {
			ran++
		}
		assertSides(t, s3, p, want, fmt.Sprintf("step %d (%v)", step, did))
		if t.Failed() {
			t.Fatalf("log:\n%s", p.logs.String())
		}
	}
	t.Logf("%d passes skipped bisync, %d ran it", skipped, ran)
	if skipped < 5 {
		t.Errorf("only %d of the passes after no change skipped bisync", skipped)
	}
}
