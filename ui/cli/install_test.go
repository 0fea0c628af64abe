package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/packaging/sdtest"
)

// envStandIn makes this test binary, run as `cli.test run [--folder F]`
// by what install wrote (the autostart start, the systemd unit), a
// stand-in daemon: it serves a fake daemon, set up and synced, on the
// default socket (under $BM_AGENT_HOME) until SIGTERM. The CLI is
// tested here, not the daemon, and ui/cli does not import agent.
const envStandIn = "BM_CLI_TEST_DAEMON"

func standInDaemon(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, err := ipc.Listen(ipc.DefaultSocketPath())
	if err != nil {
		fmt.Fprintln(os.Stderr, "stand-in daemon:", err)
		return 1
	}
	st := syncedStatus()
	if len(args) == 2 && args[0] == "--folder" {
		st.Folder = args[1]
	}
	if err := ipc.NewServer(&fakeDaemon{status: st}, nil).Serve(ctx, ln); err != nil {
		fmt.Fprintln(os.Stderr, "stand-in daemon:", err)
		return 1
	}
	return 0
}

// installHome sets up a user for install: a fresh HOME, XDG_CONFIG_HOME
// and BM_AGENT_HOME (short, for the socket), the stand-in daemon on, and
// returns the socket path and the config dir. A daemon still answering
// when the test ends is stopped.
func installHome(t *testing.T) (sock, cfg string) {
	t.Helper()
	home := t.TempDir()
	agentHome, err := os.MkdirTemp("", "bmh")
	if err != nil {
		t.Fatal(err)
	}
	cfg = os.Getenv("XDG_CONFIG_HOME")
	if os.Getenv("BM_SDTEST_INSIDE") == "" { // sdtest made them already
		cfg = filepath.Join(home, ".config")
		t.Setenv("HOME", home)
		t.Setenv("XDG_CONFIG_HOME", cfg)
	}
	t.Setenv("BM_AGENT_HOME", agentHome)
	t.Setenv(envStandIn, "1")
	for _, k := range serviceEnv {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	sock = filepath.Join(agentHome, ipc.SocketName)
	t.Cleanup(func() {
		c := ipc.NewClient(sock)
		if _, err := c.Status(context.Background()); err == nil {
			if _, err := stopDaemon(context.Background(), c); err != nil {
				t.Errorf("stop the stand-in daemon: %v", err)
			}
		}
		os.RemoveAll(agentHome)
	})
	return sock, cfg
}

// answers reports whether a daemon answers on sock.
func answers(sock string) bool {
	_, err := ipc.NewClient(sock).Status(context.Background())
	return err == nil
}

func checkOut(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s printed:\n%s\nwant:\n%s", what, got, want)
	}
}

// TestInstallSetupUninstallWithoutUserSystemd runs setup, install and
// uninstall for real (files, a detached daemon) where no user systemd
// answers. That is this machine's own case, but not every developer's:
// systemctl is a stub that answers as it does with no session bus, or
// there is none on PATH at all.
func TestInstallSetupUninstallWithoutUserSystemd(t *testing.T) {
	tests := []struct {
		name string
		stub string // the systemctl on PATH; "" for none
		said string // what the fallback quotes of it
	}{
		{"systemctl finds no session bus", "#!/bin/sh\necho 'Failed to connect to bus: No medium found' >&2\nexit 1\n", "Failed to connect to bus: No medium found"},
		{"no systemctl at all", "", `exec: "systemctl": executable file not found in $PATH`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock, cfg := installHome(t)
			bin := t.TempDir()
			if tt.stub != "" {
				if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte(tt.stub), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv("PATH", bin)
			exe, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			exe, _ = filepath.EvalSymlinks(exe)
			entry := filepath.Join(cfg, "autostart", "bm-agent.desktop")
			fallback := "No user systemd here (systemctl --user: " + tt.said + "): bm-agent starts at login through " + entry + " instead.\n"
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			// setup with nothing there: it installs, starts the daemon and goes on to login and the first sync
			out, errOut, code := runCLI(ctx, t, sock, &Options{}, "setup")
			if code != 0 {
				t.Fatalf("setup: exit %d: %s\n%s", code, errOut, out)
			}
			checkOut(t, "setup", out, "No daemon answers: installing the bm-agent service...\n"+fallback+
				"[done] service: installed, started now: an XDG autostart entry starts bm-agent at login (1 file written)\n"+
				"[done] daemon: running, version v1\n"+
				"[ok  ] login: logged in as me@example.com\n"+
				"[ok  ] first sync: bucket bm-t-1 in step with /n\n"+
				"\nAll set: bm-agent keeps /n and your cloud bucket in step, and starts at login.\n")
			b, err := os.ReadFile(entry)
			wantExec := "Exec=env \"BM_AGENT_HOME=" + os.Getenv("BM_AGENT_HOME") + "\" \"" + exe + "\" run\n"
			if err != nil || !strings.Contains(string(b), wantExec) {
				t.Errorf("%s: %v\n%s\nwant the line %q", entry, err, b, wantExec)
			}

			// a second setup reports what is there now
			out, errOut, code = runCLI(ctx, t, sock, &Options{}, "setup")
			if code != 0 {
				t.Fatalf("second setup: exit %d: %s", code, errOut)
			}
			checkOut(t, "second setup", out, "[ok  ] daemon: running, version v1\n"+
				"[ok  ] service: installed: an XDG autostart entry starts bm-agent at login\n"+
				"[ok  ] login: logged in as me@example.com\n"+
				"[ok  ] first sync: bucket bm-t-1 in step with /n\n"+
				"\nEverything is set up already: nothing to do.\n")

			// install with a daemon answering starts no second one
			out, errOut, code = runCLI(ctx, t, sock, &Options{}, "install")
			if code != 0 {
				t.Fatalf("install: exit %d: %s", code, errOut)
			}
			checkOut(t, "install", out, fallback+"Installed: an XDG autostart entry starts bm-agent at login.\n"+
				"A daemon already answers, so no other was started. `bm-agent status` shows what it is doing.\n")

			// uninstall removes the entry and stops the daemon
			pid, err := daemonPID(sock)
			if err != nil {
				t.Fatal(err)
			}
			out, errOut, code = runCLI(ctx, t, sock, &Options{}, "uninstall")
			if code != 0 {
				t.Fatalf("uninstall: exit %d: %s", code, errOut)
			}
			checkOut(t, "uninstall", out, fmt.Sprintf("removed %s\nstopped the daemon (pid %d)\nUninstalled: nothing starts bm-agent at login, and it is not running.\n", entry, pid))
			if _, err := os.Stat(entry); !errors.Is(err, os.ErrNotExist) || answers(sock) {
				t.Errorf("after uninstall: entry %v, daemon answers %v", err, answers(sock))
			}
			out, _, code = runCLI(ctx, t, sock, &Options{}, "uninstall")
			if checkOut(t, "a second uninstall", out, "Nothing was installed: nothing to do.\n"); code != 0 {
				t.Errorf("a second uninstall: exit %d", code)
			}

			// install by itself starts the daemon; --json says so
			out, errOut, code = runCLI(ctx, t, sock, &Options{}, "install", "--json")
			if code != 0 {
				t.Fatalf("install --json: exit %d: %s", code, errOut)
			}
			want := fmt.Sprintf(`{
  "manager": "autostart",
  "fallback": %q,
  "files": [
    %q
  ],
  "commands": [
    %q
  ],
  "started": true,
  "already_running": false,
  "daemon_running": true
}
`, "no user systemd here (systemctl --user: "+tt.said+"): bm-agent starts at login through "+entry+" instead", entry, exe+" run (detached)")
			checkOut(t, "install --json", out, want)
			if !answers(sock) {
				t.Error("install --json: no daemon answers")
			}
			if pid, err = daemonPID(sock); err != nil {
				t.Fatal(err)
			}
			out, _, code = runCLI(ctx, t, sock, &Options{}, "uninstall", "--json")
			want = fmt.Sprintf("{\n  \"manager\": \"autostart\",\n  \"files\": [\n    %q\n  ],\n  \"commands\": [],\n  \"started\": false,\n  \"stopped_pid\": %d\n}\n", entry, pid)
			if checkOut(t, "uninstall --json", out, want); code != 0 || answers(sock) {
				t.Errorf("uninstall --json: exit %d, daemon answers %v", code, answers(sock))
			}
		})
	}
}

// TestInstallSetupUninstallWithUserSystemd is the same with a real systemd
// user instance (sdtest): setup writes and enables the unit, systemd
// starts the daemon (this binary as the stand-in, which the unit runs),
// a second setup finds it, and uninstall has systemd stop it.
func TestInstallSetupUninstallWithUserSystemd(t *testing.T) {
	if !sdtest.Enter(t, envStandIn+"=1") {
		return
	}
	sock, cfg := installHome(t)
	unit := filepath.Join(cfg, "systemd", "user", "bm-agent.service")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, errOut, code := runCLI(ctx, t, sock, &Options{}, "setup")
	if code != 0 {
		t.Fatalf("setup: exit %d: %s\n%s", code, errOut, out)
	}
	checkOut(t, "setup", out, "No daemon answers: installing the bm-agent service...\n"+
		"[done] service: installed, started now: a systemd user unit starts bm-agent at login (1 file written)\n"+
		"[done] daemon: running, version v1\n"+
		"[ok  ] login: logged in as me@example.com\n"+
		"[ok  ] first sync: bucket bm-t-1 in step with /n\n"+
		"\nAll set: bm-agent keeps /n and your cloud bucket in step, and starts at login.\n")
	if s := sdtest.Unit(t, "bm-agent.service", "ActiveState"); s != "active" {
		t.Errorf("bm-agent.service is %q, want active", s)
	}
	out, _, code = runCLI(ctx, t, sock, &Options{}, "setup")
	if code != 0 {
		t.Errorf("second setup: exit %d", code)
	}
	checkOut(t, "second setup", out, "[ok  ] daemon: running, version v1\n"+
		"[ok  ] service: installed: a systemd user unit starts bm-agent at login\n"+
		"[ok  ] login: logged in as me@example.com\n"+
		"[ok  ] first sync: bucket bm-t-1 in step with /n\n"+
		"\nEverything is set up already: nothing to do.\n")
	out, errOut, code = runCLI(ctx, t, sock, &Options{}, "uninstall")
	if code != 0 {
		t.Fatalf("uninstall: exit %d: %s", code, errOut)
	}
	checkOut(t, "uninstall", out, "ran systemctl --user disable --now bm-agent.service\nran systemctl --user daemon-reload\nremoved "+unit+
		"\nUninstalled: nothing starts bm-agent at login, and it is not running.\n")
	if _, err := os.Stat(unit); !errors.Is(err, os.ErrNotExist) || answers(sock) {
		t.Errorf("after uninstall: unit %v, daemon answers %v", err, answers(sock))
	}
}
