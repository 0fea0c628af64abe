// Command bm-agent is the Basic Memory sync daemon (`bm-agent run`, what the
// OS service starts) and the CLI that talks to it.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/agent"
	"github.com/basicmachines-co/bm-agent/ui/cli"
)

var version = "dev"

func main() {
	os.Exit(run())
}

// run runs the command line and returns the exit code (cli.ExitCode: 0 ok,
// 1 error, 2 usage, 3 no daemon, 4 login required, 5 subscription
// required, 6 sync held).
func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	agent.Version = version
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
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	opts := &cli.Options{Local: localConfig}
	cli.AddCommands(root, opts)
	root.AddCommand(runCmd(opts))
	cli.Finish(root)
	err := root.ExecuteContext(ctx)
	return cli.ReportError(os.Stderr, err, opts.JSON)
}

// localConfig is the agent's home and folder as the daemon would see them,
// for the CLI's checks when no daemon answers.
func localConfig() (cli.LocalConfig, error) {
	home := agent.DefaultHome()
	cfg, err := agent.LoadConfig(home)
	lc := cli.LocalConfig{Home: home, Folder: cfg.Folder}
	if lc.Folder == "" {
		lc.Folder = agent.DefaultFolder()
	}
	return lc, err
}

func runCmd(opts *cli.Options) *cobra.Command {
	var folder, host, domain, home string
	var interval time.Duration
	var debug bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon in the foreground (what the OS service starts)",
		Example: `  bm-agent run
  bm-agent run --folder ~/notes --host https://cloud.basicmemory.com`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if debug {
				level = slog.LevelDebug
			}
			logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			cfg, err := agent.LoadConfig(home)
			if err != nil {
				return err
			}
			f := cmd.Flags()
			if f.Changed("folder") {
				cfg.Folder = folder
			}
			if f.Changed("host") {
				cfg.CloudHost = host
			}
			if f.Changed("domain") {
				cfg.CloudDomain = domain
			}
			if f.Changed("interval") {
				cfg.Interval = agent.Duration(interval)
			}
			cfg.SocketPath = opts.Socket
			d, err := agent.New(cfg, logger)
			if err != nil {
				return err
			}
			return d.Serve(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&home, "home", agent.DefaultHome(), "the agent's config and state dir (env BM_AGENT_HOME)")
	f.StringVar(&folder, "folder", agent.DefaultFolder(), "the notes folder to keep in step")
	f.StringVar(&host, "host", "", "tenant API URL (env BASIC_MEMORY_CLOUD_HOST)")
	f.StringVar(&domain, "domain", "", "OAuth issuer URL (env BASIC_MEMORY_CLOUD_DOMAIN; default: the host)")
	f.DurationVar(&interval, "interval", 60*time.Second, "time between passes when nothing changes")
	f.BoolVar(&debug, "debug", false, "debug logs")
	return cmd
}
