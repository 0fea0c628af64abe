package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/ipc"
)

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
