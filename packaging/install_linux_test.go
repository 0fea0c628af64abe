package packaging

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// fakeSystemctl records the commands: most tests here have no systemd user
// instance to talk to, so the service manager is the boundary faked (the
// real one is in TestInstallRealUserSystemd; the unit itself is checked by
// systemd-analyze in TestSystemdUnitVerifies). noBus makes it answer as
// systemctl does without a session bus.
type fakeSystemctl struct {
	calls []string
	fail  string
	noBus bool
}

func (f *fakeSystemctl) run(_ context.Context, name string, args ...string) ([]byte, error) {
	c := name + " " + strings.Join(args, " ")
	f.calls = append(f.calls, c)
	switch {
	case f.noBus:
		return []byte("Failed to connect to bus: No medium found\n"), errors.New("exit status 1")
	case f.fail != "" && strings.Contains(c, f.fail):
		return []byte("Job for bm-agent.service failed\n"), errors.New("exit status 1")
	}
	return nil, nil
}

// fakeSpawn records what would be started detached.
type fakeSpawn struct {
	started []string
	env     []string
	err     error
}

func (f *fakeSpawn) spawn(path string, args, env []string) error {
	f.started = append(f.started, path+" "+strings.Join(args, " "))
	f.env = env
	return f.err
}

func TestInstallUninstallLinux(t *testing.T) {
	p := Params{AgentPath: "/usr/bin/bm-agent", TrayPath: "/usr/bin/bm-tray", Folder: "/n", Home: "/h"}
	tests := []struct {
		name                   string
		noBus                  bool
		wantFiles              []string // under the config dir
		wantCalls, wantRan     []string
		wantFallback           string
		wantStarted            []string
		wantUninstallCalls     []string
		wantManager, installed string
	}{
		{
			name:        "a user systemd answers: the unit, enabled and started",
			wantFiles:   []string{"systemd/user/bm-agent.service", "autostart/bm-tray.desktop"},
			wantCalls:   []string{"systemctl --user show-environment", "systemctl --user daemon-reload", "systemctl --user enable --now bm-agent.service"},
			wantRan:     []string{"systemctl --user daemon-reload", "systemctl --user enable --now bm-agent.service"},
			wantManager: ManagerSystemd, installed: ManagerSystemd,
			wantUninstallCalls: []string{"systemctl --user show-environment",
				"systemctl --user disable --now bm-agent.service", "systemctl --user daemon-reload"},
		},
		{
			name:         "no session bus: the autostart entry, and the daemon started detached",
			noBus:        true,
			wantFiles:    []string{"autostart/bm-agent.desktop", "autostart/bm-tray.desktop"},
			wantCalls:    []string{"systemctl --user show-environment"},
			wantRan:      []string{"/usr/bin/bm-agent run --folder /n (detached)"},
			wantFallback: "no user systemd here (systemctl --user: Failed to connect to bus: No medium found): bm-agent starts at login through CFG/autostart/bm-agent.desktop instead",
			wantStarted:  []string{"/usr/bin/bm-agent run --folder /n"},
			wantManager:  ManagerAutostart, installed: ManagerAutostart,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := t.TempDir()
			f := &fakeSystemctl{noBus: tt.noBus}
			sp := &fakeSpawn{}
			in := &Installer{HomeDir: t.TempDir(), ConfigDir: cfg, Run: f.run, Spawn: sp.spawn, Desktop: func() bool { return false }}
			ctx := context.Background()
			res, err := in.Install(ctx, p, true)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, w := range tt.wantFiles {
				want = append(want, filepath.Join(cfg, w))
			}
			if !reflect.DeepEqual(res.Files, want) {
				t.Errorf("files %v, want %v", res.Files, want)
			}
			if !reflect.DeepEqual(f.calls, tt.wantCalls) || !reflect.DeepEqual(res.Commands, tt.wantRan) {
				t.Errorf("calls %q, reported %q; want %q, %q", f.calls, res.Commands, tt.wantCalls, tt.wantRan)
			}
			if fb := strings.ReplaceAll(tt.wantFallback, "CFG", cfg); res.Fallback != fb || res.Manager != tt.wantManager || !res.Started {
				t.Errorf("manager %q, fallback %q, started %v; want %q, %q, started", res.Manager, res.Fallback, res.Started, tt.wantManager, fb)
			}
			if !reflect.DeepEqual(sp.started, tt.wantStarted) {
				t.Errorf("started %q, want %q", sp.started, tt.wantStarted)
			}
			if tt.wantStarted != nil && !contains(sp.env, "BM_AGENT_HOME=/h") {
				t.Errorf("the daemon started without BM_AGENT_HOME=/h: %q", sp.env)
			}
			b, _ := os.ReadFile(want[0])
			for _, w := range []string{`"/usr/bin/bm-agent" run --folder "/n"`, "BM_AGENT_HOME=/h"} {
				if !strings.Contains(string(b), w) {
					t.Errorf("%s lacks %s:\n%s", want[0], w, b)
				}
			}
			if got := in.Installed(ctx); got != tt.installed {
				t.Errorf("Installed = %q, want %q", got, tt.installed)
			}

			f.calls = nil
			res, err = in.Uninstall(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res.Files, want) || res.Manager != tt.wantManager {
				t.Errorf("removed %v (manager %q), want %v (%q)", res.Files, res.Manager, want, tt.wantManager)
			}
			for _, p := range want {
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Errorf("%s still there", p)
				}
			}
			if !reflect.DeepEqual(f.calls, tt.wantUninstallCalls) {
				t.Errorf("uninstall calls %q, want %q", f.calls, tt.wantUninstallCalls)
			}
			// Nothing installed: uninstall is a quiet no-op.
			f.calls = nil
			if res, err := in.Uninstall(ctx); err != nil || len(f.calls) != 0 || len(res.Files) != 0 || res.Manager != "" {
				t.Errorf("second uninstall: %+v, %v, calls %v", res, err, f.calls)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestInstallFailureLeavesNothing: a failed step is in the error, not in
// the commands reported as run, and the files the install wrote are put
// back as they were.
func TestInstallFailureLeavesNothing(t *testing.T) {
	p := Params{AgentPath: "/usr/bin/bm-agent", TrayPath: "/usr/bin/bm-tray"}
	tests := []struct {
		name      string
		noBus     bool
		fail      string
		spawnErr  error
		oldUnit   string // a unit there before the install
		wantErr   string
		wantRan   []string
		wantCalls []string
	}{
		{name: "enable fails", fail: "enable",
			wantErr: "install: systemctl --user enable --now bm-agent.service: exit status 1: Job for bm-agent.service failed",
			wantRan: []string{"systemctl --user daemon-reload"},
			wantCalls: []string{"systemctl --user show-environment", "systemctl --user daemon-reload", "systemctl --user enable --now bm-agent.service",
				"systemctl --user disable bm-agent.service", "systemctl --user daemon-reload"}},
		{name: "enable fails over an older unit, which comes back", fail: "enable", oldUnit: "[Unit]\nDescription=old\n",
			wantErr: "install: systemctl --user enable --now bm-agent.service: exit status 1: Job for bm-agent.service failed",
			wantRan: []string{"systemctl --user daemon-reload"},
			wantCalls: []string{"systemctl --user show-environment", "systemctl --user daemon-reload", "systemctl --user enable --now bm-agent.service",
				"systemctl --user disable bm-agent.service", "systemctl --user daemon-reload"}},
		{name: "daemon-reload fails", fail: "daemon-reload",
			wantErr:   "install: systemctl --user daemon-reload: exit status 1: Job for bm-agent.service failed",
			wantCalls: []string{"systemctl --user show-environment", "systemctl --user daemon-reload", "systemctl --user daemon-reload"}},
		{name: "no user systemd, and the daemon cannot be started", noBus: true, spawnErr: errors.New("permission denied"),
			wantErr:   "install: start /usr/bin/bm-agent run: permission denied",
			wantCalls: []string{"systemctl --user show-environment"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := t.TempDir()
			f := &fakeSystemctl{fail: tt.fail, noBus: tt.noBus}
			in := &Installer{HomeDir: t.TempDir(), ConfigDir: cfg, Run: f.run, Spawn: (&fakeSpawn{err: tt.spawnErr}).spawn, Desktop: func() bool { return false }}
			if tt.oldUnit != "" {
				if _, err := writeFile(in.UnitPath(), []byte(tt.oldUnit), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			res, err := in.Install(context.Background(), p, true)
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if !reflect.DeepEqual(res.Commands, tt.wantRan) || len(res.Files) != 0 || res.Started {
				t.Errorf("reported %+v; want ran %q only, no files, not started", res, tt.wantRan)
			}
			if !reflect.DeepEqual(f.calls, tt.wantCalls) {
				t.Errorf("calls %q, want %q", f.calls, tt.wantCalls)
			}
			for _, p := range []string{in.AgentAutostartPath(), in.AutostartPath()} {
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Errorf("%s left behind", p)
				}
			}
			b, err := os.ReadFile(in.UnitPath())
			if tt.oldUnit == "" && !os.IsNotExist(err) || tt.oldUnit != "" && string(b) != tt.oldUnit {
				t.Errorf("unit after the failure: %q, %v; want %q", b, err, tt.oldUnit)
			}
		})
	}
}

// TestInstallWithSystemdReplacesTheFallback: an install where a user
// systemd answers removes the autostart entry an earlier one wrote without
// it, so that one daemon starts at login, not two.
func TestInstallWithSystemdReplacesTheFallback(t *testing.T) {
	f := &fakeSystemctl{noBus: true}
	in := &Installer{HomeDir: t.TempDir(), ConfigDir: t.TempDir(), Run: f.run, Spawn: (&fakeSpawn{}).spawn, Desktop: func() bool { return false }}
	ctx := context.Background()
	p := Params{AgentPath: "/usr/bin/bm-agent"}
	if _, err := in.Install(ctx, p, false); err != nil {
		t.Fatal(err)
	}
	f.noBus = false
	res, err := in.Install(ctx, p, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{in.UnitPath(), in.AgentAutostartPath()}; !reflect.DeepEqual(res.Files, want) {
		t.Errorf("files %v, want %v (the unit written, the entry removed)", res.Files, want)
	}
	if _, err := os.Stat(in.AgentAutostartPath()); !os.IsNotExist(err) || in.Installed(ctx) != ManagerSystemd {
		t.Errorf("the autostart entry is still there (%v), installed %q", err, in.Installed(ctx))
	}
	// a unit with no user systemd to run it starts nothing
	f.noBus = true
	if got := in.Installed(ctx); got != "" {
		t.Errorf("a unit without a user systemd: Installed = %q, want none", got)
	}
}

// TestInstallStartsTheTrayInADesktop: an install that starts the daemon in
// a desktop session starts the tray too (its icon shows now, not at the
// next login), with or without a user systemd; one that does not start
// the daemon, or with no desktop, leaves it to the autostart entry, which
// names the agent's home so the tray finds the daemon.
func TestInstallStartsTheTrayInADesktop(t *testing.T) {
	p := Params{AgentPath: "/usr/bin/bm-agent", TrayPath: "/usr/bin/bm-tray", Folder: "/n", Home: "/h"}
	for _, tt := range []struct {
		name           string
		noBus, desktop bool
		start          bool
		wantTray       bool
	}{
		{name: "systemd, desktop", desktop: true, start: true, wantTray: true},
		{name: "no systemd, desktop", noBus: true, desktop: true, start: true, wantTray: true},
		{name: "no desktop", noBus: true, start: true},
		{name: "daemon not started", desktop: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := t.TempDir()
			sp := &fakeSpawn{}
			in := &Installer{HomeDir: t.TempDir(), ConfigDir: cfg, Run: (&fakeSystemctl{noBus: tt.noBus}).run, Spawn: sp.spawn,
				Desktop: func() bool { return tt.desktop }}
			res, err := in.Install(context.Background(), p, tt.start)
			if err != nil {
				t.Fatal(err)
			}
			started := slices.Contains(sp.started, "/usr/bin/bm-tray ")
			if started != tt.wantTray || res.TrayStarted != tt.wantTray || slices.Contains(res.Commands, "/usr/bin/bm-tray (detached)") != tt.wantTray {
				t.Errorf("tray started %v (result %v, commands %q), want %v", started, res.TrayStarted, res.Commands, tt.wantTray)
			}
			b, err := os.ReadFile(in.AutostartPath())
			if err != nil || !strings.Contains(string(b), `Exec=env "BM_AGENT_HOME=/h" "/usr/bin/bm-tray"`) {
				t.Errorf("the tray's autostart entry does not name the agent's home: %q, %v", b, err)
			}
		})
	}
}
