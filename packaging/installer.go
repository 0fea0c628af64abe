package packaging

import (
	"context"
	"os"
	"os/exec"
)

// Runner runs a command and returns its combined output. Tests pass a fake
// where the real service manager (a systemd user instance, launchd) is not
// there to talk to.
type Runner func(ctx context.Context, name string, args ...string) ([]byte, error)

// Spawner starts path with args and env as a process of its own that
// outlives the caller (its own session, no terminal), and does not wait
// for it.
type Spawner func(path string, args, env []string) error

// Installer installs and removes the agent's service for the current user.
type Installer struct {
	// HomeDir is the user's home (default os.UserHomeDir).
	HomeDir string
	// ConfigDir is $XDG_CONFIG_HOME on Linux (default HomeDir/.config).
	ConfigDir string
	// Run runs the service manager's commands (default: exec).
	Run Runner
	// Spawn starts the daemon now where no service manager does (Linux
	// without a user systemd; default: a detached process), and the tray
	// after an install that started the daemon in a desktop session.
	Spawn Spawner
	// Desktop reports whether a graphical session is here to show the
	// tray (default: DISPLAY or WAYLAND_DISPLAY is set).
	Desktop func() bool
}

// desktop reports whether a tray started now would be seen.
func (i *Installer) desktop() bool {
	if i.Desktop != nil {
		return i.Desktop()
	}
	return os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != ""
}

// New returns an Installer for the current user.
func New() *Installer {
	home, _ := os.UserHomeDir()
	cfg := os.Getenv("XDG_CONFIG_HOME")
	return &Installer{HomeDir: home, ConfigDir: cfg, Run: execRunner, Spawn: spawnDetached}
}

func execRunner(ctx context.Context, name string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}

// How the agent starts at login ([Result.Manager]).
const (
	ManagerSystemd   = "systemd"   // a systemd user unit
	ManagerAutostart = "autostart" // an XDG autostart entry (Linux without a user systemd)
	ManagerLaunchd   = "launchd"   // a launchd agent
	ManagerService   = "service"   // the platform's service manager (Windows)
)

// Result says what an install or uninstall did (`bm-agent install --json`
// prints it).
type Result struct {
	// Manager is how the agent starts at login (Manager*; "" when
	// uninstall found nothing installed).
	Manager string `json:"manager,omitempty"`
	// Fallback says, in one sentence, why the agent does not start
	// through the platform's usual service manager (no user systemd).
	Fallback string `json:"fallback,omitempty"`
	// Files written or removed.
	Files []string `json:"files"`
	// Commands run, and succeeded, for the user to see.
	Commands []string `json:"commands"`
	// Started: the daemon was started now (by the service manager, or
	// detached where there is none).
	Started bool `json:"started"`
	// TrayStarted: the tray was started now too (an install that started
	// the daemon, in a desktop session); otherwise it starts at the next
	// login, from its autostart entry.
	TrayStarted bool `json:"tray_started,omitempty"`
}
