package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// resolvingEngine runs fake passes and settles conflicts with a real
// engine (whose bucket is never reached).
type resolvingEngine struct {
	fake *fakeEngine
	eng  *syncer.Engine
}

func (r resolvingEngine) Pass(ctx context.Context, opt syncer.PassOptions) (syncer.Result, error) {
	return r.fake.Pass(ctx, opt)
}

func (r resolvingEngine) ResolveConflict(ctx context.Context, p, conflict, keep string) (syncer.Resolution, error) {
	return r.eng.ResolveConflict(ctx, p, conflict, keep)
}

func newResolvingEngine(t *testing.T, d *Daemon) resolvingEngine {
	t.Helper()
	eng, err := syncer.New(t.Context(), syncer.Config{
		LocalDir: d.cfg.Folder,
		Remote:   syncer.Remote{Endpoint: "http://127.0.0.1:1", Region: "us-east-1", AccessKey: "k", SecretKey: "s", Bucket: "b"},
		WorkDir:  filepath.Join(d.cfg.Home, "bisync"),
		Device:   d.cfg.Device,
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return resolvingEngine{fake: &fakeEngine{passed: make(chan int, 16)}, eng: eng}
}

func TestResolve(t *testing.T) {
	const (
		note = "note.md"
		c1   = "note.conflict-20260101-120000-laptop.md"
		c2   = "note.conflict-20260101-130000-cloud.md"
	)
	tests := []struct {
		name      string
		files     map[string]string
		req       ipc.ResolveRequest
		want      map[string]string // files in the folder after
		wantRes   ipc.ResolveResult
		wantErr   error
		wantSaved int // versions kept of note
	}{
		{name: "mine", files: map[string]string{note: "mine", c1: "theirs"}, req: ipc.ResolveRequest{Path: note, Keep: ipc.KeepMine},
			want: map[string]string{note: "mine"}, wantRes: ipc.ResolveResult{Note: note, Removed: []string{c1}}, wantSaved: 1},
		{name: "theirs", files: map[string]string{note: "mine", c1: "theirs"}, req: ipc.ResolveRequest{Path: c1, Keep: ipc.KeepTheirs},
			want: map[string]string{note: "theirs"}, wantRes: ipc.ResolveResult{Note: note, Removed: []string{c1}}, wantSaved: 1},
		{name: "both", files: map[string]string{note: "mine", c1: "theirs"}, req: ipc.ResolveRequest{Path: note, Keep: ipc.KeepBoth},
			want:    map[string]string{note: "mine", "note (from laptop).md": "theirs"},
			wantRes: ipc.ResolveResult{Note: note, Kept: "note (from laptop).md", Removed: []string{}}},
		{name: "mine, when the conflict file is this device's", files: map[string]string{note: "the bucket's", "note.conflict-20260101-140000-test.md": "this device's"},
			req:  ipc.ResolveRequest{Path: note, Keep: ipc.KeepMine},
			want: map[string]string{note: "this device's"}, wantRes: ipc.ResolveResult{Note: note, Removed: []string{"note.conflict-20260101-140000-test.md"}}, wantSaved: 1},
		{name: "one of several", files: map[string]string{note: "mine", c1: "theirs", c2: "cloud"}, req: ipc.ResolveRequest{Path: note, Conflict: c2, Keep: ipc.KeepMine},
			want: map[string]string{note: "mine", c1: "theirs"}, wantRes: ipc.ResolveResult{Note: note, Removed: []string{c2}}, wantSaved: 1},
		{name: "several, none named", files: map[string]string{note: "mine", c1: "theirs", c2: "cloud"}, req: ipc.ResolveRequest{Path: note, Keep: ipc.KeepMine},
			wantErr: ipc.ErrInvalid},
		{name: "no conflict", files: map[string]string{note: "mine"}, req: ipc.ResolveRequest{Path: note, Keep: ipc.KeepMine}, wantErr: ipc.ErrNotFound},
		{name: "outside the folder", files: map[string]string{note: "mine"}, req: ipc.ResolveRequest{Path: "../../etc/passwd", Keep: ipc.KeepMine}, wantErr: ipc.ErrInvalid},
		{name: "bad keep", files: map[string]string{note: "mine", c1: "theirs"}, req: ipc.ResolveRequest{Path: note, Keep: "yours"}, wantErr: ipc.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := testDaemon(t, t.TempDir())
			for p, body := range tt.files {
				if err := os.WriteFile(filepath.Join(d.cfg.Folder, p), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			eng := newResolvingEngine(t, d)
			runLoop(t, d, eng)
			waitFor(t, "the first pass", func() bool { return eng.fake.count() >= 1 })
			before := eng.fake.count()

			res, err := d.Resolve(t.Context(), tt.req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if got := folderFiles(t, d.cfg.Folder); !sameFiles(got, tt.files) {
					t.Errorf("a refused resolve changed the folder: %v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.wantRes.Folder = d.cfg.Folder
			if res.Folder != tt.wantRes.Folder || res.Note != tt.wantRes.Note || res.Kept != tt.wantRes.Kept ||
				len(res.Removed) != len(tt.wantRes.Removed) || (len(res.Removed) > 0 && res.Removed[0] != tt.wantRes.Removed[0]) {
				t.Errorf("result = %+v, want %+v", res, tt.wantRes)
			}
			if got := folderFiles(t, d.cfg.Folder); !sameFiles(got, tt.want) {
				t.Errorf("folder = %v, want %v", got, tt.want)
			}
			local, _ := eng.eng.Versions() // the bucket's store is never reached
			all, err := local.All()
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != tt.wantSaved {
				t.Errorf("versions kept = %d, want %d", len(all), tt.wantSaved)
			}
			waitFor(t, "a pass after the resolve", func() bool { return eng.fake.count() > before })
		})
	}
}

// TestResolveRefused: no session, or an engine that cannot settle
// conflicts, is refused with the error the CLI maps to its exit code.
func TestResolveRefused(t *testing.T) {
	d := testDaemon(t, t.TempDir())
	if _, err := d.Resolve(t.Context(), ipc.ResolveRequest{Path: "a.md", Keep: ipc.KeepMine}); err == nil {
		t.Fatal("resolve with no session: no error")
	}
	runLoop(t, d, &fakeEngine{})
	if _, err := d.Resolve(t.Context(), ipc.ResolveRequest{Path: "a.md", Keep: ipc.KeepMine}); !errors.Is(err, ipc.ErrNotImplemented) {
		t.Fatalf("err = %v, want ErrNotImplemented", err)
	}
}

func folderFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() || e.Name()[0] == '.' {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

func sameFiles(a, b map[string]string) bool {
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

// TestResolveDeviceName: `config set device_name` names the device (the
// engine's Device, which conflict files carry) over the hostname.
func TestResolveDeviceName(t *testing.T) {
	home := t.TempDir()
	in := Inputs{Flags: Config{Home: home}, FlagNames: map[string]string{"home": "--home"}, Getenv: func(string) string { return "" }}
	cfg, err := ResolveConfig(in)
	if err != nil {
		t.Fatal(err)
	}
	if host, _ := os.Hostname(); host != "" && cfg.Device != host {
		t.Errorf("default device = %q, want the hostname %q", cfg.Device, host)
	}
	if _, _, err := saveSetting(home, "device_name", "Paul's Laptop"); err != nil {
		t.Fatal(err)
	}
	if cfg, err = ResolveConfig(in); err != nil {
		t.Fatal(err)
	}
	if cfg.Device != "Paul's Laptop" {
		t.Errorf("device = %q, want the device_name", cfg.Device)
	}
	if _, _, err := saveSetting(home, "notifications", "Off"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := saveSetting(home, "notifications", "sometimes"); !errors.Is(err, ipc.ErrInvalid) {
		t.Errorf("notifications sometimes: %v, want ErrInvalid", err)
	}
	if cfg, err = ResolveConfig(in); err != nil || cfg.Notifications != "off" {
		t.Errorf("notifications = %q, %v; want off", cfg.Notifications, err)
	}
}
