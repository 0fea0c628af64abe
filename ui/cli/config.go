package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/ipc"
)

func configCmd(opts *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show or change the agent's settings",
		Long: `Show or change the agent's settings (the keys of its config.json). The daemon
checks every change; some apply only after it restarts, and then says so.`,
		Example: `  bm-agent config get
  bm-agent config get folder
  bm-agent config set interval 5m
  bm-agent config get --json`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(configGetCmd(opts), configSetCmd(opts))
	return cmd
}

func configGetCmd(opts *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "get [KEY]",
		Short: "Print all settings, or one",
		Long: `Print all settings, or the value of KEY. With --json: the settings as one
object, or {"KEY": value} for one key.`,
		Example: `  bm-agent config get
  bm-agent config get folder
  bm-agent config get --json`,
		Args: cobra.MaximumNArgs(1),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			m, err := client(opts).ConfigGet(cmd.Context())
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return sortedKeys(m), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := client(opts).ConfigGet(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(args) == 1 {
				v, ok := m[args[0]]
				if !ok {
					return usageErrorf("config get %s: no such setting (known: %v)", args[0], sortedKeys(m))
				}
				if opts.JSON {
					return printJSON(out, map[string]any{args[0]: v})
				}
				fmt.Fprintln(out, configValue(v))
				return nil
			}
			if opts.JSON {
				return printJSON(out, m)
			}
			writeConfig(out, m)
			return nil
		},
	}
}

func configSetCmd(opts *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "set KEY VALUE",
		Short: "Change one setting",
		Long: `Change one setting. VALUE is parsed by the daemon as the setting's type
(durations like 30s or 5m, true/false, paths). With --json it prints the
settings after the change, with "restart_required": true when the change
applies only after the daemon restarts.`,
		Example: `  bm-agent config set interval 5m
  bm-agent config set profile safe`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := client(opts).ConfigSet(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if opts.JSON {
				return printJSON(out, m)
			}
			writeConfigSet(out, args[0], m)
			return nil
		},
	}
}

// writeConfigSet confirms a change.
func writeConfigSet(w io.Writer, key string, m map[string]any) {
	if v, ok := m[key]; ok {
		fmt.Fprintf(w, "%s = %s\n", key, configValue(v))
	} else {
		fmt.Fprintf(w, "%s set.\n", key)
	}
	if restart, _ := m[ipc.ConfigRestartRequired].(bool); restart {
		fmt.Fprintln(w, "This change applies after the daemon restarts (systemctl --user restart bm-agent, or stop and start `bm-agent run`).")
	}
}

// writeConfig prints the settings as sorted "key = value" lines.
func writeConfig(w io.Writer, m map[string]any) {
	for _, k := range sortedKeys(m) {
		if k == ipc.ConfigRestartRequired {
			continue
		}
		fmt.Fprintf(w, "%s = %s\n", k, configValue(m[k]))
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// configValue prints a setting: strings bare, the rest as JSON.
func configValue(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
