// Package cli holds the bm-agent commands that talk to a running daemon
// through ipc: login, logout, status, sync, pause, resume. It never touches
// sync state itself; `bm-agent run` (the daemon) is wired in by the main
// package.
package cli

import (
	"encoding/json"
	"io"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// Options are the global flags every command sees.
type Options struct {
	Socket string
	JSON   bool
}

// AddCommands adds the client commands to root.
func AddCommands(root *cobra.Command, opts *Options) {
	root.PersistentFlags().StringVar(&opts.Socket, "socket", ipc.DefaultSocketPath(), "the daemon's socket")
	root.PersistentFlags().BoolVar(&opts.JSON, "json", false, "print JSON instead of text")
	root.AddCommand(
		loginCmd(opts), logoutCmd(opts), statusCmd(opts), syncCmd(opts),
		pauseCmd(opts), resumeCmd(opts),
		installCmd(opts), uninstallCmd(opts),
	)
}

func client(opts *Options) *ipc.Client { return ipc.NewClient(opts.Socket) }

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
