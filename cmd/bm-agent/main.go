// Command bm-agent is the Basic Memory sync daemon (`bm-agent run`, what the
// OS service starts) and the CLI that talks to it.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/agent"
	"github.com/basicmachines-co/bm-agent/internal/buildinfo"
	"github.com/basicmachines-co/bm-agent/ui/cli"
)

func main() {
	os.Exit(run())
}

// run runs the command line and returns the exit code (cli.ExitCode: 0 ok,
// 1 error, 2 usage, 3 no daemon, 4 login required, 5 subscription
// required, 6 sync held).
func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	agent.Version = buildinfo.Version
	root, opts := newRoot()
	err := root.ExecuteContext(ctx)
	return cli.ReportError(os.Stderr, err, opts.JSON)
}

// newRoot builds the bm-agent command line: the client commands of ui/cli
// and `run`, the daemon.
func newRoot() (*cobra.Command, *cli.Options) {
	root := &cobra.Command{
		Use:   "bm-agent",
		Short: "Keeps your Basic Memory notes folder and your cloud bucket in step",
		Long: `bm-agent keeps your Basic Memory notes folder and your cloud bucket in step.

'bm-agent run' is the daemon (what the service starts); every other command
talks to it over a local socket. Start with 'bm-agent setup'. Every command
takes --json for output a program can read.`,
		Example: `  bm-agent setup                 # service, login, key and first sync in one go
  bm-agent status --watch
  bm-agent sync
  bm-agent doctor
  bm-agent completion bash > ~/.local/share/bash-completion/completions/bm-agent`,
		Version:       buildinfo.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate(buildinfo.String("bm-agent") + "\n")
	opts := &cli.Options{Local: localConfig, SaveSetting: agent.SaveSetting}
	cli.AddCommands(root, opts)
	root.AddCommand(runCmd(opts))
	cli.Finish(root)
	return root, opts
}

// localConfig is the agent's home and folder as the daemon would see them,
// for the CLI's checks when no daemon answers.
func localConfig() (cli.LocalConfig, error) {
	cfg, err := agent.ResolveConfig(agent.Inputs{})
	return cli.LocalConfig{Home: cfg.Home, Folder: cfg.Folder}, err
}

// runFlags are the settings `bm-agent run` takes as flags, by key.
var runFlags = map[string]string{
	"home":         "--home",
	"folder":       "--folder",
	"cloud_host":   "--host",
	"cloud_domain": "--domain",
	"interval":     "--interval",
}

func runCmd(opts *cli.Options) *cobra.Command {
	var flags agent.Config
	var interval time.Duration
	var debugLogs bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon in the foreground (what the OS service starts)",
		Long: `Run the daemon in the foreground (what the OS service starts).

Each setting comes from the first of: a flag here, the environment, bm-agent's
config.json (bm-agent config set), Basic Memory's config.json, the default.
'bm-agent config get' shows where each came from.`,
		Example: `  bm-agent run
  bm-agent run --folder ~/notes --host https://bm.example.com`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if debugLogs {
				level = slog.LevelDebug
			}
			logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			given := map[string]string{}
			for key, name := range runFlags {
				if cmd.Flags().Changed(name[2:]) {
					given[key] = name
				}
			}
			flags.Interval = agent.Duration(interval)
			if flags.Folder != "" {
				abs, err := filepath.Abs(flags.Folder)
				if err != nil {
					return err
				}
				flags.Folder = abs
			}
			cfg, err := agent.ResolveConfig(agent.Inputs{Flags: flags, FlagNames: given})
			if err != nil {
				return err
			}
			for _, w := range cfg.Warnings {
				logger.Warn(w)
			}
			cfg.SocketPath = opts.Socket
			limitMemory(logger)
			d, err := agent.New(cfg, logger)
			if err != nil {
				return err
			}
			return d.Serve(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&flags.Home, "home", "", "the agent's config and state dir (default: $BM_AGENT_HOME, else bm-agent in the user config dir)")
	f.StringVar(&flags.Folder, "folder", "", "the notes folder to keep in step (default: bm-agent's config, else "+agent.DefaultFolder()+")")
	f.StringVar(&flags.CloudHost, "host", "", "tenant API URL (default: $BASIC_MEMORY_CLOUD_HOST, bm-agent's config, Basic Memory's, then the Basic Memory cloud)")
	f.StringVar(&flags.CloudDomain, "domain", "", "OAuth issuer URL (default: $BASIC_MEMORY_CLOUD_DOMAIN, ..., the host)")
	f.DurationVar(&interval, "interval", 0, "time between passes when nothing changes (default: bm-agent's config, else 1m0s)")
	f.BoolVar(&debugLogs, "debug", false, "debug logs")
	return cmd
}

// daemonMemoryLimit is the daemon's soft memory limit (runtime/debug's):
// past it the collector runs sooner instead of letting the heap grow to
// twice what is live. A first sync of 50,000 notes holds about 190 MB
// live at its peak (rclone bisync's record of the resync); without a limit
// the process then reached 428 MB. The limit is soft: a larger tree may
// pass it, and the collector's share of the CPU stays bounded.
const daemonMemoryLimit = 200 << 20

// limitMemory sets daemonMemoryLimit unless GOMEMLIMIT in the environment
// already says what the limit is (the runtime has read it; "off" is none).
func limitMemory(logger *slog.Logger) {
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		logger.Debug("memory limit from GOMEMLIMIT", "bytes", debug.SetMemoryLimit(-1))
		return
	}
	debug.SetMemoryLimit(daemonMemoryLimit)
}
