package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/ui/browser"
)

func loginCmd(opts *Options) *cobra.Command {
	var noBrowser, device bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Log in to Basic Memory cloud (opens a browser, or shows a code to enter elsewhere)",
		Long: `Log in to Basic Memory cloud. The daemon runs the login and keeps the tokens in
the OS keychain, so later restarts need no login.

On a desktop this opens the sign-in page in your browser. With --device, or
by itself where there is no browser (no DISPLAY or WAYLAND_DISPLAY on Linux,
or an SSH session), it shows a URL and a code to enter on any other device.`,
		Example: `  bm-agent login
  bm-agent login --device       # a code to enter on another device
  bm-agent login --no-browser   # print the URL instead of opening it
  bm-agent login --json         # JSON lines: the login URL (and code), then the status`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lf := loginFlags{noBrowser: noBrowser, device: device, deviceSet: cmd.Flags().Changed("device"), timeout: timeout}
			_, err := runLogin(cmd.Context(), cmd.OutOrStdout(), client(opts), lf, opts.JSON)
			return err
		},
	}
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "print the URL instead of opening a browser")
	cmd.Flags().BoolVar(&device, "device", false, "log in with a code entered on another device (the default where there is no browser)")
	cmd.Flags().DurationVar(&timeout, "timeout", 15*time.Minute, "how long to wait for the login to complete")
	return cmd
}

// loginFlags are the login command's choices (setup uses the same).
type loginFlags struct {
	noBrowser bool
	device    bool
	deviceSet bool // --device was given (true or false)
	timeout   time.Duration
}

// runLogin logs in unless the daemon already is, and returns the status
// after. For people it prints what to open; with asJSON it prints JSON
// lines: the ipc.LoginStart (url, user_code, method) when a login starts,
// then the final ipc.Status. An account without a subscription gives an
// error wrapping [ErrSubscriptionRequired].
func runLogin(ctx context.Context, out io.Writer, c *ipc.Client, lf loginFlags, asJSON bool) (ipc.Status, error) {
	say := func(format string, args ...any) {
		if !asJSON {
			fmt.Fprintf(out, format, args...)
		}
	}
	st, err := c.Status(ctx)
	if err != nil {
		return st, err
	}
	if st.LoggedIn && st.State != ipc.StateSubscriptionRequired {
		say("Already logged in as %s (tenant %s).\n", orDash(st.Account), st.TenantID)
		if asJSON {
			return st, printJSONLine(out, st)
		}
		return st, nil
	}
	device := lf.device
	if !device && !lf.deviceSet && headless() {
		device = true
		say("No browser here: logging in with a code you enter on another device.\n")
	}
	start, err := c.LoginWith(ctx, ipc.LoginOptions{Device: device})
	if err != nil {
		return st, err
	}
	if asJSON {
		if err := printJSONLine(out, start); err != nil {
			return st, err
		}
	} else {
		writeLoginStart(out, start)
	}
	if start.Method != ipc.LoginDevice && !lf.noBrowser && browser.Open(start.URL) == nil {
		say("(opened in your browser)\n")
	}
	say("Waiting for the login to complete...\n")
	timeout := lf.timeout
	if timeout <= 0 {
		timeout = 15 * time.Minute
	}
	st, err = waitLoggedIn(ctx, c, timeout)
	if err != nil {
		return st, err
	}
	if asJSON {
		if err := printJSONLine(out, st); err != nil {
			return st, err
		}
	}
	if st.State == ipc.StateSubscriptionRequired {
		say("Logged in as %s.\n%s\n", orDash(st.Account), subscriptionMessage(st.SubscribeURL))
		return st, fmt.Errorf("login: %w", ErrSubscriptionRequired)
	}
	say("Logged in as %s. Tenant %s, bucket %s.\n", orDash(st.Account), st.TenantID, st.Bucket)
	return st, nil
}

// writeLoginStart tells the person what to open (and, for a device login,
// which code to enter).
func writeLoginStart(w io.Writer, start ipc.LoginStart) {
	if start.Method == ipc.LoginDevice {
		fmt.Fprintf(w, "To log in, open this URL on any device:\n\n  %s\n\nand check that it shows this code:\n\n  %s\n\n", start.URL, start.UserCode)
		return
	}
	fmt.Fprintf(w, "To log in, open this URL in a browser:\n\n  %s\n\n", start.URL)
}

// subscriptionMessage is what the Basic Memory CLI prints without an
// active subscription.
func subscriptionMessage(subscribeURL string) string {
	msg := "Active subscription required"
	if subscribeURL != "" {
		msg += "\nSubscribe at: " + subscribeURL
	}
	return msg
}

// headless reports whether no browser can be opened here: an SSH session,
// or a Linux/BSD desktop-less session (no DISPLAY nor WAYLAND_DISPLAY).
func headless() bool {
	return headlessEnv(runtime.GOOS, os.Getenv)
}

func headlessEnv(goos string, getenv func(string) string) bool {
	return !browser.CanOpenIn(browser.Env{GOOS: goos, Getenv: getenv})
}

func waitLoggedIn(ctx context.Context, c *ipc.Client, timeout time.Duration) (ipc.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(300 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ipc.Status{}, errors.New("login did not complete in time")
		case <-t.C:
		}
		st, err := c.Status(ctx)
		if err != nil {
			return st, err
		}
		if st.LoggedIn && st.State != ipc.StateStarting {
			return st, nil
		}
		if st.LoginURL == "" && st.Code == ipc.CodeLoginFailed {
			return st, errors.New(st.Error)
		}
	}
}

func logoutCmd(opts *Options) *cobra.Command {
	return &cobra.Command{
		Use:     "logout",
		Short:   "Log out: revoke this device's key and remove the tokens from the keychain",
		Example: "  bm-agent logout\n  bm-agent logout --json   # {\"logged_in\": false}",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := client(opts).Logout(cmd.Context()); err != nil {
				return err
			}
			if opts.JSON {
				return printJSON(cmd.OutOrStdout(), map[string]bool{"logged_in": false})
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Logged out.")
			return nil
		},
	}
}
