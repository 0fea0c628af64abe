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

// Installer installs and removes the agent's service for the current user.
type Installer struct {
	// HomeDir is the user's home (default os.UserHomeDir).
	HomeDir string
	// ConfigDir is $XDG_CONFIG_HOME on Linux (default HomeDir/.config).
	ConfigDir string
	// Run runs the service manager's commands (default: exec).
	Run Runner
}

// New returns an Installer for the current user.
func New() *Installer {
	home, _ := os.UserHomeDir()
	cfg := os.Getenv("XDG_CONFIG_HOME")
	return &Installer{HomeDir: home, ConfigDir: cfg, Run: execRunner}
}

func execRunner(ctx context.Context, name string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}

// Result says what an install or uninstall did (`bm-agent install --json`
// prints it: {"files": [...], "commands": [...]}).
type Result struct {
	// Files written or removed.
	Files []string `json:"files"`
	// Commands run, for the user to see.
	Commands []string `json:"commands"`
}
