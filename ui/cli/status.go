package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/ipc"
)

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
