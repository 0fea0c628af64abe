package packaging

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

func (i *Installer) configDir() string {
	if i.ConfigDir != "" {
		return i.ConfigDir
	}
	return filepath.Join(i.HomeDir, ".config")
}

// UnitPath is where the systemd user unit goes.
func (i *Installer) UnitPath() string {
	return filepath.Join(i.configDir(), "systemd", "user", ServiceName+".service")
}

// AgentAutostartPath is where the agent's XDG autostart entry goes when
// there is no user systemd.
func (i *Installer) AgentAutostartPath() string {
	return filepath.Join(i.configDir(), "autostart", ServiceName+".desktop")
}

// AutostartPath is where the tray's XDG autostart entry goes.
func (i *Installer) AutostartPath() string {
	return filepath.Join(i.configDir(), "autostart", "bm-tray.desktop")
}

func (i *Installer) systemctl(ctx context.Context, res *Result, args ...string) error {
	return i.try(ctx, res, "systemctl", append([]string{"--user"}, args...)...)
}

// ErrNoUserSystemd: no systemd user instance answers here (no session bus:
// a container, WSL, a login without systemd --user).
var ErrNoUserSystemd = errors.New("no user systemd here")

// UserSystemd reports whether a systemd user instance answers: nil when
// `systemctl --user show-environment` succeeds, else an error wrapping
// [ErrNoUserSystemd] with what systemctl said (e.g. "Failed to connect to
// bus: No medium found"), quoted as it is, never parsed. The unit file
// being there, or /run/systemd/system (what kardianos/service checks),
// says nothing about a user instance.
func (i *Installer) UserSystemd(ctx context.Context) error {
	out, err := i.Run(ctx, "systemctl", "--user", "show-environment")
	if err == nil {
		return nil
	}
	said := firstLine(out)
	if said == "" {
		said = err.Error()
	}
	return fmt.Errorf("%w (systemctl --user: %s)", ErrNoUserSystemd, said)
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(s)
}

// Installed says what starts the agent at login, as it is now, not as an
// install remembers it: ManagerSystemd when the unit is there and a user
// systemd answers, ManagerAutostart when the agent's autostart entry is
// there, "" otherwise (a unit without a user systemd starts nothing).
func (i *Installer) Installed(ctx context.Context) string {
	if _, err := os.Stat(i.UnitPath()); err == nil && i.UserSystemd(ctx) == nil {
		return ManagerSystemd
	}
	if _, err := os.Stat(i.AgentAutostartPath()); err == nil {
		return ManagerAutostart
	}
	return ""
}

// undo puts back the files an install wrote, as they were before it.
type undo []func()

func (u undo) run() {
	for j := len(u) - 1; j >= 0; j-- {
		u[j]()
	}
}

// write writes b to path, recording it in res when it changed it, and how
// to put the old file back in u.
func (u *undo) write(res *Result, path string, b []byte) error {
	old, err := os.ReadFile(path)
	existed := err == nil
	wrote, err := writeFile(path, b, 0o644)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if !wrote {
		return nil
	}
	res.Files = append(res.Files, path)
	*u = append(*u, func() {
		if existed {
			_, _ = writeFile(path, old, 0o644)
		} else {
			_ = os.Remove(path)
		}
	})
	return nil
}

// Install makes the agent start at login, and with start starts it now.
// With a user systemd (see [Installer.UserSystemd]) it writes the user unit
// and enables it; without one it writes the agent's XDG autostart entry
// and, with start, starts `bm-agent run` detached (Result.Fallback says
// why, in one sentence). The tray's autostart entry is written too when
// p.TrayPath is set. When a step fails, the files this install wrote are
// put back as they were.
func (i *Installer) Install(ctx context.Context, p Params, start bool) (res Result, err error) {
	unit, err := SystemdUnit(p)
	if err != nil {
		return res, err
	}
	entry, err := AgentDesktopEntry(p)
	if err != nil {
		return res, err
	}
	var tray []byte
	if p.TrayPath != "" {
		if tray, err = TrayDesktopEntry(p); err != nil {
			return res, err
		}
	}
	var u undo
	defer func() {
		if err != nil {
			u.run()
			res.Files, res.Started = nil, false
		}
	}()
	sysErr := i.UserSystemd(ctx)
	if sysErr == nil {
		res.Manager = ManagerSystemd
		if err := u.write(&res, i.UnitPath(), unit); err != nil {
			return res, err
		}
		if tray != nil {
			if err := u.write(&res, i.AutostartPath(), tray); err != nil {
				return res, err
			}
		}
		// after a failure: the files as they were, and systemd told so
		rollback := func() {
			var r Result
			u.run()
			u = nil
			_ = i.systemctl(ctx, &r, "daemon-reload")
		}
		if err := i.systemctl(ctx, &res, "daemon-reload"); err != nil {
			rollback()
			return res, fmt.Errorf("install: %w", err)
		}
		enable := []string{"enable", ServiceName + ".service"}
		if start {
			enable = []string{"enable", "--now", ServiceName + ".service"}
		}
		if err := i.systemctl(ctx, &res, enable...); err != nil {
			// enable may have linked the unit before the start failed
			var r Result
			_ = i.systemctl(ctx, &r, "disable", ServiceName+".service")
			rollback()
			return res, fmt.Errorf("install: %w", err)
		}
		res.Started = start
		// an autostart entry of an earlier install without systemd would start a second daemon
		if err := os.Remove(i.AgentAutostartPath()); err == nil {
			res.Files = append(res.Files, i.AgentAutostartPath())
		} else if !errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("install: %w", err)
		}
		i.startTray(&res, p, start && tray != nil)
		return res, nil
	}
	res.Manager = ManagerAutostart
	res.Fallback = sysErr.Error() + ": bm-agent starts at login through " + i.AgentAutostartPath() + " instead"
	if err := u.write(&res, i.AgentAutostartPath(), entry); err != nil {
		return res, err
	}
	if tray != nil {
		if err := u.write(&res, i.AutostartPath(), tray); err != nil {
			return res, err
		}
	}
	if start {
		if err := i.Spawn(p.AgentPath, p.runArgs(), p.environ(os.Environ())); err != nil {
			return res, fmt.Errorf("install: start %s run: %w", p.AgentPath, err)
		}
		res.Commands = append(res.Commands, p.AgentPath+" "+strings.Join(p.runArgs(), " ")+" (detached)")
		res.Started = true
	}
	i.startTray(&res, p, start && tray != nil)
	return res, nil
}

// startTray starts the tray now, detached, when want and a desktop session
// is here: its icon shows right after the install, not at the next login.
// A tray that does not start fails nothing (its autostart entry starts it
// at the next login); Result.TrayStarted says whether it did.
func (i *Installer) startTray(res *Result, p Params, want bool) {
	if !want || !i.desktop() {
		return
	}
	if err := i.Spawn(p.TrayPath, nil, p.environ(os.Environ())); err != nil {
		return
	}
	res.Commands = append(res.Commands, p.TrayPath+" (detached)")
	res.TrayStarted = true
}

// Uninstall stops and disables the unit (when a user systemd answers) and
// removes what Install wrote: the unit, the agent's and the tray's
// autostart entries. It leaves the agent's config, state and the notes
// folder alone, and does not stop a daemon no service manager started
// (the CLI does).
func (i *Installer) Uninstall(ctx context.Context) (Result, error) {
	var res Result
	_, statErr := os.Stat(i.UnitPath())
	systemd := statErr == nil && i.UserSystemd(ctx) == nil
	if _, err := os.Stat(i.AgentAutostartPath()); err == nil {
		res.Manager = ManagerAutostart
	}
	if systemd {
		res.Manager = ManagerSystemd
		// A unit that is already stopped or unknown to systemd is fine.
		_ = i.systemctl(ctx, &res, "disable", "--now", ServiceName+".service")
	}
	if err := removeFiles(&res, i.UnitPath(), i.AgentAutostartPath(), i.AutostartPath()); err != nil {
		return res, err
	}
	if systemd {
		if err := i.systemctl(ctx, &res, "daemon-reload"); err != nil {
			return res, fmt.Errorf("uninstall: %w", err)
		}
	}
	return res, nil
}

// runArgs are the arguments of `bm-agent run` for p.
func (p Params) runArgs() []string {
	args := []string{"run"}
	if p.Folder != "" {
		args = append(args, "--folder", p.Folder)
	}
	return args
}

// environ is base with p's environment (and BM_AGENT_HOME) set over it.
func (p Params) environ(base []string) []string {
	set := map[string]string{}
	for k, v := range p.Env {
		set[k] = v
	}
	if p.Home != "" {
		set["BM_AGENT_HOME"] = p.Home
	}
	var env []string
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; !ok {
			env = append(env, kv)
		}
	}
	for _, e := range envPairs(set) {
		env = append(env, e.Key+"="+e.Value)
	}
	return env
}
