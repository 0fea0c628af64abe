package cli

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/ipc"
)

func syncCmd(opts *Options) *cobra.Command {
	var req ipc.SyncRequest
	var noWait bool
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Run a sync pass now and print what it did",
		Long: `Run a sync pass now and print what it did. While it waits for a long pass (the
first upload of a big folder) it shows a progress bar with the rate and the
time left on a terminal, and a progress line every few seconds otherwise.

--json prints the pass's summary (ipc.PassSummary: start, duration_ms,
trigger, uploaded, downloaded, deleted_local, deleted_remote, conflicts,
error, plan for a dry run, ...). A pass stopped by a safety check (too many
deletes) exits with code 6, one that cannot reach the bucket or the server
with code 7 (within seconds: the daemon keeps trying by itself).`,
		Example: `  bm-agent sync
  bm-agent sync --dry-run           # list what would be copied, deleted and conflicted; change nothing
  bm-agent sync --profile safe      # this pass only: keep both versions of every conflict
  bm-agent sync --force             # allow more deletes than the profile's max-delete (and lift the pause it caused)
  bm-agent sync --resync            # rebuild the baseline; deletes nothing`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch req.Profile {
			case "", "safe", "balanced", "fast":
			default:
				return usageErrorf("--profile %q: want safe, balanced or fast", req.Profile)
			}
			req.Wait = !noWait
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			c := client(opts)
			var sum ipc.PassSummary
			var err error
			if req.Wait && !opts.JSON {
				sum, err = syncWithProgress(ctx, c, req, newProgressView(out, isTerminal(out)))
			} else {
				sum, err = c.Sync(ctx, req)
			}
			if err != nil {
				return err
			}
			if opts.JSON {
				if jerr := printJSON(out, sum); jerr != nil {
					return jerr
				}
				return syncError(ctx, c, sum)
			}
			if noWait {
				fmt.Fprintln(out, "Sync requested.")
				return nil
			}
			writeSyncResult(out, sum)
			return syncError(ctx, c, sum)
		},
	}
	cmd.Flags().BoolVar(&req.Resync, "resync", false, "rebuild the baseline from both sides (copies only, deletes nothing)")
	cmd.Flags().BoolVar(&req.DryRun, "dry-run", false, "show what would be copied, deleted and conflicted without changing anything")
	cmd.Flags().BoolVar(&req.Force, "force", false, "run past the max-delete safety check and lift the pause it caused")
	cmd.Flags().StringVar(&req.Profile, "profile", "", "sync profile for this pass: safe, balanced or fast (default: the configured one)")
	_ = cmd.RegisterFlagCompletionFunc("profile", cobra.FixedCompletions([]string{"safe", "balanced", "fast"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return at once instead of waiting for the pass")
	return cmd
}

// planSides orders and names the sides of a plan for people.
var planSides = []struct{ side, title string }{
	{ipc.SideLocal, "In the notes folder"},
	{ipc.SideCloud, "In the bucket"},
	{ipc.SideBoth, "Changed on both sides"},
}

// writeSyncResult prints a pass's summary, and for a dry run its plan.
func writeSyncResult(w io.Writer, sum ipc.PassSummary) {
	took := (time.Duration(sum.DurationMS) * time.Millisecond).Round(time.Millisecond)
	switch {
	case sum.Skipped != "" && sum.Error == "":
		fmt.Fprintf(w, "Nothing done: %s.\n", sum.Skipped)
		return
	case sum.DryRun:
		writePlan(w, sum.Plan)
		return
	case sum.Error != "":
		// the caller reports the error
		return
	}
	fmt.Fprintf(w, "Synced in %s: %d up, %d down, %d deleted here, %d deleted in the bucket, %d conflicts.\n",
		took, sum.Uploaded, sum.Downloaded, sum.DeletedLocal, sum.DeletedRemote, sum.Conflicts)
	if sum.Resync {
		fmt.Fprintln(w, "This pass was a safe resync: it copied both ways and deleted nothing.")
	}
}

// writePlan prints what a dry run would do, side by side.
func writePlan(w io.Writer, plan *ipc.Plan) {
	if plan == nil || len(plan.Items) == 0 {
		fmt.Fprintln(w, "Dry run: nothing would change.")
		return
	}
	fmt.Fprintf(w, "Dry run: %d changes would be made (nothing was changed).\n", len(plan.Items))
	for _, s := range planSides {
		first := true
		for _, it := range plan.Items {
			if it.Side != s.side {
				continue
			}
			if first {
				fmt.Fprintf(w, "%s:\n", s.title)
				first = false
			}
			fmt.Fprintf(w, "  %-8s %s\n", it.Action, it.Path)
		}
	}
	for _, it := range plan.Items {
		if it.Side != ipc.SideLocal && it.Side != ipc.SideCloud && it.Side != ipc.SideBoth {
			fmt.Fprintf(w, "  %s %-8s %s\n", it.Side, it.Action, it.Path)
		}
	}
}

func pauseCmd(opts *Options) *cobra.Command {
	var dur time.Duration
	cmd := &cobra.Command{
		Use:   "pause",
		Short: "Pause syncing (until `bm-agent resume`, or for a while with --for)",
		Example: `  bm-agent pause
  bm-agent pause --for 1h   # resumes by itself after an hour, also across a restart
  bm-agent pause --json     # {"paused": true, "paused_until": ...}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dur < 0 {
				return usageErrorf("--for %s: must be positive", dur)
			}
			if err := client(opts).PauseFor(cmd.Context(), dur); err != nil {
				return err
			}
			if opts.JSON {
				pr := PauseResult{Paused: true}
				if dur > 0 {
					until := now().Add(dur).Truncate(time.Second)
					pr.PausedUntil = &until
				}
				return printJSON(cmd.OutOrStdout(), pr)
			}
			if dur > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "Paused for %s (until %s).\n", dur, now().Add(dur).Format("15:04"))
				return nil
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Paused. `bm-agent resume` resumes.")
			return nil
		},
	}
	cmd.Flags().DurationVar(&dur, "for", 0, "resume by itself after this long (e.g. 30m, 2h)")
	return cmd
}

func resumeCmd(opts *Options) *cobra.Command {
	return &cobra.Command{
		Use:     "resume",
		Short:   "Resume syncing",
		Example: "  bm-agent resume\n  bm-agent resume --json   # {\"paused\": false}",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := client(opts).Resume(cmd.Context()); err != nil {
				return err
			}
			if opts.JSON {
				return printJSON(cmd.OutOrStdout(), PauseResult{})
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Resumed.")
			return nil
		},
	}
}

// PauseResult is what pause and resume print under --json.
type PauseResult struct {
	Paused      bool       `json:"paused"`
	PausedUntil *time.Time `json:"paused_until,omitempty"`
}

// syncError turns a pass that ran and failed into the command's error: one
// wrapping [ErrSyncHeld] when the daemon now holds syncing (a safety check
// stopped the pass).
func syncError(ctx context.Context, c *ipc.Client, sum ipc.PassSummary) error {
	if sum.Error == "" {
		return nil
	}
	if sum.Offline {
		return fmt.Errorf("sync failed: %w: %s (bm-agent keeps trying by itself, and syncs as soon as it can)", ErrOffline, sum.Error)
	}
	if st, err := c.Status(ctx); err == nil && st.Hold != nil {
		return fmt.Errorf("sync failed: %s: %w (%s)", sum.Error, ErrSyncHeld, holdFix(*st.Hold))
	}
	return fmt.Errorf("sync failed: %s", sum.Error)
}

// syncWithProgress runs a waiting sync pass and shows the daemon's progress
// events on pv meanwhile.
func syncWithProgress(ctx context.Context, c *ipc.Client, req ipc.SyncRequest, pv *progressView) (ipc.PassSummary, error) {
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Watch(wctx, func(ev ipc.Event) error {
			if ev.Kind == ipc.EventProgress && ev.Progress != nil {
				pv.update(*ev.Progress)
			}
			return nil
		})
	}()
	sum, err := c.Sync(ctx, req)
	cancel()
	<-done
	pv.finish()
	return sum, err
}

// plainProgressEvery is how often a progress line is printed where there
// is no terminal.
var plainProgressEvery = 2 * time.Second

// progressView shows a pass's progress: a bar with rate and time left on a
// terminal (schollz/progressbar), plain lines every few seconds elsewhere.
// It shows nothing until the first progress event, so quick passes stay
// quiet.
type progressView struct {
	w    io.Writer
	tty  bool
	mu   sync.Mutex
	bar  *progressbar.ProgressBar
	last time.Time
}

func newProgressView(w io.Writer, tty bool) *progressView {
	return &progressView{w: w, tty: tty}
}

func (v *progressView) update(p ipc.Progress) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.tty {
		if now := time.Now(); v.last.IsZero() || now.Sub(v.last) >= plainProgressEvery {
			v.last = now
			fmt.Fprintln(v.w, progressLine(p))
		}
		return
	}
	total := p.BytesTotal
	if total <= 0 {
		total = -1 // unknown: a spinner
	}
	if v.bar == nil {
		v.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(v.w),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionSetRenderBlankState(true),
		)
	} else if v.bar.GetMax64() != total {
		v.bar.ChangeMax64(total)
	}
	desc := "Syncing"
	if p.Pass != "" && p.Pass != "manual" {
		// a pass that was running before this one was asked for: say so
		desc += " (" + p.Pass + ")"
	}
	if p.FilesTotal > 0 {
		desc += fmt.Sprintf(" %d/%d files", p.FilesDone, p.FilesTotal)
	}
	v.bar.Describe(desc)
	_ = v.bar.Set64(p.BytesDone)
}

func (v *progressView) finish() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.bar != nil {
		_ = v.bar.Finish()
		fmt.Fprintln(v.w)
		v.bar = nil
	}
}
