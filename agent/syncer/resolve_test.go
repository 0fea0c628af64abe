package syncer

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/basicmachines-co/bm-agent/agent/versions"
)

func TestResolveConflictIn(t *testing.T) {
	const (
		note = "dir/note.md"
		c1   = "dir/note.conflict-20260101-120000-laptop.md"
		c2   = "dir/note.conflict-20260101-130000-cloud.md"
		own  = "dir/note.conflict-20260101-140000-desk.md"   // this device's version, which lost
		own1 = "dir/note.conflict-20260101-140000-desk-1.md" // the same, when the name was taken
	)
	tests := []struct {
		name               string
		files              map[string]string // the folder before
		path, conflict     string
		keep               string
		noVersions         bool
		want               map[string]string // the folder after
		wantErr            error
		wantKept           string
		wantRemoved        []string
		wantVersions       []string // contents kept in the store
		wantVersionsOfNote bool
	}{
		{name: "mine by note", files: map[string]string{note: "mine", c1: "theirs"}, path: note, keep: KeepMine,
			want: map[string]string{note: "mine"}, wantRemoved: []string{c1}, wantVersions: []string{"theirs"}},
		{name: "mine by conflict file", files: map[string]string{note: "mine", c1: "theirs"}, path: c1, keep: KeepMine,
			want: map[string]string{note: "mine"}, wantRemoved: []string{c1}, wantVersions: []string{"theirs"}},
		{name: "mine, versions off", files: map[string]string{note: "mine", c1: "theirs"}, path: note, keep: KeepMine, noVersions: true,
			want: map[string]string{note: "mine"}, wantRemoved: []string{c1}},
		{name: "theirs", files: map[string]string{note: "mine", c1: "theirs"}, path: note, keep: KeepTheirs,
			want: map[string]string{note: "theirs"}, wantRemoved: []string{c1}, wantVersions: []string{"mine"}},
		{name: "theirs with no note", files: map[string]string{c1: "theirs", c2: "cloud's"}, path: c2, keep: KeepTheirs,
			want: map[string]string{note: "cloud's", c1: "theirs"}, wantRemoved: []string{c2}},
		{name: "both", files: map[string]string{note: "mine", c1: "theirs"}, path: note, keep: KeepBoth,
			want: map[string]string{note: "mine", "dir/note (from laptop).md": "theirs"}, wantKept: "dir/note (from laptop).md", wantRemoved: []string{}},
		{name: "both, name taken", files: map[string]string{note: "mine", c1: "theirs", "dir/note (from laptop).md": "other"}, path: note, keep: KeepBoth,
			want:     map[string]string{note: "mine", "dir/note (from laptop).md": "other", "dir/note (from laptop 2).md": "theirs"},
			wantKept: "dir/note (from laptop 2).md", wantRemoved: []string{}},
		{name: "conflict named by base name", files: map[string]string{note: "mine", c1: "theirs", c2: "cloud's"}, path: note, conflict: "note.conflict-20260101-130000-cloud.md", keep: KeepMine,
			want: map[string]string{note: "mine", c1: "theirs"}, wantRemoved: []string{c2}, wantVersions: []string{"cloud's"}},
		{name: "mine, this device's version in the conflict file", files: map[string]string{note: "the bucket's", own: "this device's"}, path: note, keep: KeepMine,
			want: map[string]string{note: "this device's"}, wantRemoved: []string{own}, wantVersions: []string{"the bucket's"}},
		{name: "theirs, this device's version in the conflict file", files: map[string]string{note: "the bucket's", own1: "this device's"}, path: own1, keep: KeepTheirs,
			want: map[string]string{note: "the bucket's"}, wantRemoved: []string{own1}, wantVersions: []string{"this device's"}},
		{name: "both, this device's version in the conflict file", files: map[string]string{note: "the bucket's", own: "this device's"}, path: note, keep: KeepBoth,
			want:     map[string]string{note: "the bucket's", "dir/note (from desk).md": "this device's"},
			wantKept: "dir/note (from desk).md", wantRemoved: []string{}},
		{name: "several and none named", files: map[string]string{note: "mine", c1: "theirs", c2: "cloud's"}, path: note, keep: KeepMine,
			wantErr: ErrWhichConflict},
		{name: "no conflict", files: map[string]string{note: "mine"}, path: note, keep: KeepMine, wantErr: ErrNoSuchConflict},
		{name: "conflict of another note", files: map[string]string{note: "mine", c1: "theirs"}, path: "dir/other.md", conflict: c1, keep: KeepMine, wantErr: ErrNoSuchConflict},
		{name: "missing conflict file", files: map[string]string{note: "mine"}, path: c1, keep: KeepMine, wantErr: ErrNoSuchConflict},
		{name: "mine with no note", files: map[string]string{c1: "theirs"}, path: c1, keep: KeepMine, wantErr: ErrBadKeep},
		{name: "bad keep", files: map[string]string{note: "mine", c1: "theirs"}, path: note, keep: "yours", wantErr: ErrBadKeep},
		{name: "outside the folder", files: map[string]string{note: "mine"}, path: "../x.md", keep: KeepMine, wantErr: ErrBadPath},
		{name: "absolute", files: map[string]string{note: "mine"}, path: "/etc/passwd", keep: KeepMine, wantErr: ErrBadPath},
		{name: "conflict outside the folder", files: map[string]string{note: "mine"}, path: note, conflict: "../../note.conflict-20260101-120000-x.md", keep: KeepMine, wantErr: ErrBadPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for p, body := range tt.files {
				writeResolveFile(t, filepath.Join(root, filepath.FromSlash(p)), body)
			}
			var store *versions.Local
			if !tt.noVersions {
				var err error
				if store, err = versions.OpenLocal(t.TempDir(), "laptop", nil); err != nil {
					t.Fatal(err)
				}
			}
			r, err := ResolveConflictIn(root, store, "desk", tt.path, tt.conflict, tt.keep, nil)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if got := readResolveTree(t, root); !equalMaps(got, tt.files) {
					t.Errorf("a refused resolve changed the folder: %v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Note != note || r.Kept != tt.wantKept || !equalStrings(r.Removed, tt.wantRemoved) {
				t.Errorf("result = %+v, want note %s kept %q removed %v", r, note, tt.wantKept, tt.wantRemoved)
			}
			if got := readResolveTree(t, root); !equalMaps(got, tt.want) {
				t.Errorf("folder = %v, want %v", got, tt.want)
			}
			if store == nil {
				return
			}
			all, err := store.All()
			if err != nil {
				t.Fatal(err)
			}
			var kept []string
			for _, v := range all {
				if v.Path != note || v.Reason != versions.ReasonResolved {
					t.Errorf("version %+v: want a %s version of %s", v, versions.ReasonResolved, note)
				}
				rc, _, err := store.Open(v.ID)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(rc)
				rc.Close()
				kept = append(kept, string(b))
			}
			if !equalStrings(kept, tt.wantVersions) || len(r.Versions) != len(tt.wantVersions) {
				t.Errorf("versions kept = %q (result %d), want %q", kept, len(r.Versions), tt.wantVersions)
			}
		})
	}
}

func writeResolveFile(t *testing.T, p, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readResolveTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func equalStrings(a, b []string) bool {
	a, b = append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(a)
	sort.Strings(b)
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
