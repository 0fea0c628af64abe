package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// Exit codes of bm-agent; see [ExitCode] and the table in doc.go.
const (
	ExitOK                   = 0
	ExitError                = 1
	ExitUsage                = 2
	ExitNoDaemon             = 3
	ExitLoginRequired        = 4
	ExitSubscriptionRequired = 5
	ExitSyncHeld             = 6
	ExitOffline              = 7
	ExitBusy                 = 8
)

// Errors the commands return so that [ExitCode] can tell them apart.
var (
	// ErrSubscriptionRequired: logged in, but the account has no active
	// subscription (the daemon's refusal, or found by the command).
	ErrSubscriptionRequired = ipc.ErrSubscriptionRequired
	// ErrSyncHeld: the daemon refuses to sync until the user acts (too
	// many deletes, a missing folder, a pause).
	ErrSyncHeld = errors.New("sync is held")
	// ErrOffline: the bucket or the server cannot be reached; the daemon
	// keeps trying by itself.
	ErrOffline = ipc.ErrOffline
	// ErrChecksFailed: `bm-agent doctor` found a failing check.
	ErrChecksFailed = errors.New("some checks failed")
)

// UsageError is a command line the command cannot run: a bad flag, a
// missing argument, an unknown command.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// usageErrorf returns a *UsageError.
func usageErrorf(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// reportedError is an error whose explanation the command already printed
// (doctor's report, say): main only exits with its code.
type reportedError struct{ err error }

func (e *reportedError) Error() string { return e.err.Error() }
func (e *reportedError) Unwrap() error { return e.err }

// exitCodes maps errors to exit codes, first match wins. It is the one
// place that does, and the table in doc.go and the root's help are checked
// against it by the tests.
var exitCodes = []struct {
	err  error
	code int
	what string
}{
	{ipc.ErrNoDaemon, ExitNoDaemon, "the daemon is not running (start it: bm-agent setup, bm-agent install or bm-agent run)"},
	{ipc.ErrLoginRequired, ExitLoginRequired, "not logged in, or the login expired (bm-agent login)"},
	{ErrSubscriptionRequired, ExitSubscriptionRequired, "the account has no active subscription"},
	{ErrSyncHeld, ExitSyncHeld, "sync is held: paused, or stopped by a safety check such as max-delete (bm-agent status says why)"},
	{ipc.ErrPaused, ExitSyncHeld, ""},
	{ipc.ErrHeld, ExitSyncHeld, ""},
	{ErrOffline, ExitOffline, "offline: the bucket or the server cannot be reached (bm-agent keeps trying by itself)"},
	{ipc.ErrBusy, ExitBusy, "the daemon is busy (starting, say): try again in a moment"},
}

// ExitCode returns the process exit code for err (the error a command
// returned): 0 for nil, 2 for a usage error, 3 when no daemon answers, 4
// when a login is required, 5 when a subscription is, 6 when sync is held
// or paused, 7 when offline, 8 when the daemon is busy, and 1 for anything
// else.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ue *UsageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return ExitUsage
	}
	for _, c := range exitCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return ExitError
}

// isCobraUsage recognizes the usage errors cobra makes itself (an unknown
// command), which carry no type.
func isCobraUsage(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command ") || strings.HasPrefix(msg, "unknown flag: ") ||
		strings.HasPrefix(msg, "unknown shorthand flag: ")
}

// ErrorJSON is what bm-agent prints on stderr for a failed command under
// --json.
type ErrorJSON struct {
	Error    string `json:"error"`
	ExitCode int    `json:"exit_code"`
}

// ReportError prints err for a person (or as [ErrorJSON] with asJSON) and
// returns the exit code; it prints nothing for nil or for an error the
// command already explained.
func ReportError(w io.Writer, err error, asJSON bool) int {
	code := ExitCode(err)
	if err == nil {
		return code
	}
	if asJSON {
		_ = printJSON(w, ErrorJSON{Error: err.Error(), ExitCode: code})
		return code
	}
	var re *reportedError
	if errors.As(err, &re) {
		return code
	}
	fmt.Fprintln(w, "bm-agent:", err)
	if code == ExitUsage {
		fmt.Fprintln(w, "Run 'bm-agent --help' for usage.")
	}
	return code
}

// exitCodeHelp is the exit code table for the root command's help.
func exitCodeHelp() string {
	var b strings.Builder
	b.WriteString("Exit codes:\n")
	fmt.Fprintf(&b, "  %d  ok\n", ExitOK)
	fmt.Fprintf(&b, "  %d  error\n", ExitError)
	fmt.Fprintf(&b, "  %d  usage: a bad flag, argument or command\n", ExitUsage)
	for _, c := range exitCodes {
		if c.what != "" {
			fmt.Fprintf(&b, "  %d  %s\n", c.code, c.what)
		}
	}
	return b.String()
}

// Finish prepares root once every command is added (including those of
// the main package): flag and argument errors become [UsageError]s, every
// command gets the exit code table in its help, and cobra's `completion`
// command is there. Call it right before executing root.
func Finish(root *cobra.Command) {
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{Err: err} })
	root.CompletionOptions.DisableDefaultCmd = false
	root.InitDefaultCompletionCmd()
	if !strings.Contains(root.Long, "Exit codes:") {
		root.Long = strings.TrimRight(root.Long, "\n") + "\n\n" + exitCodeHelp() + "\n" + completionHelp
	}
	var wrap func(c *cobra.Command)
	wrap = func(c *cobra.Command) {
		if args := c.Args; args != nil {
			c.Args = func(cmd *cobra.Command, a []string) error {
				if err := args(cmd, a); err != nil {
					return &UsageError{Err: err}
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			wrap(sub)
		}
	}
	wrap(root)
}

const completionHelp = `Shell completion: bm-agent completion bash|zsh|fish|powershell prints a
script; 'bm-agent completion bash --help' says where to put it.`
