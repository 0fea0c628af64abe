package cli

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/ipc"
)

func logsCmd(opts *Options) *cobra.Command {
	var req ipc.LogsRequest
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Print the daemon's recent log records (and follow new ones with -f)",
		Long: `Print the daemon's recent log records, oldest first. With -f it keeps
printing new records until Ctrl-C. With --json each record is one JSON object
per line: {"time", "level", "msg", "attrs"}.`,
		Example: `  bm-agent logs
  bm-agent logs -n 500
  bm-agent logs -f
  bm-agent logs --json | jq -r 'select(.level=="ERROR") | .msg'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.Lines < 0 {
				return usageErrorf("-n %d: must be at least 0", req.Lines)
			}
			out := cmd.OutOrStdout()
			return client(opts).Logs(cmd.Context(), req, func(l ipc.LogLine) error {
				if opts.JSON {
					return printJSONLine(out, l)
				}
				_, err := fmt.Fprintln(out, logLine(l, time.Local))
				return err
			})
		},
	}
	cmd.Flags().IntVarP(&req.Lines, "lines", "n", ipc.DefaultLogLines, "how many recent records to print first")
	cmd.Flags().BoolVarP(&req.Follow, "follow", "f", false, "keep printing new records until Ctrl-C")
	return cmd
}

// logLine formats a log record like slog's text handler: time, level,
// message, then the attributes sorted by key.
func logLine(l ipc.LogLine, loc *time.Location) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-5s %s", l.Time.In(loc).Format("2006-01-02 15:04:05.000"), l.Level, l.Msg)
	keys := make([]string, 0, len(l.Attrs))
	for k := range l.Attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, attrValue(l.Attrs[k]))
	}
	return b.String()
}

// attrValue prints an attribute's value, quoted when it has spaces.
func attrValue(v any) string {
	var s string
	switch v := v.(type) {
	case string:
		s = v
	case nil:
		s = "<nil>"
	case float64, bool:
		s = fmt.Sprint(v)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			s = fmt.Sprint(v)
		} else {
			s = string(b)
		}
	}
	if s == "" || strings.ContainsAny(s, " \t\n\"=") {
		return fmt.Sprintf("%q", s)
	}
	return s
}
