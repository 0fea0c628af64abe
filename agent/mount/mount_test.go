package mount

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
)

const (
	testBucket = "tenant-bucket"
	testKey    = "AKMOUNTTEST"
	testSecret = "mount-s3cr3t-never-logged-0123"
)

func TestCleanupOrphansRecords(t *testing.T) {
	dir := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skipf("no true(1): %v", err)
	}
	tests := []struct {
		name   string
		record string
	}{
		{"not mounted any more", fmt.Sprintf(`{"mount_point": %q, "pid": %d}`, filepath.Join(dir, "gone"), dead.Process.Pid)},
		{"garbage", `{not json`},
		{"no mount point", `{"pid": 1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state := t.TempDir()
			if err := os.WriteFile(filepath.Join(state, stateFile), []byte(tt.record), 0o600); err != nil {
				t.Fatal(err)
			}
			mgr := NewManager(state, slog.New(slog.DiscardHandler))
			if err := mgr.CleanupOrphans(context.Background()); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(state, stateFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("record not removed: %v", err)
			}
		})
	}
	// no record: nothing to do
	if err := NewManager(t.TempDir(), nil).CleanupOrphans(context.Background()); err != nil {
		t.Errorf("no record: %v", err)
	}
}

func TestMountRefusesBadConfigs(t *testing.T) {
	dir := t.TempDir()
	sync := filepath.Join(dir, "notes")
	if err := os.MkdirAll(filepath.Join(sync, "inner"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link-to-notes")
	if err := os.Symlink(sync, link); err != nil {
		t.Fatal(err)
	}
	remote := syncer.Remote{Endpoint: "http://127.0.0.1:1", AccessKey: testKey, SecretKey: testSecret, Bucket: testBucket}
	cache := filepath.Join(dir, "cache")
	tests := []struct {
		name string
		cfg  Config
		want error  // errors.Is target, or nil
		msg  string // substring of the error
	}{
		{"mount on the sync folder", Config{MountPoint: sync, SyncFolder: sync}, ErrOverlap, ""},
		{"mount inside the sync folder", Config{MountPoint: filepath.Join(sync, "inner", "mnt"), SyncFolder: sync}, ErrOverlap, ""},
		{"mount containing the sync folder", Config{MountPoint: dir, SyncFolder: sync}, ErrOverlap, ""},
		{"mount through a symlink to the sync folder", Config{MountPoint: filepath.Join(link, "mnt"), SyncFolder: sync}, ErrOverlap, ""},
		{"sync folder given through a symlink", Config{MountPoint: filepath.Join(sync, "m"), SyncFolder: link}, ErrOverlap, ""},
		{"one of several sync folders", Config{MountPoint: filepath.Join(sync, "m"), SyncFolders: []string{filepath.Join(dir, "x"), sync}}, ErrOverlap, ""},
		{"relative spelling", Config{MountPoint: sync + "/inner/../inner", SyncFolder: sync}, ErrOverlap, ""},
		{"unknown profile", Config{MountPoint: filepath.Join(dir, "m"), Profile: "turbo"}, nil, "unknown mount profile"},
		{"no mount point", Config{}, nil, "mount point is required"},
		{"no key", Config{MountPoint: filepath.Join(dir, "m"), Remote: syncer.Remote{Endpoint: "http://x", Bucket: "b"}}, nil, "key pair"},
		{"cache inside the mount", Config{MountPoint: filepath.Join(dir, "m"), CacheDir: filepath.Join(dir, "m", "c")}, nil, "overlap"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if cfg.Remote == (syncer.Remote{}) && tt.msg != "key pair" {
				cfg.Remote = remote
			}
			if cfg.CacheDir == "" {
				cfg.CacheDir = cache
			}
			mgr := NewManager(t.TempDir(), slog.New(slog.DiscardHandler))
			err := mgr.Mount(context.Background(), cfg)
			if err == nil {
				_ = mgr.Close()
				t.Fatal("mount succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if tt.msg != "" && !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %v, want it to mention %q", err, tt.msg)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Errorf("error shows the secret: %v", err)
			}
			if st := mgr.Status(); st.Mounted || st.Error == "" {
				t.Errorf("status after refusal = %+v", st)
			}
		})
	}
	// nothing was created inside the sync folder
	entries, _ := os.ReadDir(sync)
	if len(entries) != 1 {
		t.Errorf("sync folder touched: %v", entries)
	}
}

func TestProfiles(t *testing.T) {
	tests := []struct {
		in                           string
		want                         Profile
		dir, poll, attr, wb          time.Duration
		conflict, backup, trackNames bool
	}{
		{"fast", ProfileFast, 5 * time.Second, 3 * time.Second, 3 * time.Second, 1 * time.Second, false, false, false},
		{"", ProfileBalanced, 10 * time.Second, 5 * time.Second, 5 * time.Second, 2 * time.Second, false, false, false},
		{"Balanced", ProfileBalanced, 10 * time.Second, 5 * time.Second, 5 * time.Second, 2 * time.Second, false, false, false},
		{" safe ", ProfileSafe, 15 * time.Second, 10 * time.Second, 10 * time.Second, 5 * time.Second, true, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := ParseProfile(tt.in)
			if err != nil || p != tt.want {
				t.Fatalf("ParseProfile(%q) = %q, %v", tt.in, p, err)
			}
			s, err := p.Settings()
			if err != nil {
				t.Fatal(err)
			}
			if s.DirCacheTime != tt.dir || s.CachePollInterval != tt.poll || s.AttrTimeout != tt.attr || s.WriteBack != tt.wb {
				t.Errorf("settings = %+v", s)
			}
			if (s.ConflictSuffix == ".conflict-{DateTimeExt}") != tt.conflict || s.BackupDir != tt.backup || s.TrackRenames != tt.trackNames {
				t.Errorf("safe extras = %+v", s)
			}
			args := s.RcloneArgs()
			if !slices.Contains(args, "writes") || slices.Contains(args, "--track-renames") != tt.trackNames {
				t.Errorf("args = %q", args)
			}
			vo, err := vfsOptions(s)
			if err != nil {
				t.Fatal(err)
			}
			mo, err := mountOptions(s, testBucket)
			if err != nil {
				t.Fatal(err)
			}
			if vo.CacheMode.String() != "writes" || time.Duration(vo.DirCacheTime) != tt.dir ||
				time.Duration(vo.CachePollInterval) != tt.poll || time.Duration(vo.WriteBack) != tt.wb ||
				time.Duration(mo.AttrTimeout) != tt.attr {
				t.Errorf("rclone options: vfs %+v mount attr %v", vo, mo.AttrTimeout)
			}
		})
	}
	if _, err := ParseProfile("turbo"); err == nil {
		t.Error("ParseProfile(turbo) succeeded")
	}
	if len(Profiles()) != 3 {
		t.Errorf("Profiles() = %v", Profiles())
	}
}
