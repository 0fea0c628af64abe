package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/packaging"
)

// envServer names the server in the environment (cloudapi.EnvHost).
const envServer = "BASIC_MEMORY_CLOUD_HOST"

// serviceEnv are the variables a service inherits from the shell that
// installs it, so it talks to the same cloud as the CLI.
var serviceEnv = []string{envServer, "BASIC_MEMORY_CLOUD_DOMAIN", "BASIC_MEMORY_CLOUD_CLIENT_ID", "BM_AGENT_KEYRING"}

// serviceParams describes an install of the running binary.
func serviceParams(folder, home string) (packaging.Params, error) {
	exe, err := os.Executable()
	if err != nil {
		return packaging.Params{}, fmt.Errorf("install: find this binary: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return packaging.Params{}, fmt.Errorf("install: find this binary: %w", err)
	}
	p := packaging.Params{AgentPath: exe, Folder: folder, Home: home, Env: map[string]string{}}
	if folder != "" {
		if p.Folder, err = filepath.Abs(folder); err != nil {
			return p, fmt.Errorf("install: %w", err)
		}
	}
	tray := filepath.Join(filepath.Dir(exe), "bm-tray")
	if _, err := os.Stat(tray); err == nil {
		p.TrayPath = tray
	}
	for _, k := range serviceEnv {
		if v := os.Getenv(k); v != "" {
			p.Env[k] = v
		}
	}
	return p, nil
}

// InstallResult is what `bm-agent install --json` prints: what was
// written and run (packaging.Result: manager, fallback, files, commands,
// started), and whether the daemon answers now.
type InstallResult struct {
	packaging.Result
	// AlreadyRunning: a daemon answered before the install, so none was
	// started.
	AlreadyRunning bool `json:"already_running"`
	// DaemonRunning: a daemon answers on the socket after the install.
	DaemonRunning bool `json:"daemon_running"`
}

// UninstallResult is what `bm-agent uninstall --json` prints.
type UninstallResult struct {
	packaging.Result
	// StoppedPID is the daemon uninstall stopped itself (one no service
	// manager stops: started by the autostart entry, or in a terminal).
	StoppedPID int `json:"stopped_pid,omitempty"`
}

// installWait is how long install waits for the daemon it started.
var installWait = 30 * time.Second

// stopWait is how long uninstall waits for a daemon to stop.
var stopWait = 20 * time.Second

func installCmd(opts *Options) *cobra.Command {
	var folder, home string
	var noStart bool
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install bm-agent as a service that starts at login (and bm-tray at login when it is beside it)",
		Long: `Install bm-agent so that it starts at login, and start it now.

On Linux it writes a systemd user unit and enables it when a user systemd
answers (systemctl --user); where none does (no session bus: a container,
WSL) it says so and writes an XDG autostart entry,
~/.config/autostart/bm-agent.desktop, that runs 'bm-agent run' at login, and
starts the daemon now. On macOS it is a launchd agent, on Windows a service.
When a daemon already answers, none is started. A failed install leaves
nothing behind. --json prints {"manager", "fallback", "files", "commands",
"started", "already_running", "daemon_running"}.`,
		Example: `  bm-agent install
  bm-agent install --folder ~/notes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := runInstall(cmd.Context(), client(opts), serviceInstaller(opts), folder, home, !noStart)
			out := cmd.OutOrStdout()
			if opts.JSON {
				if jerr := printJSON(out, installJSON(res)); jerr != nil {
					return jerr
				}
				return err
			}
			writeInstall(out, res, err == nil)
			return err
		},
	}
	cmd.Flags().StringVar(&folder, "folder", "", "the notes folder the service syncs (default: the agent's config)")
	cmd.Flags().StringVar(&home, "home", os.Getenv("BM_AGENT_HOME"), "the agent's config and state dir")
	cmd.Flags().BoolVar(&noStart, "no-start", false, "install without starting it now")
	return cmd
}

// runInstall installs the service, starting the daemon with start unless
// one answers already, and then checks that one answers.
func runInstall(ctx context.Context, c *ipc.Client, inst ServiceInstaller, folder, home string, start bool) (InstallResult, error) {
	var res InstallResult
	if _, err := c.Status(ctx); err == nil {
		res.AlreadyRunning, start = true, false
	}
	r, err := inst.Install(ctx, folder, home, start)
	res.Result = r
	if err != nil {
		return res, err
	}
	switch {
	case res.AlreadyRunning:
		res.DaemonRunning = true
	case res.Started:
		c.StartupWait = installWait
		_, serr := c.Status(ctx)
		c.StartupWait = 0
		res.DaemonRunning = serr == nil
	}
	return res, nil
}

// writeInstall prints what install did, each line once and true: the
// fallback first, then the files written and the commands that succeeded
// (a failed one is the error), then where that leaves the daemon.
func writeInstall(w io.Writer, res InstallResult, ok bool) {
	if res.Fallback != "" {
		fmt.Fprintf(w, "%s.\n", capitalize(res.Fallback))
	}
	for _, f := range res.Files {
		fmt.Fprintln(w, "wrote", f)
	}
	for _, c := range res.Commands {
		fmt.Fprintln(w, "ran", c)
	}
	if !ok {
		return
	}
	fmt.Fprintf(w, "Installed: %s.\n", startsAtLogin(res.Manager))
	switch {
	case res.AlreadyRunning:
		fmt.Fprintln(w, "A daemon already answers, so no other was started. `bm-agent status` shows what it is doing.")
	case res.DaemonRunning:
		fmt.Fprintln(w, "The daemon is running. `bm-agent status` shows what it is doing.")
	case res.Started:
		fmt.Fprintln(w, "The daemon was started but does not answer yet: `bm-agent doctor` and `bm-agent logs` may say why.")
	default:
		fmt.Fprintln(w, "It is not running now (--no-start): it starts at the next login, or with `bm-agent run`.")
	}
}

// startsAtLogin says how the agent starts at login, for manager.
func startsAtLogin(manager string) string {
	switch manager {
	case packaging.ManagerSystemd:
		return "a systemd user unit starts bm-agent at login"
	case packaging.ManagerAutostart:
		return "an XDG autostart entry starts bm-agent at login"
	case packaging.ManagerLaunchd:
		return "a launchd agent starts bm-agent at login"
	case packaging.ManagerService:
		return "a service starts bm-agent at login"
	}
	return "nothing starts bm-agent at login"
}

func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

func uninstallCmd(opts *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "uninstall",
		Short: "Stop and remove the bm-agent service (your notes, config and login stay)",
		Long: `Stop bm-agent and remove everything 'bm-agent install' wrote: the systemd
user unit (disabled and stopped), the autostart entries of the agent and the
tray, the launchd agent or the Windows service. A daemon still answering
after that (started by the autostart entry, or in a terminal) is stopped too.
Your notes, the agent's config and state, and your login stay. --json prints
{"manager", "files", "commands", "stopped_pid"}.`,
		Example: "  bm-agent uninstall\n  bm-agent uninstall --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := runUninstall(cmd.Context(), client(opts), serviceInstaller(opts))
			out := cmd.OutOrStdout()
			if opts.JSON {
				if jerr := printJSON(out, uninstallJSON(res)); jerr != nil {
					return jerr
				}
				return err
			}
			for _, c := range res.Commands {
				fmt.Fprintln(out, "ran", c)
			}
			for _, f := range res.Files {
				fmt.Fprintln(out, "removed", f)
			}
			if res.StoppedPID != 0 {
				fmt.Fprintf(out, "stopped the daemon (pid %d)\n", res.StoppedPID)
			}
			if err != nil {
				return err
			}
			if len(res.Files) == 0 && res.StoppedPID == 0 {
				fmt.Fprintln(out, "Nothing was installed: nothing to do.")
				return nil
			}
			fmt.Fprintln(out, "Uninstalled: nothing starts bm-agent at login, and it is not running.")
			return nil
		},
	}
}

// runUninstall removes the service, then stops a daemon that still answers.
func runUninstall(ctx context.Context, c *ipc.Client, inst ServiceInstaller) (UninstallResult, error) {
	var res UninstallResult
	r, err := inst.Uninstall(ctx)
	res.Result = r
	if err != nil {
		return res, err
	}
	if _, err := c.Status(ctx); err != nil {
		return res, nil // none answers: nothing to stop
	}
	pid, err := stopDaemon(ctx, c)
	res.StoppedPID = pid
	return res, err
}

// errStillRunning: the daemon did not stop in time.
var errStillRunning = errors.New("the daemon still answers")

// stopDaemon stops the daemon answering on c's socket (SIGTERM to the
// process that serves it) and waits until it no longer answers.
func stopDaemon(ctx context.Context, c *ipc.Client) (int, error) {
	pid, err := daemonPID(c.SocketPath())
	if err != nil {
		return 0, fmt.Errorf("uninstall: stop the daemon: %w", err)
	}
	if pid == os.Getpid() {
		return 0, fmt.Errorf("uninstall: stop the daemon: it is this process (pid %d)", pid)
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return 0, fmt.Errorf("uninstall: stop the daemon: %w", err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return 0, fmt.Errorf("uninstall: stop the daemon (pid %d): %w", pid, err)
	}
	ctx, cancel := context.WithTimeout(ctx, stopWait)
	defer cancel()
	for {
		if _, err := c.Status(ctx); errors.Is(err, ipc.ErrNoDaemon) {
			return pid, nil
		}
		select {
		case <-ctx.Done():
			return pid, fmt.Errorf("uninstall: stop the daemon (pid %d): %w after %s", pid, errStillRunning, stopWait)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// installJSON and uninstallJSON are res as --json prints it: lists, empty
// rather than null.
func installJSON(res InstallResult) InstallResult {
	res.Result = resultJSON(res.Result)
	return res
}

func uninstallJSON(res UninstallResult) UninstallResult {
	res.Result = resultJSON(res.Result)
	return res
}

func resultJSON(res packaging.Result) packaging.Result {
	if res.Files == nil {
		res.Files = []string{}
	}
	if res.Commands == nil {
		res.Commands = []string{}
	}
	return res
}
