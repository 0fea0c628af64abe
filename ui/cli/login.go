package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/ipc"
)

func loginCmd(opts *Options) *cobra.Command {
	var noBrowser bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Log in to Basic Memory cloud (opens a browser)",
		Example: `  bm-agent login
  bm-agent login --no-browser   # print the URL to open on another device`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c := client(opts)
			st, err := c.Status(ctx)
			if err != nil {
				return err
			}
			if st.LoggedIn {
				fmt.Fprintf(cmd.OutOrStdout(), "Already logged in as %s (tenant %s).\n", orDash(st.Account), st.TenantID)
				return nil
			}
			start, err := c.Login(ctx)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "To log in, open this URL in a browser:\n\n  %s\n\n", start.URL)
			if !noBrowser && openBrowser(start.URL) == nil {
				fmt.Fprintln(out, "(opened in your browser)")
			}
			fmt.Fprintln(out, "Waiting for the login to complete...")
			st, err = waitLoggedIn(ctx, c, timeout)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "Logged in as %s. Tenant %s, bucket %s.\n", orDash(st.Account), st.TenantID, st.Bucket)
			return nil
		},
	}
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "print the URL instead of opening a browser")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long to wait for the browser step")
	return cmd
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
		if st.LoggedIn && st.State != "starting" {
			return st, nil
		}
		if st.LoginURL == "" && strings.HasPrefix(st.Error, "login:") {
			return st, errors.New(st.Error)
		}
	}
}

func openBrowser(url string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", url)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
			return errors.New("no display")
		}
		cmd = exec.Command("xdg-open", url)
	}
	return cmd.Start()
}

func logoutCmd(opts *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Log out: revoke this device's key and remove the tokens from the keychain",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := client(opts).Logout(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Logged out.")
			return nil
		},
	}
}
