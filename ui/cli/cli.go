package cli

import (
	"encoding/json"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// Options are the global flags every command sees, and the hooks the main
// package wires in.
type Options struct {
	Socket string
	JSON   bool

	// Local describes this machine's agent setup (home and notes folder)
	// for the checks `doctor` runs without a daemon and for `setup`; nil
	// gives the defaults of $BM_AGENT_HOME and ~/basic-memory.
	Local func() (LocalConfig, error)
	// Installer installs and starts the agent's service for `setup`; nil
	// uses packaging (a systemd user unit, a launchd agent, a Windows
	// service).
	Installer ServiceInstaller
	// SaveSetting checks a setting as `config set` does and writes it to
	// the agent's config file in home ("" for the default), for
	// `login --server` and `setup --server` when no daemon answers; nil
	// means they need a daemon.
	SaveSetting func(home, key, value string) error
}

// LocalConfig is what the CLI needs to know of the agent's config when no
// daemon answers.
type LocalConfig struct {
	Home   string
	Folder string
}

// AddCommands adds the client commands to root.
//
// It also empties pflag.CommandLine: packages linked into bm-agent register
// their own flags there when they load (rclone's --cpuprofile,
// --memprofile, --stats, ...), and cobra adds that set to the root's
// persistent flags when a command runs, so every command would show, take
// and complete them.
func AddCommands(root *cobra.Command, opts *Options) {
	pflag.CommandLine = pflag.NewFlagSet(root.Name(), pflag.ContinueOnError)
	root.PersistentFlags().StringVar(&opts.Socket, "socket", ipc.DefaultSocketPath(), "the daemon's socket")
	root.PersistentFlags().BoolVar(&opts.JSON, "json", false, "print JSON instead of text (see 'JSON output' in the README)")
	root.AddCommand(
		setupCmd(opts),
		withServerFlag(loginCmd(opts), opts), logoutCmd(opts), statusCmd(opts), syncCmd(opts),
		pauseCmd(opts), resumeCmd(opts),
		historyCmd(opts), conflictsCmd(opts), resolveCmd(opts), versionsCmd(opts), restoreCmd(opts),
		logsCmd(opts), configCmd(opts), doctorCmd(opts),
		mountCmd(opts), unmountCmd(opts), mountStatusCmd(opts),
		installCmd(opts), uninstallCmd(opts),
	)
}

func client(opts *Options) *ipc.Client { return ipc.NewClient(opts.Socket) }

// printJSON writes v as indented JSON: the --json form of one answer.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printJSONLine writes v as one line of JSON: the --json form of a stream
// (status --watch, logs, login).
func printJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

// isTerminal reports whether w is a terminal (progress bars and redraws
// only go to one).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// now is the clock of the commands' output; tests fix it.
var now = time.Now
