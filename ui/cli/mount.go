package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/ipc"
)

func mountCmd(opts *Options) *cobra.Command {
	var req ipc.MountRequest
	cmd := &cobra.Command{
		Use:   "mount",
		Short: "Mount the cloud bucket as a folder (the daemon keeps the mount)",
		Long: `Mount the cloud bucket as a folder, through rclone's mount in the daemon
(FUSE on Linux, NFS on macOS): it outlives this command and is unmounted when
the daemon stops. The profile sets caching: fast (long caches, write-back),
balanced (the default) or safe (short caches, conflict suffixes, a backup
dir). A mount over the sync folder is refused. --json prints the mount's
status ({"mounted", "mount_point", "profile", "bucket", "since", ...}).`,
		Example: `  bm-agent mount
  bm-agent mount --profile safe --path ~/bm-cloud`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch req.Profile {
			case "", "fast", "balanced", "safe":
			default:
				return usageErrorf("--profile %q: want fast, balanced or safe", req.Profile)
			}
			return showMount(cmd, opts)(client(opts).Mount(cmd.Context(), req))
		},
	}
	cmd.Flags().StringVar(&req.Profile, "profile", "", "fast, balanced or safe (default balanced)")
	cmd.Flags().StringVar(&req.MountPoint, "path", "", "where the bucket appears (default ~/basic-memory-TENANT)")
	_ = cmd.RegisterFlagCompletionFunc("profile", cobra.FixedCompletions([]string{"fast", "balanced", "safe"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// showMount prints a mount status the daemon answered, as JSON with --json.
func showMount(cmd *cobra.Command, opts *Options) func(ipc.MountStatus, error) error {
	return func(ms ipc.MountStatus, err error) error {
		if err != nil {
			return err
		}
		if opts.JSON {
			return printJSON(cmd.OutOrStdout(), ms)
		}
		writeMountStatus(cmd.OutOrStdout(), ms, now())
		return nil
	}
}

func unmountCmd(opts *Options) *cobra.Command {
	return &cobra.Command{
		Use:     "unmount",
		Short:   "Unmount the cloud bucket (files still being uploaded are finished first)",
		Example: `  bm-agent unmount`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ms, err := client(opts).Unmount(cmd.Context())
			if err != nil {
				return err
			}
			if opts.JSON {
				return printJSON(cmd.OutOrStdout(), ms)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Unmounted.")
			return nil
		},
	}
}

func mountStatusCmd(opts *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "mount-status",
		Short: "Show whether the bucket is mounted, where, and with which profile",
		Example: `  bm-agent mount-status
  bm-agent mount-status --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return showMount(cmd, opts)(client(opts).MountStatus(cmd.Context()))
		},
	}
}

// writeMountStatus prints a mount's status for a person.
func writeMountStatus(w io.Writer, ms ipc.MountStatus, now time.Time) {
	if !ms.Mounted {
		fmt.Fprintln(w, "Not mounted: `bm-agent mount` mounts the bucket.")
		if ms.Error != "" {
			fmt.Fprintf(w, "Last mount ended: %s\n", ms.Error)
		}
		return
	}
	fmt.Fprintf(w, "Mounted:  %s\n", orDash(ms.MountPoint))
	fmt.Fprintf(w, "Bucket:   %s\n", orDash(ms.Bucket))
	fmt.Fprintf(w, "Profile:  %s\n", orDash(ms.Profile))
	if !ms.Since.IsZero() {
		fmt.Fprintf(w, "Since:    %s (%s ago)\n", ms.Since.In(now.Location()).Format("2006-01-02 15:04:05"), now.Sub(ms.Since).Round(time.Second))
	}
	if ms.Pending > 0 {
		fmt.Fprintf(w, "Pending:  %d files written through the mount, not yet uploaded\n", ms.Pending)
	}
	if ms.Error != "" {
		fmt.Fprintf(w, "Error:    %s\n", ms.Error)
	}
}
