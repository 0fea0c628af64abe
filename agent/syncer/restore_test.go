package syncer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/agent/versions"
)

func TestCleanPath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a.md", "a.md"},
		{"./dir/a.md", "dir/a.md"},
		{"dir//x/../a.md", "dir/a.md"},
		{" notes/ü é.md ", "notes/ü é.md"},
		{"", ""},
		{"/etc/passwd", ""},
		{"../outside.md", ""},
		{"a/../../b", ""},
		{".", ""},
		{".bm-versions/a.md/~v/x", ""},
		{".bm-versions", ""},
	} {
		got, err := CleanPath(tc.in)
		if tc.want == "" {
			if !errors.Is(err, ErrBadPath) {
				t.Errorf("CleanPath(%q) = %q, %v; want ErrBadPath", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func readLocal(t *testing.T, p *pair, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.local, filepath.FromSlash(name)))
	if err != nil {
		return ""
	}
	return string(b)
}

func TestRestore(t *testing.T) {
	for name, start := range clouds() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			c := start(t)
			p := newGuardPair(t, c, "laptop", nil)
			seed(t, p, 12)
			p.write(t, "note.md", "v1")
			p.pass(t, PassOptions{})
			c.put(t, "note.md", "v2")
			p.pass(t, PassOptions{}) // v1 kept on the local side
			mid := time.Now()
			time.Sleep(20 * time.Millisecond)
			c.put(t, "note.md", "v3, longer")
			p.pass(t, PassOptions{}) // v2 kept
			if got := readLocal(t, p, "note.md"); got != "v3, longer" {
				t.Fatalf("note.md = %q", got)
			}
			vs, err := p.engine.VersionsOf(ctx, "note.md")
			if err != nil || len(vs) != 2 {
				t.Fatalf("VersionsOf = %v, %v", vs, err)
			}
			// by time: the note as it was between the two downloads
			v, err := p.engine.Restore(ctx, "note.md", "", mid)
			if err != nil {
				t.Fatal(err)
			}
			if got := readLocal(t, p, "note.md"); got != "v2" {
				t.Errorf("restore --at: note.md = %q, want v2 (%+v)", got, v)
			}
			// the note it replaced is kept
			vs, _ = p.engine.VersionsOf(ctx, "note.md")
			if len(vs) != 3 || vs[0].Reason != versions.ReasonRestored {
				t.Errorf("after restore: %v, want the replaced note kept first", vs)
			}
			// by ID, the oldest
			oldest := vs[len(vs)-1]
			if _, err := p.engine.Restore(ctx, "./note.md", oldest.ID, time.Time{}); err != nil {
				t.Fatal(err)
			}
			if got := readLocal(t, p, "note.md"); got != "v1" {
				t.Errorf("restore --version %s: note.md = %q, want v1", oldest.ID, got)
			}
			res := p.pass(t, PassOptions{})
			if res.Uploaded != 1 || c.files(t)["note.md"] != "v1" {
				t.Errorf("the pass after a restore: %+v; bucket has %q", res, c.files(t)["note.md"])
			}
			// errors say what is wrong
			if _, err := p.engine.Restore(ctx, "note.md", "lffffffff", time.Time{}); !errors.Is(err, ErrNoSuchVersion) {
				t.Errorf("unknown id: %v", err)
			}
			if _, err := p.engine.Restore(ctx, "never.md", "", time.Time{}); !errors.Is(err, ErrNoSuchVersion) {
				t.Errorf("no versions: %v", err)
			}
			if _, err := p.engine.Restore(ctx, "note.md", "", time.Now().Add(time.Hour)); !errors.Is(err, ErrNoSuchVersion) {
				t.Errorf("at a time after every change: %v", err)
			}
			if _, err := p.engine.Restore(ctx, "../x.md", "", time.Time{}); !errors.Is(err, ErrBadPath) {
				t.Errorf("bad path: %v", err)
			}
		})
	}
}

// A burst of deletes, on both sides, undone in one call; and a second
// device restores from the bucket's versions, which every device shares.
func TestRestoreDeleted(t *testing.T) {
	for name, start := range clouds() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			c := start(t)
			p := newGuardPair(t, c, "laptop", nil)
			seed(t, p, 20)
			p.write(t, "dir/a.md", "a")
			p.write(t, "b.md", "b")
			p.write(t, "back.md", "back v1")
			p.pass(t, PassOptions{})
			since := time.Now()
			c.del(t, "dir/a.md")                                              // deleted elsewhere: the local copy goes
			if err := os.Remove(filepath.Join(p.local, "b.md")); err != nil { // deleted here: the bucket's goes
				t.Fatal(err)
			}
			c.del(t, "back.md")
			p.pass(t, PassOptions{})
			p.write(t, "back.md", "back v2, made again")
			p.pass(t, PassOptions{})
			vs, err := p.engine.DeletedSince(ctx, since)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, v := range vs {
				got[v.Path] = v.Side
			}
			if len(got) != 2 || got["dir/a.md"] != versions.SideLocal || got["b.md"] != versions.SideCloud {
				t.Fatalf("DeletedSince = %v, want dir/a.md (local) and b.md (cloud), not back.md (made again)", got)
			}
			// another device, which never had them, restores from the bucket
			p2 := newGuardPair(t, c, "desktop", nil)
			p2.pass(t, PassOptions{})
			if vs2, _ := p2.engine.DeletedSince(ctx, since); len(vs2) != 1 || vs2[0].Path != "b.md" {
				t.Errorf("second device sees %v, want b.md from the bucket", vs2)
			}
			done, err := p.engine.RestoreDeleted(ctx, since)
			if err != nil || len(done) != 2 {
				t.Fatalf("RestoreDeleted = %v, %v", done, err)
			}
			if readLocal(t, p, "dir/a.md") != "a" || readLocal(t, p, "b.md") != "b" || readLocal(t, p, "back.md") != "back v2, made again" {
				t.Errorf("after restore: %v", p.files(t))
			}
			p.pass(t, PassOptions{})
			files := c.files(t)
			if files["dir/a.md"] != "a" || files["b.md"] != "b" {
				t.Errorf("bucket after the next pass: %v", files)
			}
			if again, _ := p.engine.DeletedSince(ctx, since); len(again) != 0 {
				t.Errorf("still listed as deleted after the restore: %v", again)
			}
		})
	}
}

// PruneVersions prunes both stores and says so in the log.
func TestPruneVersions(t *testing.T) {
	c := clouds()["embedded"](t)
	p := newGuardPair(t, c, "laptop", nil)
	seed(t, p, 12)
	p.write(t, "up.md", "v1")
	p.write(t, "down.md", "v1")
	p.pass(t, PassOptions{})
	p.write(t, "up.md", "v2 here")
	c.put(t, "down.md", "v2 there")
	if res := p.pass(t, PassOptions{}); res.VersionsKept != 2 {
		t.Fatalf("kept %d versions, want 2", res.VersionsKept)
	}
	ctx := context.Background()
	time.Sleep(10 * time.Millisecond)
	local, cloud, err := p.engine.PruneVersions(ctx, time.Millisecond, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if local.Removed != 1 || cloud.Removed != 1 || local.Kept+cloud.Kept != 0 {
		t.Errorf("prune removed local %+v cloud %+v, want one each, none left", local, cloud)
	}
	if !strings.Contains(p.logs.String(), "pruned kept versions") {
		t.Error("the prune was not logged")
	}
	for _, n := range []string{"up.md", "down.md"} {
		if vs, _ := p.engine.VersionsOf(ctx, n); len(vs) != 0 {
			t.Errorf("%s still has versions: %v", n, vs)
		}
	}
}
