package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/ipc"
)

func versionsCmd(opts *Options) *cobra.Command {
	var deleted bool
	var since string
	cmd := &cobra.Command{
		Use:   "versions [PATH]",
		Short: "List the kept versions of a note (every version a sync replaced or deleted), or the notes deleted lately",
		Long: `List the versions of a note that bm-agent kept when a sync replaced or
deleted it, on this device and in the bucket (every device sees those), newest
first: when, where, its size, why, and its ID for 'bm-agent restore'.

PATH is a note in the notes folder: relative to the folder, or any path that
points into it. With --deleted, list the notes deleted since --since (default
24h) that are not back.`,
		Example: `  bm-agent versions projects/plan.md
  bm-agent versions --deleted --since 2h
  bm-agent versions projects/plan.md --json | jq -r '.versions[0].id'`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := client(opts)
			req := ipc.VersionsRequest{Deleted: deleted}
			switch {
			case deleted && len(args) > 0:
				return usageErrorf("give a PATH or --deleted, not both")
			case deleted:
				t, err := parseWhen(since, now())
				if err != nil {
					return usageErrorf("--since %q: %v", since, err)
				}
				req.Since = t
			case len(args) == 0:
				return usageErrorf("give the PATH of a note, or --deleted")
			default:
				p, err := notePath(cmd, c, args[0])
				if err != nil {
					return err
				}
				req.Path = p
			}
			vs, err := c.Versions(cmd.Context(), req)
			if err != nil {
				return err
			}
			if opts.JSON {
				return printJSON(cmd.OutOrStdout(), vs)
			}
			writeVersions(cmd.OutOrStdout(), vs, req.Since, time.Local)
			return nil
		},
	}
	cmd.Flags().BoolVar(&deleted, "deleted", false, "list the notes deleted lately instead")
	cmd.Flags().StringVar(&since, "since", "24h", "with --deleted: how far back (2h, 3d, or a time: 2006-01-02 15:04)")
	return cmd
}

func restoreCmd(opts *Options) *cobra.Command {
	var version, at, since string
	var deleted bool
	cmd := &cobra.Command{
		Use:   "restore PATH [--version ID | --at TIME] | --deleted [--since 2h]",
		Short: "Bring back a kept version of a note, or every note deleted lately",
		Long: `Bring a kept version of a note back into the notes folder: the one with
--version ID (see 'bm-agent versions PATH'), the one the note had --at a time,
or else the newest kept version. The note there now is kept as a version
first, so a restore can itself be undone. The next sync takes the restored
note to the bucket and to your other devices.

With --deleted, bring back every note deleted since --since (default 2h) that
is not back already: the undo for a burst of deletes.`,
		Example: `  bm-agent restore projects/plan.md
  bm-agent restore projects/plan.md --version l1a2b3c4d
  bm-agent restore projects/plan.md --at "2026-12-01 17:00"
  bm-agent restore projects/plan.md --at 3h
  bm-agent restore --deleted --since 2h`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := client(opts)
			var req ipc.RestoreRequest
			switch {
			case deleted && (len(args) > 0 || version != "" || at != ""):
				return usageErrorf("--deleted restores every deleted note: give no PATH, --version or --at with it")
			case deleted:
				t, err := parseWhen(since, now())
				if err != nil {
					return usageErrorf("--since %q: %v", since, err)
				}
				req = ipc.RestoreRequest{Deleted: true, Since: t}
			case len(args) == 0:
				return usageErrorf("give the PATH of a note, or --deleted")
			case version != "" && at != "":
				return usageErrorf("give --version or --at, not both")
			default:
				p, err := notePath(cmd, c, args[0])
				if err != nil {
					return err
				}
				req = ipc.RestoreRequest{Path: p, Version: version}
				if at != "" {
					if req.At, err = parseWhen(at, now()); err != nil {
						return usageErrorf("--at %q: %v", at, err)
					}
				}
			}
			res, err := c.Restore(cmd.Context(), req)
			if err != nil {
				return err
			}
			if opts.JSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			writeRestored(cmd.OutOrStdout(), res, req, time.Local)
			return nil
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "the ID of the version to restore (from bm-agent versions)")
	cmd.Flags().StringVar(&at, "at", "", "restore the note as it was at this time (2006-01-02 15:04, or 3h for three hours ago)")
	cmd.Flags().BoolVar(&deleted, "deleted", false, "restore every note deleted since --since")
	cmd.Flags().StringVar(&since, "since", "2h", "with --deleted: how far back (2h, 3d, or a time)")
	return cmd
}

// notePath turns the PATH argument into a path relative to the notes
// folder: a path that points into the folder (absolute, or relative to the
// working directory) is made relative to it; anything else is taken as
// relative to the folder already.
func notePath(cmd *cobra.Command, c *ipc.Client, arg string) (string, error) {
	st, err := c.Status(cmd.Context())
	if err != nil {
		return "", err
	}
	return folderRelative(st.Folder, arg)
}

// folderRelative is notePath's rule, given the folder.
func folderRelative(folder, arg string) (string, error) {
	abs := arg
	if !filepath.IsAbs(abs) {
		wd, err := os.Getwd()
		if err != nil {
			return filepath.ToSlash(arg), nil
		}
		abs = filepath.Join(wd, arg)
	}
	if folder != "" {
		if rel, err := filepath.Rel(folder, abs); err == nil && rel != "." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && rel != ".." {
			return filepath.ToSlash(rel), nil
		}
	}
	if filepath.IsAbs(arg) {
		return "", usageErrorf("%s is not inside the notes folder %s", arg, orDash(folder))
	}
	return filepath.ToSlash(arg), nil
}

// parseWhen reads a point in time: a duration back from now ("90m",
// "2h", "3d", "1w"), or a time (RFC 3339, "2006-01-02 15:04[:05]",
// "2006-01-02", or "15:04" today), in local time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, fmt.Errorf("empty")
	}
	for _, unit := range []struct {
		suffix string
		d      time.Duration
	}{{"d", 24 * time.Hour}, {"w", 7 * 24 * time.Hour}} {
		if n, ok := strings.CutSuffix(s, unit.suffix); ok {
			if v, err := strconv.ParseFloat(n, 64); err == nil && v >= 0 {
				return now.Add(-time.Duration(v * float64(unit.d))), nil
			}
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("a duration back from now must not be negative")
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, now.Location()); err == nil {
			return t, nil
		}
	}
	for _, layout := range []string{"15:04:05", "15:04"} {
		if t, err := time.ParseInLocation(layout, s, now.Location()); err == nil {
			y, m, d := now.Date()
			return time.Date(y, m, d, t.Hour(), t.Minute(), t.Second(), 0, now.Location()), nil
		}
	}
	return time.Time{}, fmt.Errorf("not a time: use 2h, 3d, 15:04, 2006-01-02 15:04 or RFC 3339")
}

// writeVersions prints a note's versions, or the deleted notes, as a table.
func writeVersions(w io.Writer, vs ipc.Versions, since time.Time, loc *time.Location) {
	stamp := func(t time.Time) string { return t.In(loc).Format("2006-01-02 15:04:05") }
	if vs.DaysKept == 0 {
		fmt.Fprintln(w, "Versions are off (bm-agent config set versions_days 30 turns them on); these were kept before.")
	}
	if len(vs.Versions) == 0 {
		if vs.Path != "" {
			fmt.Fprintf(w, "No versions of %s are kept: no sync has replaced or deleted it in the last %d days.\n", vs.Path, max(vs.DaysKept, 30))
		} else {
			fmt.Fprintf(w, "No notes were deleted since %s (or they are all back).\n", stamp(since))
		}
		return
	}
	if vs.Path != "" {
		fmt.Fprintf(w, "%s kept of %s:\n\n", plural(len(vs.Versions), "version", "versions"), vs.Path)
	} else {
		fmt.Fprintf(w, "%s deleted since %s and not back:\n\n", plural(len(vs.Versions), "note", "notes"), stamp(since))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if vs.Path != "" {
		fmt.Fprintln(tw, "KEPT\tWHERE\tSIZE\tWHY\tDEVICE\tID")
		for _, v := range vs.Versions {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", stamp(v.Kept), where(v.Side), humanSize(v.Size), v.Reason, orDash(v.Device), v.ID)
		}
	} else {
		fmt.Fprintln(tw, "DELETED\tNOTE\tSIZE\tWHERE\tDEVICE")
		for _, v := range vs.Versions {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", stamp(v.Kept), v.Path, humanSize(v.Size), where(v.Side), orDash(v.Device))
		}
	}
	_ = tw.Flush()
	if vs.Path != "" {
		fmt.Fprintf(w, "\nBring one back: bm-agent restore %s --version %s\n", shellQuote(vs.Path), vs.Versions[0].ID)
	} else {
		fmt.Fprintf(w, "\nBring them all back: bm-agent restore --deleted --since %q\n", since.In(loc).Format("2006-01-02 15:04:05"))
	}
}

func where(side string) string {
	if side == ipc.VersionSideCloud {
		return "bucket"
	}
	return "this device"
}

// writeRestored says what a restore brought back.
func writeRestored(w io.Writer, res ipc.RestoreResult, req ipc.RestoreRequest, loc *time.Location) {
	stamp := func(t time.Time) string { return t.In(loc).Format("2006-01-02 15:04:05") }
	if len(res.Restored) == 0 {
		fmt.Fprintf(w, "Nothing to restore: no notes were deleted since %s (or they are all back).\n", stamp(req.Since))
		return
	}
	if !req.Deleted {
		v := res.Restored[0]
		fmt.Fprintf(w, "Restored %s: the version kept %s (%s, from %s).\n", v.Path, stamp(v.Kept), v.Reason, where(v.Side))
		fmt.Fprintln(w, "The note it replaced is kept as a version; the next sync takes the restored note to the bucket.")
		return
	}
	fmt.Fprintf(w, "Restored %s deleted since %s:\n", plural(len(res.Restored), "note", "notes"), stamp(req.Since))
	for _, v := range res.Restored {
		fmt.Fprintf(w, "  %s\n", v.Path)
	}
	fmt.Fprintln(w, "The next sync takes them to the bucket.")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// shellQuote quotes s for a shell command line when it needs it.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`!*?[]{}()<>|&;#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
