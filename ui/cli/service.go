package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/packaging"
)

// envServer names the server in the environment (cloudapi.EnvHost).
const envServer = "BASIC_MEMORY_CLOUD_HOST"

// serviceEnv are the variables a service inherits from the shell that
// installs it, so it talks to the same cloud as the CLI.
var serviceEnv = []string{envServer, "BASIC_MEMORY_CLOUD_DOMAIN", "BASIC_MEMORY_CLOUD_CLIENT_ID", "BM_AGENT_KEYRING"}

// serviceParams describes an install of the running binary.
func serviceParams(folder, home string) (packaging.Params, error) {
	exe, err := os.Executable()
	if err != nil {
		return packaging.Params{}, fmt.Errorf("install: find this binary: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return packaging.Params{}, fmt.Errorf("install: find this binary: %w", err)
	}
	p := packaging.Params{AgentPath: exe, Folder: folder, Home: home, Env: map[string]string{}}
	if folder != "" {
		if p.Folder, err = filepath.Abs(folder); err != nil {
			return p, fmt.Errorf("install: %w", err)
		}
	}
	tray := filepath.Join(filepath.Dir(exe), "bm-tray")
	if _, err := os.Stat(tray); err == nil {
		p.TrayPath = tray
	}
	for _, k := range serviceEnv {
		if v := os.Getenv(k); v != "" {
			p.Env[k] = v
		}
	}
	return p, nil
}

func installCmd(opts *Options) *cobra.Command {
	var folder, home string
	var noStart bool
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install bm-agent as a service that starts at login (and bm-tray at login when it is beside it)",
		Example: `  bm-agent install
  bm-agent install --folder ~/notes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := serviceParams(folder, home)
			if err != nil {
				return err
			}
			res, err := packaging.New().Install(cmd.Context(), p, !noStart)
			if opts.JSON {
				if jerr := printJSON(cmd.OutOrStdout(), resultJSON(res)); jerr != nil {
					return jerr
				}
				return err
			}
			for _, f := range res.Files {
				fmt.Fprintln(cmd.OutOrStdout(), "wrote", f)
			}
			for _, c := range res.Commands {
				fmt.Fprintln(cmd.OutOrStdout(), "ran", c)
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Installed: bm-agent now starts at login. `bm-agent status` shows what it is doing.")
			return nil
		},
	}
	cmd.Flags().StringVar(&folder, "folder", "", "the notes folder the service syncs (default: the agent's config)")
	cmd.Flags().StringVar(&home, "home", os.Getenv("BM_AGENT_HOME"), "the agent's config and state dir")
	cmd.Flags().BoolVar(&noStart, "no-start", false, "install without starting it now")
	return cmd
}

func uninstallCmd(opts *Options) *cobra.Command {
	return &cobra.Command{
		Use:     "uninstall",
		Short:   "Stop and remove the bm-agent service (your notes, config and login stay)",
		Example: "  bm-agent uninstall\n  bm-agent uninstall --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := packaging.New().Uninstall(cmd.Context())
			if opts.JSON {
				if jerr := printJSON(cmd.OutOrStdout(), resultJSON(res)); jerr != nil {
					return jerr
				}
				return err
			}
			for _, f := range res.Files {
				fmt.Fprintln(cmd.OutOrStdout(), "removed", f)
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Uninstalled.")
			return nil
		},
	}
}

// resultJSON is res as install and uninstall print it under --json: lists,
// empty rather than null.
func resultJSON(res packaging.Result) packaging.Result {
	if res.Files == nil {
		res.Files = []string{}
	}
	if res.Commands == nil {
		res.Commands = []string{}
	}
	return res
}
