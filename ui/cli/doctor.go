package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/cloudapi"
	"github.com/basicmachines-co/bm-agent/internal/diskfree"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// Names of the checks the CLI runs itself.
const (
	CheckDaemon   = "daemon reachable"
	CheckKeychain = "keychain"
	CheckInotify  = "inotify limits"
	CheckDisk     = "free disk"
	CheckFolder   = "notes folder"
)

// Free disk thresholds of the free disk check.
const (
	diskFailBelow = 100 << 20 // 100 MiB
	diskWarnBelow = 1 << 30   // 1 GiB
)

// DoctorOutput is what `bm-agent doctor --json` prints: OK is false when a
// check failed (warnings pass).
type DoctorOutput struct {
	OK     bool              `json:"ok"`
	Checks []ipc.DoctorCheck `json:"checks"`
}

// doctorEnv is what the local checks look at; tests replace it.
type doctorEnv struct {
	goos string
	// keychain returns the credential store's backend (cloudapi.Backend*).
	keychain func(home string) string
	readFile func(path string) ([]byte, error)
	// freeBytes returns the bytes free to this user on path's filesystem
	// (errors.ErrUnsupported where it cannot tell).
	freeBytes func(path string) (uint64, error)
}

func realDoctorEnv() doctorEnv {
	return doctorEnv{
		goos: runtime.GOOS,
		keychain: func(home string) string {
			return cloudapi.OpenStore(home, slog.New(slog.DiscardHandler)).Backend()
		},
		readFile:  os.ReadFile,
		freeBytes: diskfree.Available,
	}
}

func doctorCmd(opts *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check that syncing can work here, and say how to fix what cannot",
		Long: `Check that syncing can work here: the daemon answers, and then the daemon's
own checks (keychain, token, server, bucket with the device key, inotify
limits, clock skew, free disk). When no daemon answers it runs the checks it
can by itself (keychain, inotify limits, free disk, notes folder).

Each failing check says how to fix it. The exit code is 0 when every check
passes (warnings pass), 3 when the daemon is not running, 1 when a check
fails. --json prints {"ok": bool, "checks": [{"name", "ok", "warn", "detail",
"fix"}]}.`,
		Example: `  bm-agent doctor
  bm-agent doctor --json | jq '.checks[] | select(.ok | not)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), doctorTimeout)
			defer cancel()
			out, err := runDoctor(ctx, client(opts), opts, realDoctorEnv())
			if opts.JSON {
				if jerr := printJSON(cmd.OutOrStdout(), out); jerr != nil {
					return jerr
				}
			} else {
				writeDoctor(cmd.OutOrStdout(), out)
			}
			return err
		},
	}
}

// runDoctor runs the checks and returns them with the error that sets the
// exit code (nil when all pass).
func runDoctor(ctx context.Context, c *ipc.Client, opts *Options, env doctorEnv) (DoctorOutput, error) {
	var checks []ipc.DoctorCheck
	daemonUp := false
	v, verr := c.Version(ctx)
	switch {
	case verr == nil:
		daemonUp = true
		checks = append(checks, ipc.DoctorCheck{Name: CheckDaemon, OK: true,
			Detail: fmt.Sprintf("bm-agent %s on %s", orDash(v.Version), c.SocketPath())})
	case errors.Is(verr, ipc.ErrNoDaemon):
		checks = append(checks, ipc.DoctorCheck{Name: CheckDaemon, Detail: "nothing answers on " + c.SocketPath(),
			Fix: "run `bm-agent setup` (installs and starts the service), or `bm-agent run` in a terminal"})
	default:
		checks = append(checks, ipc.DoctorCheck{Name: CheckDaemon, Detail: verr.Error(),
			Fix: "restart the daemon (systemctl --user restart bm-agent); `bm-agent logs` may say more"})
	}
	local := true
	if daemonUp {
		rep, err := c.Doctor(ctx)
		switch {
		case err == nil:
			checks = append(checks, rep.Checks...)
			local = false
		case errors.Is(err, ipc.ErrNotImplemented):
			// an older daemon: run what we can here
		default:
			checks = append(checks, ipc.DoctorCheck{Name: "daemon checks", Detail: err.Error(),
				Fix: "`bm-agent logs` may say why the daemon could not run its checks"})
		}
	}
	if local {
		lc, err := localConfig(opts)
		if err != nil {
			checks = append(checks, ipc.DoctorCheck{Name: "config", Detail: err.Error(),
				Fix: "fix or remove the agent's config.json"})
		}
		checks = append(checks, localChecks(lc, env)...)
	}
	out := DoctorOutput{OK: true, Checks: checks}
	failed := 0
	for _, ch := range checks {
		if !ch.OK {
			out.OK = false
			failed++
		}
	}
	switch {
	case errors.Is(verr, ipc.ErrNoDaemon):
		return out, &reportedError{err: fmt.Errorf("doctor: %w", ipc.ErrNoDaemon)}
	case failed > 0:
		return out, &reportedError{err: fmt.Errorf("doctor: %d of %d: %w", failed, len(checks), ErrChecksFailed)}
	}
	return out, nil
}

// localConfig returns this machine's agent home and folder.
func localConfig(opts *Options) (LocalConfig, error) {
	if opts.Local != nil {
		return opts.Local()
	}
	lc := LocalConfig{Home: os.Getenv("BM_AGENT_HOME")}
	if lc.Home == "" {
		d, err := os.UserConfigDir()
		if err != nil {
			return lc, fmt.Errorf("local config: %w", err)
		}
		lc.Home = filepath.Join(d, "bm-agent")
	}
	h, err := os.UserHomeDir()
	if err != nil {
		return lc, fmt.Errorf("local config: %w", err)
	}
	lc.Folder = filepath.Join(h, "basic-memory")
	return lc, nil
}

// localChecks are the checks the CLI can run without a daemon.
func localChecks(lc LocalConfig, env doctorEnv) []ipc.DoctorCheck {
	var checks []ipc.DoctorCheck
	if env.keychain != nil {
		ch := ipc.DoctorCheck{Name: CheckKeychain, OK: true}
		switch b := env.keychain(lc.Home); b {
		case cloudapi.BackendKeyring:
			ch.Detail = "the OS keychain answers"
		default:
			ch.Warn = true
			ch.Detail = "no OS keychain: tokens and the device key go to a file only you can read (" + filepath.Join(lc.Home, cloudapi.SecretsFile) + ")"
			ch.Fix = "on Linux, run a Secret Service (gnome-keyring or KeePassXC) in a session with DBUS_SESSION_BUS_ADDRESS set"
		}
		checks = append(checks, ch)
	}
	dirs, folderCheck := folderCheck(lc.Folder)
	checks = append(checks, folderCheck)
	if env.goos == "linux" {
		checks = append(checks, inotifyCheck(env.readFile, dirs))
	}
	checks = append(checks, diskCheck(env.freeBytes, lc.Folder))
	return checks
}

// maxCountDirs bounds the directory count of the folder check.
const maxCountDirs = 1 << 20

// folderCheck checks that the notes folder is a writable directory and
// counts its directories (each needs an inotify watch).
func folderCheck(folder string) (dirs int, ch ipc.DoctorCheck) {
	ch = ipc.DoctorCheck{Name: CheckFolder}
	fi, err := os.Stat(folder)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		ch.Detail = folder + " does not exist"
		ch.Fix = "create it (mkdir -p " + folder + "), or choose another: bm-agent config set folder DIR"
		return 0, ch
	case err != nil:
		ch.Detail = err.Error()
		ch.Fix = "check the folder's permissions"
		return 0, ch
	case !fi.IsDir():
		ch.Detail = folder + " is not a directory"
		ch.Fix = "move the file away, or choose another folder: bm-agent config set folder DIR"
		return 0, ch
	}
	f, err := os.CreateTemp(folder, ".bm-agent-doctor-*")
	if err != nil {
		ch.Detail = folder + " is not writable: " + err.Error()
		ch.Fix = "make it yours: chown -R $USER " + folder
		return 0, ch
	}
	f.Close()
	os.Remove(f.Name())
	_ = filepath.WalkDir(folder, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs++
			if dirs >= maxCountDirs {
				return filepath.SkipAll
			}
		}
		return nil
	})
	ch.OK = true
	ch.Detail = fmt.Sprintf("%s: writable, %d directories", folder, dirs)
	return dirs, ch
}

// inotifyCheck compares the user's inotify watch limit with the folder's
// directories (one watch each; other programs need some too).
func inotifyCheck(readFile func(string) ([]byte, error), dirs int) ipc.DoctorCheck {
	ch := ipc.DoctorCheck{Name: CheckInotify}
	const fix = "raise it: echo fs.inotify.max_user_watches=524288 | sudo tee /etc/sysctl.d/90-bm-agent.conf && sudo sysctl --system"
	b, err := readFile("/proc/sys/fs/inotify/max_user_watches")
	if err != nil {
		ch.OK, ch.Warn = true, true
		ch.Detail = "cannot read the limit: " + err.Error()
		return ch
	}
	limit, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		ch.OK, ch.Warn = true, true
		ch.Detail = "cannot parse the limit: " + err.Error()
		return ch
	}
	ch.Detail = fmt.Sprintf("max_user_watches %d for %d directories", limit, dirs)
	switch {
	case dirs > limit:
		ch.Fix = fix
	case dirs > limit/2:
		ch.OK, ch.Warn, ch.Fix = true, true, fix
		ch.Detail += " (more than half the limit: other programs need watches too)"
	default:
		ch.OK = true
	}
	return ch
}

// diskCheck checks the free space on the folder's filesystem (or its
// nearest existing parent's).
func diskCheck(free func(string) (uint64, error), folder string) ipc.DoctorCheck {
	ch := ipc.DoctorCheck{Name: CheckDisk}
	p := folder
	for {
		if _, err := os.Stat(p); err == nil || filepath.Dir(p) == p {
			break
		}
		p = filepath.Dir(p)
	}
	n, err := free(p)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		ch.OK = true
		ch.Detail = "not checked on " + runtime.GOOS
		return ch
	case err != nil:
		ch.OK, ch.Warn = true, true
		ch.Detail = "cannot tell: " + err.Error()
		return ch
	}
	ch.Detail = fmt.Sprintf("%s free on %s", humanSize(int64(n)), p)
	switch {
	case n < diskFailBelow:
		ch.Fix = "free some space: a sync pass needs room for the files it downloads"
	case n < diskWarnBelow:
		ch.OK, ch.Warn = true, true
		ch.Fix = "free some space soon"
	default:
		ch.OK = true
	}
	return ch
}

// writeDoctor prints the checks for a person.
func writeDoctor(w io.Writer, out DoctorOutput) {
	failed, warned := 0, 0
	for _, ch := range out.Checks {
		mark := "ok  "
		switch {
		case !ch.OK:
			mark = "FAIL"
			failed++
		case ch.Warn:
			mark = "warn"
			warned++
		}
		line := fmt.Sprintf("[%s] %s", mark, ch.Name)
		if ch.Detail != "" {
			line += ": " + ch.Detail
		}
		fmt.Fprintln(w, line)
		if ch.Fix != "" && (!ch.OK || ch.Warn) {
			fmt.Fprintf(w, "       fix: %s\n", ch.Fix)
		}
	}
	switch {
	case failed > 0:
		fmt.Fprintf(w, "\n%d of %d checks failed.\n", failed, len(out.Checks))
	case warned > 0:
		fmt.Fprintf(w, "\nAll %d checks passed (%d with a warning).\n", len(out.Checks), warned)
	default:
		fmt.Fprintf(w, "\nAll %d checks passed.\n", len(out.Checks))
	}
}

// doctorTimeout bounds one doctor run's wait on the daemon.
const doctorTimeout = 30 * time.Second
