package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// ErrRestartNeeded: a setting was saved, and the running daemon uses it
// only after a restart.
var ErrRestartNeeded = errors.New("the running daemon uses it after a restart")

// serverFlagHelp is the help of --server, for login and setup.
const serverFlagHelp = "the server to use from now on (default: the Basic Memory cloud): saved as cloud_host in bm-agent's config, so the service uses it too"

// withServerFlag adds --server to cmd (login): the server is saved with
// [useServer] before cmd runs.
func withServerFlag(cmd *cobra.Command, opts *Options) *cobra.Command {
	var server string
	cmd.Flags().StringVar(&server, "server", "", serverFlagHelp)
	cmd.Example = strings.TrimRight(cmd.Example, "\n") + "\n  bm-agent " + cmd.Name() + " --server https://bm.example.com   # a self-hosted bm-server, saved for the service"
	run := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if c.Flags().Changed("server") {
			if _, err := useServer(c.Context(), client(opts), opts.SaveSetting, "", server); err != nil {
				return fmt.Errorf("%s: %w", c.Name(), err)
			}
			if !opts.JSON {
				fmt.Fprintf(c.OutOrStdout(), "Server: %s (saved in bm-agent's config).\n", strings.TrimRight(strings.TrimSpace(server), "/"))
			}
		}
		return run(c, args)
	}
	return cmd
}

// useServer makes url the server bm-agent uses: it saves cloud_host in
// bm-agent's own config, through the daemon when one answers, else with
// save in the config file in home ("": the default), so that the service,
// started without flags, uses it. changed reports whether the daemon used
// another server. An error wraps [ErrRestartNeeded] when the running daemon
// must restart to use url, and names the flag or variable that wins over
// the config file when one does.
func useServer(ctx context.Context, c *ipc.Client, save func(home, key, value string) error, home, url string) (changed bool, err error) {
	url = strings.TrimRight(strings.TrimSpace(url), "/")
	if url == "" {
		return false, usageErrorf("--server: empty")
	}
	before, err := c.ConfigGet(ctx)
	if errors.Is(err, ipc.ErrNoDaemon) && save != nil {
		if err := save(home, "cloud_host", url); err != nil {
			return false, fmt.Errorf("--server: %w", err)
		}
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("--server: %w", err)
	}
	m, err := c.ConfigSet(ctx, "cloud_host", url)
	if err != nil {
		return false, fmt.Errorf("--server: %w", err)
	}
	if o, ok := m[ipc.ConfigOverriddenBy]; ok {
		return false, fmt.Errorf("--server %s: saved in bm-agent's config, but the daemon takes cloud_host from %s, which comes first: remove that, or use its server", url, originText(o))
	}
	if running, _ := before["cloud_host"].(string); strings.TrimRight(running, "/") == url {
		return false, nil
	}
	return true, fmt.Errorf("--server %s: saved in bm-agent's config; %w: restart it (systemctl --user restart bm-agent, or stop and start `bm-agent run`), then run this again", url, ErrRestartNeeded)
}
