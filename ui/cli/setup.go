package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/packaging"
)

// ServiceInstaller installs the agent's service for `bm-agent setup`,
// `install` and `uninstall`.
type ServiceInstaller interface {
	// Installed says what starts the agent at login as things are now
	// (packaging.ManagerSystemd, ManagerAutostart, ...; "" for nothing):
	// read from the files and the service manager, never remembered.
	Installed(ctx context.Context) string
	// Install installs the service (syncing folder, with its state in
	// home; "" for the defaults), and starts it now with start.
	Install(ctx context.Context, folder, home string, start bool) (packaging.Result, error)
	// Uninstall removes what Install wrote, stopping the service.
	Uninstall(ctx context.Context) (packaging.Result, error)
}

// serviceInstaller is opts.Installer, or the real one.
func serviceInstaller(opts *Options) ServiceInstaller {
	if opts.Installer != nil {
		return opts.Installer
	}
	return packagingInstaller{}
}

// packagingInstaller is the real [ServiceInstaller].
type packagingInstaller struct{}

func (packagingInstaller) Installed(ctx context.Context) string {
	return packaging.New().Installed(ctx)
}

func (packagingInstaller) Install(ctx context.Context, folder, home string, start bool) (packaging.Result, error) {
	p, err := serviceParams(folder, home)
	if err != nil {
		return packaging.Result{}, err
	}
	return packaging.New().Install(ctx, p, start)
}

func (packagingInstaller) Uninstall(ctx context.Context) (packaging.Result, error) {
	return packaging.New().Uninstall(ctx)
}

// Results of a [SetupStep].
const (
	StepOK     = "ok"     // it was already so
	StepDone   = "done"   // setup did it now
	StepFailed = "failed" // it failed, and setup went on without it
)

// SetupStep is one step of `bm-agent setup`.
type SetupStep struct {
	Name   string `json:"name"`
	Result string `json:"result"`
	Detail string `json:"detail,omitempty"`
}

// SetupResult is what `bm-agent setup --json` prints at the end.
type SetupResult struct {
	// Changed is false when everything was already set up.
	Changed bool        `json:"changed"`
	Steps   []SetupStep `json:"steps"`
	Status  *ipc.Status `json:"status,omitempty"`
}

// setupSocketWait is how long setup waits for a freshly started service's
// socket.
var setupSocketWait = 30 * time.Second

func setupCmd(opts *Options) *cobra.Command {
	var folder, home, server string
	var lf loginFlags
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Set up syncing in one go: service, login, key and first sync",
		Long: `Set up syncing in one go. setup starts or finds the daemon (when none
answers it installs the bm-agent service and waits for it), logs in if needed
(a browser, or a code to enter on another device where there is none), waits
for this device's key and the first sync (with its progress), and makes sure
the service is installed so syncing starts at login.

With --server URL it first saves the server (cloud_host in bm-agent's
config), so that the service uses it. It is safe to run again: on a machine
that is set up it checks each step and says that everything is fine. --json prints {"changed", "steps": [{"name",
"result": "ok"|"done"|"failed", "detail"}], "status"} at the end.`,
		Example: `  bm-agent setup
  bm-agent setup --folder ~/notes
  bm-agent setup --device        # log in with a code entered on another device
  bm-agent setup --server https://bm.example.com   # a self-hosted bm-server, saved for the service`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lf.deviceSet = cmd.Flags().Changed("device")
			inst := serviceInstaller(opts)
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			res, err := runSetup(ctx, cmd.OutOrStdout(), client(opts), inst, setupFlags{errOut: cmd.ErrOrStderr(), folder: folder, home: home, server: server, save: opts.SaveSetting, login: lf, json: opts.JSON})
			if opts.JSON {
				if jerr := printJSON(cmd.OutOrStdout(), res); jerr != nil {
					return jerr
				}
			}
			if errors.Is(err, context.DeadlineExceeded) && cmd.Context().Err() == nil {
				return fmt.Errorf("setup: not done after %s (--timeout): `bm-agent status` says where it is", timeout)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&folder, "folder", "", "the notes folder to sync, when setup installs the service (default: the agent's config)")
	f.StringVar(&home, "home", os.Getenv("BM_AGENT_HOME"), "the agent's config and state dir, when setup installs the service")
	f.StringVar(&server, "server", "", serverFlagHelp)
	f.BoolVar(&lf.noBrowser, "no-browser", false, "print the login URL instead of opening a browser")
	f.BoolVar(&lf.device, "device", false, "log in with a code entered on another device")
	f.DurationVar(&timeout, "timeout", 30*time.Minute, "give up after this long (the login and the first sync included)")
	return cmd
}

type setupFlags struct {
	errOut       io.Writer
	folder, home string
	server       string                              // --server: saved first
	save         func(home, key, value string) error // Options.SaveSetting
	login        loginFlags
	json         bool
}

// runSetup does the setup steps in order; each step leaves alone what is
// already done.
func runSetup(ctx context.Context, out io.Writer, c *ipc.Client, inst ServiceInstaller, sf setupFlags) (SetupResult, error) {
	var res SetupResult
	began := time.Now()
	say := func(format string, args ...any) {
		if !sf.json {
			fmt.Fprintf(out, format, args...)
		}
	}
	step := func(name, result, detail string) {
		res.Steps = append(res.Steps, SetupStep{Name: name, Result: result, Detail: detail})
		if result == StepDone {
			res.Changed = true
		}
		say("[%-4s] %s: %s\n", result, name, detail)
	}

	// 0. the server, saved where the service finds it
	if sf.server != "" {
		url := strings.TrimRight(strings.TrimSpace(sf.server), "/")
		if v := os.Getenv(envServer); v != "" && strings.TrimRight(v, "/") != url {
			// the service would inherit it (serviceParams), and it comes first
			return res, usageErrorf("setup --server %s: %s=%s is set here, and a service installed from here would take it over the saved server: unset it, or use that server", url, envServer, v)
		}
		changed, err := useServer(ctx, c, sf.save, sf.home, url)
		if err != nil {
			return res, fmt.Errorf("setup: %w", err)
		}
		result := StepOK
		if changed {
			result = StepDone
		}
		step("server", result, url+", saved in bm-agent's config")
	}

	// 1. the daemon, and the service that starts it
	var serviceErr error // an install that failed while a daemon answers
	st, err := c.Status(ctx)
	switch {
	case errors.Is(err, ipc.ErrNoDaemon):
		say("No daemon answers: installing the bm-agent service...\n")
		r, ierr := inst.Install(ctx, sf.folder, sf.home, true)
		if ierr != nil {
			return res, fmt.Errorf("setup: install the service: %w", ierr)
		}
		if r.Fallback != "" {
			say("%s.\n", capitalize(r.Fallback))
		}
		step("service", StepDone, installedDetail(r.Manager, "started now", len(r.Files)))
		if r.TrayStarted {
			step("tray", StepDone, "bm-tray started: its icon is in the panel")
		}
		c.StartupWait = setupSocketWait
		st, err = c.Status(ctx)
		c.StartupWait = 0
		if err != nil {
			return res, fmt.Errorf("setup: the service was installed but the daemon does not answer (`bm-agent doctor` or `bm-agent logs` may say why): %w", err)
		}
		step("daemon", StepDone, "running, version "+orDash(st.Version))
	case err != nil:
		return res, fmt.Errorf("setup: %w", err)
	default:
		step("daemon", StepOK, "running, version "+orDash(st.Version))
		if m := inst.Installed(ctx); m != "" {
			step("service", StepOK, "installed: "+startsAtLogin(m))
		} else {
			// a daemon runs (in a terminal, say): install without starting a second one
			// a daemon answers, so syncing works without the service: go on, and say so at the end
			r, ierr := inst.Install(ctx, sf.folder, sf.home, false)
			switch {
			case ierr != nil:
				serviceErr = fmt.Errorf("setup: syncing works while this daemon runs, but nothing starts bm-agent at login: install the service: %w", ierr)
				step("service", StepFailed, ierr.Error())
			default:
				if r.Fallback != "" {
					say("%s.\n", capitalize(r.Fallback))
				}
				step("service", StepDone, installedDetail(r.Manager, "from the next login", len(r.Files)))
			}
		}
	}

	// 2. login
	if st.LoggedIn && st.State != ipc.StateLoginRequired {
		if st.State == ipc.StateSubscriptionRequired {
			say("%s\n", subscriptionMessage(st.SubscribeURL))
			res.Status = &st
			return res, fmt.Errorf("setup: %w", ErrSubscriptionRequired)
		}
		step("login", StepOK, "logged in as "+orDash(st.Account))
	} else {
		lout := out
		if sf.json {
			lout = sf.errOut // the URL to open still reaches the person
		}
		lst, err := runLogin(ctx, lout, c, sf.login, false)
		if err != nil {
			res.Status = &lst
			return res, fmt.Errorf("setup: %w", err)
		}
		step("login", StepDone, "logged in as "+orDash(lst.Account))
	}

	// 3. the key and the first sync
	if st, err = c.Status(ctx); err != nil {
		return res, fmt.Errorf("setup: %w", err)
	}
	res.Status = &st
	if done, _ := firstSyncDone(st); done && st.LastSync.Start.Before(began) {
		step("first sync", StepOK, fmt.Sprintf("bucket %s in step with %s", orDash(st.Bucket), orDash(st.Folder)))
	} else if done {
		// the daemon's first passes ran while this setup went on (during
		// the login, say): this setup did them
		up, down := passCountsSince(ctx, c, began, *st.LastSync)
		step("first sync", StepDone, fmt.Sprintf("bucket %s in step with %s (%d up, %d down)", orDash(st.Bucket), orDash(st.Folder), up, down))
	} else {
		st, err = waitFirstSync(ctx, c, newProgressView(out, !sf.json && isTerminal(out)), say)
		res.Status = &st
		if err != nil {
			return res, fmt.Errorf("setup: %w", err)
		}
		ls := st.LastSync
		step("first sync", StepDone, fmt.Sprintf("bucket %s in step with %s (%d up, %d down)", orDash(st.Bucket), orDash(st.Folder), ls.Uploaded, ls.Downloaded))
	}
	if serviceErr != nil {
		return res, serviceErr
	}
	if res.Changed {
		say("\nAll set: bm-agent keeps %s and your cloud bucket in step, and starts at login.\n", orDash(st.Folder))
	} else {
		say("\nEverything is set up already: nothing to do.\n")
	}
	return res, nil
}

// installedDetail is the service step's detail after an install.
func installedDetail(manager, when string, files int) string {
	plural := "s"
	if files == 1 {
		plural = ""
	}
	return fmt.Sprintf("installed, %s: %s (%d file%s written)", when, startsAtLogin(manager), files, plural)
}

// firstSyncDone reports whether st shows a finished, successful pass (so
// the device key exists), or the hold that stops one.
func firstSyncDone(st ipc.Status) (bool, error) {
	switch {
	case st.Hold != nil:
		return false, fmt.Errorf("%w: %s; %s", ErrSyncHeld, st.Hold.Message, holdFix(*st.Hold))
	case st.State == ipc.StateSubscriptionRequired:
		return false, ErrSubscriptionRequired
	case st.State == ipc.StateLoginRequired:
		return false, ipc.ErrLoginRequired
	case st.Paused:
		return false, fmt.Errorf("%w: paused (`bm-agent resume` resumes)", ErrSyncHeld)
	}
	ok := st.LastSync != nil && st.LastSync.Error == "" && st.LastSync.Skipped == "" && !st.LastSync.DryRun &&
		st.State != ipc.StateSyncing && st.State != ipc.StateStarting
	return ok, nil
}

// errSetupDone stops the watch in waitFirstSync.
var errSetupDone = errors.New("first sync done")

// passCountsSince adds up the files the passes since began uploaded and
// downloaded (last's alone if the history cannot be read).
func passCountsSince(ctx context.Context, c *ipc.Client, began time.Time, last ipc.PassSummary) (up, down int) {
	h, err := c.History(ctx, 100)
	if err != nil {
		return last.Uploaded, last.Downloaded
	}
	for _, p := range h.Passes {
		if p.Start.Before(began) {
			continue
		}
		up, down = up+p.Uploaded, down+p.Downloaded
	}
	return up, down
}

// waitFirstSync follows the daemon until a pass has succeeded, showing the
// progress of the running pass and the errors of failed ones.
func waitFirstSync(ctx context.Context, c *ipc.Client, pv *progressView, say func(string, ...any)) (ipc.Status, error) {
	var last ipc.Status
	var shownErr string
	announced := false
	for {
		err := c.Watch(ctx, func(ev ipc.Event) error {
			switch {
			case ev.Kind == ipc.EventProgress && ev.Progress != nil:
				pv.update(*ev.Progress)
				return nil
			case ev.Status == nil:
				return nil
			}
			last = *ev.Status
			done, err := firstSyncDone(last)
			if err != nil || done {
				pv.finish()
				if err != nil {
					return err
				}
				return errSetupDone
			}
			if !announced {
				say("Waiting for this device's key and the first sync...\n")
				announced = true
			}
			if ls := last.LastSync; ls != nil && ls.Error != "" && ls.Error != shownErr {
				pv.finish()
				shownErr = ls.Error
				say("  the last pass failed (the daemon retries): %s\n", ls.Error)
			}
			return nil
		})
		switch {
		case errors.Is(err, errSetupDone):
			return last, nil
		case ctx.Err() != nil:
			return last, ctx.Err()
		case errors.Is(err, io.ErrUnexpectedEOF):
			time.Sleep(watchReconnectDelay)
			continue
		}
		return last, err
	}
}
