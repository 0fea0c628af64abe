package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/ipc"
)

func historyCmd(opts *Options) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "history",
		Short: "List the last sync passes: when, why, what they did, and how they ended",
		Example: `  bm-agent history
  bm-agent history --limit 100 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 {
				return fmt.Errorf("--limit %d: must be at least 1", limit)
			}
			h, err := client(opts).History(cmd.Context(), limit)
			if err != nil {
				return err
			}
			if opts.JSON {
				return printJSON(cmd.OutOrStdout(), h)
			}
			writeHistory(cmd.OutOrStdout(), h.Passes, time.Local)
			return nil
		},
	}
	cmd.Flags().IntVar(&limit, "limit", ipc.DefaultHistoryLimit, "how many passes to show, newest first")
	return cmd
}

// maxResultWidth bounds the result column; the full error is in --json.
const maxResultWidth = 72

// passResult says in a few words how a pass ended.
func passResult(p ipc.PassSummary) string {
	var s string
	switch {
	case p.Cancelled:
		s = "cancelled (daemon stopped)"
	case p.Offline:
		s = "offline: " + p.Error
	case p.Error != "":
		s = "failed: " + p.Error
	case p.Skipped != "":
		s = "nothing to do: " + p.Skipped
	case p.DryRun:
		n := 0
		if p.Plan != nil {
			n = len(p.Plan.Items)
		}
		s = fmt.Sprintf("dry run: %d changes", n)
	case p.Resync:
		s = "ok (safe resync)"
	default:
		s = "ok"
	}
	var tags []string
	if p.Forced {
		tags = append(tags, "forced")
	}
	if p.Profile != "" && p.Profile != "balanced" {
		tags = append(tags, p.Profile)
	}
	if len(tags) > 0 {
		s += " [" + strings.Join(tags, ", ") + "]"
	}
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > maxResultWidth {
		s = string(r[:maxResultWidth-1]) + "…"
	}
	return s
}

// fmtTook prints a pass's duration: milliseconds under a second, else
// tenths of seconds.
func fmtTook(ms int64) string {
	if ms < 1000 {
		return fmt.Sprintf("%dms", ms)
	}
	return (time.Duration(ms) * time.Millisecond).Round(100 * time.Millisecond).String()
}

// writeHistory prints passes (newest first) as a table, times in loc.
func writeHistory(w io.Writer, passes []ipc.PassSummary, loc *time.Location) {
	if len(passes) == 0 {
		fmt.Fprintln(w, "No sync passes yet.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "STARTED\tTRIGGER\tTOOK\tUP\tDOWN\tDEL HERE\tDEL CLOUD\tCONFLICTS\t\tRESULT")
	for _, p := range passes {
		took := fmtTook(p.DurationMS)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t\t%s\n",
			p.Start.In(loc).Format("2006-01-02 15:04:05"), orDash(p.Trigger), took,
			p.Uploaded, p.Downloaded, p.DeletedLocal, p.DeletedRemote, p.Conflicts, passResult(p))
	}
	_ = tw.Flush()
}
