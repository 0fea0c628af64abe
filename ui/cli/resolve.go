package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/ipc"
)

func resolveCmd(opts *Options) *cobra.Command {
	var keep, conflict string
	cmd := &cobra.Command{
		Use:   "resolve PATH --keep mine|theirs|both [--conflict FILE]",
		Short: "Settle a conflict: keep this device's version, the other one, or both",
		Long: `Settle the conflict of a note (PATH is the note or its conflict file, see
'bm-agent conflicts'):

  --keep mine    this device's version becomes the note; the other goes
  --keep theirs  the other version becomes the note; this device's goes
  --keep both    the conflict file becomes a plain note next to it,
                 "note (from laptop).md"; nothing is removed

This device's version is the note itself, unless the conflict file carries
this device's name (its version lost to the bucket's): then the note is the
other version. 'bm-agent conflicts' shows whose each conflict file is.

What is replaced or removed is kept in the version store while versions are
on ('bm-agent versions PATH' lists it, 'bm-agent restore' brings it back).
The next sync, which starts at once, takes the result to the bucket and to
your other devices. A note with several conflict files needs --conflict to
say which one.`,
		Example: `  bm-agent resolve projects/plan.md --keep mine
  bm-agent resolve "projects/plan.conflict-20261202-101500-laptop.md" --keep theirs
  bm-agent resolve projects/plan.md --keep both --conflict plan.conflict-20261202-101500-cloud.md`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch keep {
			case ipc.KeepMine, ipc.KeepTheirs, ipc.KeepBoth:
			case "":
				return usageErrorf("say which version to keep: --keep mine, --keep theirs or --keep both")
			default:
				return usageErrorf("--keep %q: want mine, theirs or both", keep)
			}
			c := client(opts)
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			req := ipc.ResolveRequest{Keep: keep}
			if req.Path, err = folderRelative(st.Folder, args[0]); err != nil {
				return err
			}
			if conflict != "" {
				if req.Conflict, err = folderRelative(st.Folder, conflict); err != nil {
					return err
				}
			}
			res, err := c.Resolve(cmd.Context(), req)
			if errors.Is(err, ipc.ErrInvalid) {
				return &UsageError{Err: err} // a path or a choice the daemon cannot take
			}
			if err != nil {
				return err
			}
			if opts.JSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			writeResolved(cmd.OutOrStdout(), res, keep)
			return nil
		},
	}
	cmd.Flags().StringVar(&keep, "keep", "", "which version to keep: mine, theirs or both")
	cmd.Flags().StringVar(&conflict, "conflict", "", "the conflict file meant, when the note has several")
	_ = cmd.RegisterFlagCompletionFunc("keep", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{ipc.KeepMine, ipc.KeepTheirs, ipc.KeepBoth}, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

// writeResolved says what a resolve did.
func writeResolved(w io.Writer, res ipc.ResolveResult, keep string) {
	switch keep {
	case ipc.KeepMine:
		fmt.Fprintf(w, "Kept this device's version of %s.\n", res.Note)
	case ipc.KeepTheirs:
		fmt.Fprintf(w, "%s now has the other version.\n", res.Note)
	case ipc.KeepBoth:
		fmt.Fprintf(w, "Kept both: %s stays, and the other version is now %s.\n", res.Note, res.Kept)
	}
	if len(res.Removed) > 0 {
		fmt.Fprintf(w, "Removed %s (kept as a version while versions are on: bm-agent versions %s).\n",
			strings.Join(res.Removed, ", "), shellQuote(res.Note))
	}
	fmt.Fprintln(w, "The next sync takes this to your other devices.")
}
