//go:build linux || darwin

package packaging

import (
	"context"
	"os"
	"os/exec"
	"syscall"
)

// try runs a service manager command and records it in res only when it
// succeeded: a command that failed is in the error (with its output), not
// in the list of what was done.
func (i *Installer) try(ctx context.Context, res *Result, name string, args ...string) error {
	var r Result
	if err := i.run(ctx, &r, name, args...); err != nil {
		return err
	}
	res.Commands = append(res.Commands, r.Commands...)
	return nil
}

// spawnDetached starts path in its own session with no terminal, its
// output discarded (`bm-agent logs` reads the daemon's log), and leaves it
// running.
func spawnDetached(path string, args, env []string) error {
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}
