// Package cli holds the bm-agent commands that talk to a running daemon
// through ipc: login, logout, status, sync, pause, resume. It never touches
// sync state itself; `bm-agent run` (the daemon) is wired in by the main
// package.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// Options are the global flags every command sees.
type Options struct {
	Socket string
	JSON   bool
}

// AddCommands adds the client commands to root.
func AddCommands(root *cobra.Command, opts *Options) {
	root.PersistentFlags().StringVar(&opts.Socket, "socket", ipc.DefaultSocketPath(), "the daemon's socket")
	root.PersistentFlags().BoolVar(&opts.JSON, "json", false, "print JSON instead of text")
	root.AddCommand(
		loginCmd(opts), logoutCmd(opts), statusCmd(opts), syncCmd(opts),
		pauseCmd(opts), resumeCmd(opts),
	)
}

func client(opts *Options) *ipc.Client { return ipc.NewClient(opts.Socket) }

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

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

func statusCmd(opts *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the daemon's state, account, bucket, folder and last sync",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := client(opts).Status(cmd.Context())
			if err != nil {
				return err
			}
			if opts.JSON {
				return printJSON(cmd.OutOrStdout(), st)
			}
			writeStatus(cmd.OutOrStdout(), st, time.Now())
			return nil
		},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeStatus prints st for a person.
func writeStatus(w io.Writer, st ipc.Status, now time.Time) {
	state := st.State
	if st.Error != "" {
		state += ": " + st.Error
	}
	login := "logged out"
	if st.LoggedIn {
		login = "logged in as " + orDash(st.Account)
	}
	fmt.Fprintf(w, "State:    %s\n", state)
	fmt.Fprintf(w, "Account:  %s\n", login)
	if st.LoginURL != "" {
		fmt.Fprintf(w, "Login:    open %s\n", st.LoginURL)
	}
	fmt.Fprintf(w, "Tenant:   %s\n", orDash(st.TenantID))
	fmt.Fprintf(w, "Bucket:   %s\n", orDash(st.Bucket))
	fmt.Fprintf(w, "Folder:   %s\n", orDash(st.Folder))
	fmt.Fprintf(w, "Keychain: %s\n", orDash(st.KeyringBackend))
	if ls := st.LastSync; ls != nil {
		res := fmt.Sprintf("%d up, %d down, %d deleted here, %d deleted in the bucket, %d conflicts",
			ls.Uploaded, ls.Downloaded, ls.DeletedLocal, ls.DeletedRemote, ls.Conflicts)
		if ls.Error != "" {
			res = "failed: " + ls.Error
		} else if ls.Skipped != "" {
			res = "nothing to do (" + ls.Skipped + ")"
		}
		fmt.Fprintf(w, "Last sync: %s ago (%s, %s): %s\n", now.Sub(ls.Start).Round(time.Second), ls.Trigger,
			(time.Duration(ls.DurationMS) * time.Millisecond).Round(time.Millisecond), res)
	} else {
		fmt.Fprintln(w, "Last sync: never")
	}
	if st.Paused {
		fmt.Fprintln(w, "Sync is paused: `bm-agent resume` resumes it.")
	}
}

func syncCmd(opts *Options) *cobra.Command {
	var req ipc.SyncRequest
	var noWait bool
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Run a sync pass now and print what it did",
		Example: `  bm-agent sync
  bm-agent sync --resync    # rebuild the baseline; deletes nothing`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req.Wait = !noWait
			sum, err := client(opts).Sync(cmd.Context(), req)
			if err != nil {
				return err
			}
			if opts.JSON {
				return printJSON(cmd.OutOrStdout(), sum)
			}
			if noWait {
				fmt.Fprintln(cmd.OutOrStdout(), "Sync requested.")
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Synced in %s: %d up, %d down, %d deleted here, %d deleted in the bucket, %d conflicts.\n",
				(time.Duration(sum.DurationMS) * time.Millisecond).Round(time.Millisecond),
				sum.Uploaded, sum.Downloaded, sum.DeletedLocal, sum.DeletedRemote, sum.Conflicts)
			return nil
		},
	}
	cmd.Flags().BoolVar(&req.Resync, "resync", false, "rebuild the baseline from both sides (copies only, deletes nothing)")
	cmd.Flags().BoolVar(&req.DryRun, "dry-run", false, "show what would change without changing anything")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return at once instead of waiting for the pass")
	return cmd
}

func pauseCmd(opts *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "pause",
		Short: "Pause syncing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := client(opts).Pause(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Paused.")
			return nil
		},
	}
}

func resumeCmd(opts *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "resume",
		Short: "Resume syncing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := client(opts).Resume(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Resumed.")
			return nil
		},
	}
}
