package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/ipc"
)

func conflictsCmd(opts *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "conflicts",
		Short: "List the conflict files: versions of a note kept because it changed on two sides",
		Example: `  bm-agent conflicts
  bm-agent conflicts --json | jq -r '.conflicts[].path'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs, err := client(opts).Conflicts(cmd.Context())
			if err != nil {
				return err
			}
			if opts.JSON {
				return printJSON(cmd.OutOrStdout(), cs)
			}
			writeConflicts(cmd.OutOrStdout(), cs, time.Local)
			return nil
		},
	}
}

// writeConflicts prints the conflict files as a table, times in loc.
func writeConflicts(w io.Writer, cs ipc.Conflicts, loc *time.Location) {
	if len(cs.Conflicts) == 0 {
		fmt.Fprintf(w, "No conflict files in %s.\n", orDash(cs.Folder))
		return
	}
	noun := "conflict files"
	if len(cs.Conflicts) == 1 {
		noun = "conflict file"
	}
	fmt.Fprintf(w, "%d %s in %s:\n\n", len(cs.Conflicts), noun, orDash(cs.Folder))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEPT\tFROM\tSIZE\tNOTE\tCONFLICT FILE")
	for _, c := range cs.Conflicts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Time.In(loc).Format("2006-01-02 15:04:05"), writer(c), humanSize(c.Size), c.Original, c.Path)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "\nEach conflict file is another version of its note; FROM is the device that wrote it (its device_name),")
	fmt.Fprintln(w, "or \"cloud\" when the bucket's copy does not say (written by an older bm-agent or another S3 client).")
	fmt.Fprintln(w, "Settle one with bm-agent resolve NOTE --keep mine|theirs|both (--conflict FILE when a note has several),")
	fmt.Fprintln(w, "or merge what you want into the note and delete the conflict file: bm-agent syncs both changes.")
}

// writer names the device that wrote a conflict's version: its name when
// known, else its label in the file name.
func writer(c ipc.Conflict) string {
	if c.From != "" {
		return c.From
	}
	return c.Device
}

// humanSize prints a byte count for people.
func humanSize(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d B", n)
	case n < 1000*1000:
		return fmt.Sprintf("%.1f kB", float64(n)/1000)
	case n < 1000*1000*1000:
		return fmt.Sprintf("%.1f MB", float64(n)/1000/1000)
	default:
		return fmt.Sprintf("%.1f GB", float64(n)/1000/1000/1000)
	}
}
