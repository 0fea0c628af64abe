package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/ipc"
)

func configCmd(opts *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show or change the agent's settings",
		Long: `Show or change the agent's settings (the keys of its config.json). The daemon
checks every change; some apply only after it restarts, and then says so.

Each setting comes from the first of: a flag of 'bm-agent run', the
environment (BASIC_MEMORY_CLOUD_HOST, ...), bm-agent's config.json (what
'config set' writes), Basic Memory's config.json, the default. 'config get'
says which one for each. With nothing set, cloud_host is the Basic Memory
cloud (https://api.basicmemory.cloud, signing in through its AuthKit);
'config set cloud_host ""' goes back to it.`,
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
		Long: `Print all settings and where each comes from, or the value of KEY. With
--json: the settings as one object, with "sources": {"KEY": {"source", "name"}}
(source flag, env, config, basic_memory or default; name the flag, variable or
file), or {"KEY": value, "sources": {"KEY": ...}} for one key.`,
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
			return settingNames(m), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := client(opts).ConfigGet(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(args) == 1 {
				v, ok := m[args[0]]
				if !ok || isMetaKey(args[0]) {
					return usageErrorf("config get %s: no such setting (known: %v)", args[0], settingNames(m))
				}
				if opts.JSON {
					one := map[string]any{args[0]: v}
					if o, ok := sourcesOf(m)[args[0]]; ok {
						one[ipc.ConfigSources] = map[string]settingOrigin{args[0]: o}
					}
					return printJSON(out, one)
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
(durations like 30s or 5m, whole numbers, URLs, paths); a folder must exist.
With --json it prints the settings after the change, with "restart_required":
true when the change applies only after the daemon restarts, and
"overridden_by" when a flag or an environment variable of the daemon sets
the key (the saved value applies once it is gone).`,
		Example: `  bm-agent config set interval 5m
  bm-agent config set profile safe
  bm-agent config set folder ~/notes`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			value, err := localValue(args[0], args[1])
			if err != nil {
				return err
			}
			m, err := client(opts).ConfigSet(cmd.Context(), args[0], value)
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

// localValue makes a folder given to `config set` absolute here, where
// the person typed it (the daemon runs elsewhere); other values go as they
// are.
func localValue(key, value string) (string, error) {
	if strings.ReplaceAll(strings.ToLower(key), "-", "_") != "folder" || value == "" ||
		filepath.IsAbs(value) || strings.HasPrefix(value, "~"+string(filepath.Separator)) {
		return value, nil
	}
	abs, err := filepath.Abs(value)
	if err != nil {
		return "", fmt.Errorf("config set folder: %w", err)
	}
	return abs, nil
}

// writeConfigSet confirms a change.
func writeConfigSet(w io.Writer, key string, m map[string]any) {
	if v, ok := m[key]; ok {
		fmt.Fprintf(w, "%s = %s\n", key, configValue(v))
	} else {
		fmt.Fprintf(w, "%s set.\n", key)
	}
	if o, ok := m[ipc.ConfigOverriddenBy]; ok {
		fmt.Fprintf(w, "Saved in bm-agent's config, but the daemon takes %s from %s, which comes first: the saved value applies once that is gone.\n", key, originText(o))
		return
	}
	if restart, _ := m[ipc.ConfigRestartRequired].(bool); restart {
		fmt.Fprintln(w, "This change applies after the daemon restarts (systemctl --user restart bm-agent, or stop and start `bm-agent run`).")
	}
}

// writeConfig prints the settings as sorted "key = value" lines, each
// with where it comes from when the daemon says.
func writeConfig(w io.Writer, m map[string]any) {
	sources := sourcesOf(m)
	var lines [][2]string
	width := 0
	for _, k := range sortedKeys(m) {
		if isMetaKey(k) {
			continue
		}
		line := fmt.Sprintf("%s = %s", k, configValue(m[k]))
		width = max(width, len(line))
		from := ""
		if o, ok := sources[k]; ok {
			from = "(" + o.String() + ")"
		}
		lines = append(lines, [2]string{line, from})
	}
	for _, l := range lines {
		if l[1] == "" {
			fmt.Fprintln(w, l[0])
			continue
		}
		fmt.Fprintf(w, "%-*s  %s\n", width, l[0], l[1])
	}
}

// settingOrigin is where a setting's value comes from, as the daemon
// reports it under "sources".
type settingOrigin struct {
	Source string `json:"source"`
	Name   string `json:"name,omitempty"`
}

func (o settingOrigin) String() string {
	switch {
	case o.Source == "flag":
		return "flag " + o.Name + " of `bm-agent run`"
	case o.Source == "default" && o.Name != "":
		return "default: as " + o.Name
	case o.Name != "":
		return o.Source + " " + o.Name
	}
	return o.Source
}

// sourcesOf reads the "sources" of a settings answer (none from an older
// daemon).
func sourcesOf(m map[string]any) map[string]settingOrigin {
	var sources map[string]settingOrigin
	if b, err := json.Marshal(m[ipc.ConfigSources]); err == nil {
		_ = json.Unmarshal(b, &sources)
	}
	return sources
}

// originText is one origin of a settings answer for a person.
func originText(v any) string {
	var o settingOrigin
	if b, err := json.Marshal(v); err == nil && json.Unmarshal(b, &o) == nil && o.Source != "" {
		return o.String()
	}
	return "a higher layer"
}

// isMetaKey reports whether k is a key of a settings answer that is not a
// setting.
func isMetaKey(k string) bool {
	return k == ipc.ConfigRestartRequired || k == ipc.ConfigSources || k == ipc.ConfigOverriddenBy || k == "pending"
}

// settingNames are the settings of a settings answer, sorted.
func settingNames(m map[string]any) []string {
	var keys []string
	for _, k := range sortedKeys(m) {
		if !isMetaKey(k) {
			keys = append(keys, k)
		}
	}
	return keys
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
