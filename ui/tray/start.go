package tray

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// StartDaemon starts bm-agent for "Start bm-agent": through the service
// manager when `bm-agent install` registered it (systemctl --user on
// Linux, launchctl on macOS), else as `bm-agent run` detached from the
// tray (its own session, no terminal), so that quitting the tray leaves
// it running. bm-agent is looked for next to bm-tray, then on PATH.
func StartDaemon(ctx context.Context, socket string) error {
	if err := startService(ctx); err == nil {
		return nil
	}
	agent, err := agentPath()
	if err != nil {
		return err
	}
	args := []string{"run"}
	if socket != "" && socket != ipc.DefaultSocketPath() {
		args = append(args, "--socket", socket)
	}
	cmd := exec.Command(agent, args...)
	cmd.SysProcAttr = detached()
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("start bm-agent: %w", err)
	}
	defer devnull.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start bm-agent: %w", err)
	}
	go func() { _ = cmd.Wait() }() // reap it if it stops while the tray runs
	return nil
}

// agentPath finds the bm-agent binary.
func agentPath() (string, error) {
	name := "bm-agent"
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("start bm-agent: not found next to bm-tray nor on PATH: %w", err)
	}
	return p, nil
}

// errNoService: bm-agent is not installed as a service here.
var errNoService = errors.New("bm-agent is not installed as a service")

// startService starts the installed service, if there is one.
func startService(ctx context.Context) error {
	home, err := os.UserHomeDir()
	if err != nil {
		return errNoService
	}
	switch runtime.GOOS {
	case "linux":
		cfg := os.Getenv("XDG_CONFIG_HOME")
		if cfg == "" {
			cfg = filepath.Join(home, ".config")
		}
		if _, err := os.Stat(filepath.Join(cfg, "systemd", "user", "bm-agent.service")); err != nil {
			return errNoService
		}
		if out, err := exec.CommandContext(ctx, "systemctl", "--user", "start", "bm-agent").CombinedOutput(); err != nil {
			return fmt.Errorf("systemctl --user start bm-agent: %w: %s", err, out)
		}
		return nil
	case "darwin":
		const label = "com.basicmemory.bm-agent"
		if _, err := os.Stat(filepath.Join(home, "Library", "LaunchAgents", label+".plist")); err != nil {
			return errNoService
		}
		target := fmt.Sprintf("gui/%d/%s", os.Getuid(), label)
		if out, err := exec.CommandContext(ctx, "launchctl", "kickstart", target).CombinedOutput(); err != nil {
			return fmt.Errorf("launchctl kickstart %s: %w: %s", target, err, out)
		}
		return nil
	}
	return errNoService
}
