package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/ipc"
)

func statusCmd(opts *Options) *cobra.Command {
	var watch bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the daemon's state, account, bucket, folder and last sync",
		Long: `Show the daemon's state, account, bucket, folder and last sync.

With --watch it follows the daemon's event stream and redraws on every change
(with the running pass's progress) until Ctrl-C; with --watch --json it prints
one ipc.Event object per line: {"kind": "snapshot"|"state"|"progress"|"login"|
"notification", "status": ..., "progress": ..., "notification": ..., "time": ...}.`,
		Example: `  bm-agent status
  bm-agent status --json | jq .state
  bm-agent status --watch
  bm-agent status --watch --json   # one JSON event per line`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := client(opts)
			if watch {
				return watchStatus(cmd.Context(), c, newWatchPrinter(cmd.OutOrStdout(), opts.JSON))
			}
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			if opts.JSON {
				return printJSON(cmd.OutOrStdout(), st)
			}
			writeStatus(cmd.OutOrStdout(), st, now())
			return nil
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "follow changes until Ctrl-C")
	return cmd
}

// watchReconnectDelay is how long status --watch waits before it
// reconnects to a stream the daemon closed.
var watchReconnectDelay = time.Second

// watchStatus follows the watch stream, reconnecting when the daemon drops
// it (a restart, or this reader fell behind), until ctx ends.
func watchStatus(ctx context.Context, c *ipc.Client, p *watchPrinter) error {
	for {
		err := c.Watch(ctx, p.event)
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			return err
		}
		p.note("(the daemon closed the stream: reconnecting)")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(watchReconnectDelay):
		}
		c.StartupWait = 10 * time.Second
	}
}

// watchPrinter shows watch events: JSON lines, a redrawn screen on a
// terminal, or plain appended lines otherwise.
type watchPrinter struct {
	w      io.Writer
	json   bool
	redraw bool
	now    func() time.Time
	last   *ipc.Status
	prog   *ipc.Progress
}

func newWatchPrinter(w io.Writer, asJSON bool) *watchPrinter {
	return &watchPrinter{w: w, json: asJSON, redraw: isTerminal(w), now: now}
}

func (p *watchPrinter) note(s string) {
	if !p.json {
		fmt.Fprintln(p.w, s)
	}
}

func (p *watchPrinter) event(ev ipc.Event) error {
	if p.json {
		return printJSONLine(p.w, ev)
	}
	switch ev.Kind {
	case ipc.EventSnapshot, ipc.EventState, ipc.EventLogin:
		if ev.Status == nil {
			return nil
		}
		p.last = ev.Status
		if ev.Status.State != ipc.StateSyncing {
			p.prog = nil
		}
		p.draw(ev.Time)
	case ipc.EventProgress:
		if ev.Progress == nil {
			return nil
		}
		p.prog = ev.Progress
		if p.redraw {
			p.draw(ev.Time)
		} else {
			fmt.Fprintln(p.w, progressLine(*ev.Progress))
		}
	case ipc.EventNotification:
		if n := ev.Notification; n != nil {
			fmt.Fprintln(p.w, notificationLine(*n))
		}
	}
	return nil
}

// draw prints the last status (and progress): over the screen on a
// terminal, else after a separator line with the event's time.
func (p *watchPrinter) draw(at time.Time) {
	if p.last == nil {
		return
	}
	if p.redraw {
		fmt.Fprint(p.w, "\x1b[H\x1b[2J")
	} else {
		fmt.Fprintf(p.w, "--- %s\n", at.In(p.now().Location()).Format("2006-01-02 15:04:05"))
	}
	writeStatus(p.w, *p.last, p.now())
	if p.prog != nil && p.redraw {
		fmt.Fprintln(p.w, progressLine(*p.prog))
	}
}

// notificationLine prints a notification on one line.
func notificationLine(n ipc.Notification) string {
	s := fmt.Sprintf("[%s] %s", orDash(n.Level), n.Title)
	if n.Message != "" {
		s += ": " + n.Message
	}
	return s
}

// progressLine describes a pass's progress on one line.
func progressLine(pr ipc.Progress) string {
	s := "Syncing"
	if pr.Pass != "" {
		s += " (" + pr.Pass + ")"
	}
	s += ":"
	if pr.FilesTotal > 0 {
		s += fmt.Sprintf(" %d/%d files,", pr.FilesDone, pr.FilesTotal)
	} else {
		s += fmt.Sprintf(" %d files,", pr.FilesDone)
	}
	if pr.BytesTotal > 0 {
		s += fmt.Sprintf(" %s of %s", humanSize(pr.BytesDone), humanSize(pr.BytesTotal))
	} else {
		s += " " + humanSize(pr.BytesDone)
	}
	if pr.Rate > 0 {
		s += fmt.Sprintf(", %s/s", humanSize(int64(pr.Rate)))
	}
	if pr.ETA > 0 {
		s += fmt.Sprintf(", %s left", pr.ETA.Round(time.Second))
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// holdFix says what lifts a hold.
func holdFix(h ipc.Hold) string {
	switch {
	case h.Reason == ipc.HoldResyncRequired:
		return "`bm-agent sync --resync` rebuilds the baseline (it copies, never deletes)"
	case h.NeedsForce || h.Reason == ipc.HoldMaxDelete || h.Reason == ipc.HoldAllFilesChanged:
		return "check with `bm-agent sync --dry-run`, then `bm-agent sync --force` continues"
	default:
		return "the daemon retries by itself"
	}
}

// writeStatus prints st for a person.
func writeStatus(w io.Writer, st ipc.Status, now time.Time) {
	state := string(st.State)
	if st.State.Unreachable() && st.OfflineSince != nil {
		state += fmt.Sprintf(" since %s (%s ago)", st.OfflineSince.Local().Format("Jan 2 15:04"), now.Sub(*st.OfflineSince).Round(time.Second))
	}
	if st.Error != "" && st.State != ipc.StateSubscriptionRequired {
		state += ": " + st.Error
	}
	login := "logged out: `bm-agent login` logs in"
	switch {
	case st.State == ipc.StateLoginRequired:
		login = "login required: `bm-agent login` logs in again"
	case st.LoggedIn:
		login = "logged in as " + orDash(st.Account)
	}
	fmt.Fprintf(w, "State:    %s\n", state)
	fmt.Fprintf(w, "Account:  %s\n", login)
	if st.LoginURL != "" {
		if st.LoginUserCode != "" {
			fmt.Fprintf(w, "Login:    open %s and enter the code %s\n", st.LoginURL, st.LoginUserCode)
		} else {
			fmt.Fprintf(w, "Login:    open %s\n", st.LoginURL)
		}
	}
	if st.SubscriptionStatus != "" || st.SubscriptionTier != "" {
		fmt.Fprintf(w, "Plan:     %s (subscription %s)\n", orDash(st.SubscriptionTier), orDash(st.SubscriptionStatus))
	}
	fmt.Fprintf(w, "Tenant:   %s\n", orDash(st.TenantID))
	fmt.Fprintf(w, "Bucket:   %s\n", orDash(st.Bucket))
	if st.LoggedIn {
		fmt.Fprintf(w, "Devices:  %d\n", st.Devices)
	}
	fmt.Fprintf(w, "Folder:   %s\n", orDash(st.Folder))
	if st.Profile != "" {
		fmt.Fprintf(w, "Profile:  %s\n", st.Profile)
	}
	keychain := orDash(st.KeyringBackend)
	if st.KeyringBackend == "file" {
		keychain += " (no OS keychain: tokens and key in a file only you can read)"
	}
	fmt.Fprintf(w, "Keychain: %s\n", keychain)
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
	if st.Failures > 0 {
		retry := ""
		if st.RetryAt != nil {
			retry = fmt.Sprintf(", next try in %s", st.RetryAt.Sub(now).Round(time.Second))
		}
		fmt.Fprintf(w, "Retrying: %d failed passes in a row%s\n", st.Failures, retry)
	}
	if st.Watcher != "" {
		fmt.Fprintf(w, "Watcher:  %s\n", st.Watcher)
	}
	if n := len(st.NotSyncing); n > 0 {
		noun := "files do"
		if n == 1 {
			noun = "file does"
		}
		fmt.Fprintf(w, "Not syncing: %d %s not sync for now (everything else does):\n", n, noun)
		for _, f := range st.NotSyncing {
			name := f.Path
			if f.Dir {
				name += "/ (the folder)"
			}
			fmt.Fprintf(w, "  %s: %s\n", name, f.Advice)
			if f.RetryAt.After(now) {
				fmt.Fprintf(w, "    tried again in %s, or now with `bm-agent sync`\n", f.RetryAt.Sub(now).Round(time.Second))
			}
		}
	}
	if h := st.Hold; h != nil {
		fmt.Fprintf(w, "Held:     %s\n", orDash(h.Message))
		if h.Deletes > 0 {
			side := "here and in the bucket"
			switch h.Side {
			case ipc.SideLocal:
				side = "in the notes folder"
			case ipc.SideCloud:
				side = "in the bucket"
			}
			fmt.Fprintf(w, "          %d of %d files would be deleted %s\n", h.Deletes, h.Files, side)
		}
		fmt.Fprintf(w, "          %s\n", holdFix(*h))
	}
	switch {
	case st.Paused && st.PausedUntil != nil:
		fmt.Fprintf(w, "Sync is paused until %s (in %s): `bm-agent resume` resumes it now.\n",
			st.PausedUntil.In(now.Location()).Format("15:04"), st.PausedUntil.Sub(now).Round(time.Minute))
	case st.Paused:
		fmt.Fprintln(w, "Sync is paused: `bm-agent resume` resumes it.")
	}
	if st.State == ipc.StateSubscriptionRequired {
		fmt.Fprintln(w, subscriptionMessage(st.SubscribeURL))
	}
}
