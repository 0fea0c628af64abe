package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/packaging"
)

// TestNoForeignFlags: flags another package registers on pflag.CommandLine
// (rclone's --cpuprofile, --memprofile, --stats) reach no command, neither
// its flags nor its completions. cmd/bm-agent checks the same with rclone
// linked in.
func TestNoForeignFlags(t *testing.T) {
	saved := pflag.CommandLine
	t.Cleanup(func() { pflag.CommandLine = saved })
	pflag.CommandLine = pflag.NewFlagSet("test", pflag.ContinueOnError)
	pflag.String("cpuprofile", "", "Write cpu profile to file")
	pflag.Duration("stats", 0, "Interval between printing stats")

	root := &cobra.Command{Use: "bm-agent", SilenceUsage: true, SilenceErrors: true}
	AddCommands(root, &Options{})
	Finish(root)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{c.Flags(), c.InheritedFlags(), c.PersistentFlags()} {
			for _, name := range []string{"cpuprofile", "stats"} {
				if fs.Lookup(name) != nil {
					t.Errorf("%s has rclone's --%s", c.CommandPath(), name)
				}
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs([]string{"__complete", "sync", "--"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "--cpuprofile") || strings.Contains(out.String(), "--stats") || !strings.Contains(out.String(), "--dry-run") {
		t.Errorf("completions of `sync --`:\n%s", out.String())
	}
}

// stutters reports how msg repeats itself: "bm-agent" after the prefix
// ReportError adds, or one ": "-separated part twice ("unmount: not
// mounted: unmount: not mounted").
func stutters(msg string) string {
	if strings.HasPrefix(strings.ToLower(msg), "bm-agent") {
		return `begins with "bm-agent" (ReportError prefixes it)`
	}
	seen := map[string]bool{}
	for _, part := range strings.Split(msg, ": ") {
		part = strings.ToLower(strings.TrimSpace(part))
		if seen[part] {
			return fmt.Sprintf("says %q twice", part)
		}
		seen[part] = true
	}
	return ""
}

// refusingDaemon refuses every request the way the daemon does: an error
// wrapped once with the operation's name.
type refusingDaemon struct{ *fakeDaemon }

func (refusingDaemon) Sync(context.Context, ipc.SyncRequest) (ipc.PassSummary, error) {
	return ipc.PassSummary{}, fmt.Errorf("sync: %w", ipc.ErrLoginRequired)
}

func (refusingDaemon) Login(context.Context, ipc.LoginOptions) (ipc.LoginStart, error) {
	return ipc.LoginStart{}, fmt.Errorf("login: %w: the daemon is starting; try again in a moment", ipc.ErrBusy)
}

func (refusingDaemon) Pause(context.Context) error {
	return fmt.Errorf("pause: %w", ipc.ErrLoginRequired)
}

func (refusingDaemon) PauseFor(context.Context, time.Duration) error {
	return fmt.Errorf("pause: %w", ipc.ErrLoginRequired)
}

func (refusingDaemon) Mount(context.Context, ipc.MountRequest) (ipc.MountStatus, error) {
	return ipc.MountStatus{}, fmt.Errorf("mount: %w", ipc.ErrAlreadyMounted)
}

func (refusingDaemon) Unmount(context.Context) (ipc.MountStatus, error) {
	return ipc.MountStatus{}, fmt.Errorf("unmount: %w", ipc.ErrNotMounted)
}

func (refusingDaemon) ConfigSet(context.Context, string, string) (map[string]any, error) {
	return nil, fmt.Errorf("config set folder: %w: /missing does not exist (create it first: mkdir -p /missing)", ipc.ErrInvalid)
}

func (refusingDaemon) History(context.Context, int) (ipc.History, error) {
	return ipc.History{}, fmt.Errorf("history: %w", ipc.ErrNotImplemented)
}

func (refusingDaemon) Versions(context.Context, ipc.VersionsRequest) (ipc.Versions, error) {
	return ipc.Versions{}, fmt.Errorf("versions: %w", ipc.ErrLoginRequired)
}

func (refusingDaemon) Restore(context.Context, ipc.RestoreRequest) (ipc.RestoreResult, error) {
	return ipc.RestoreResult{}, fmt.Errorf("restore: %w", ipc.ErrNotFound)
}

// TestErrorsDoNotStutter runs commands that fail, against a daemon that
// refuses them and against none, and checks what bm-agent prints.
func TestErrorsDoNotStutter(t *testing.T) {
	f := &fakeDaemon{status: ipc.Status{State: ipc.StateLoggedOut}, config: map[string]any{"cloud_host": "https://a.example"}}
	refusing := socketPath(t)
	serve(t, refusing, refusingDaemon{f})
	none := socketPath(t)
	commands := [][]string{
		{"sync"}, {"login"}, {"login", "--server", "https://b.example"}, {"pause"}, {"pause", "--for", "1h"},
		{"mount"}, {"unmount"}, {"config", "set", "folder", "/missing"}, {"history"},
		{"versions", "a.md"}, {"restore", "a.md"},
		{"status"}, {"logs"}, {"config", "get"}, {"mount-status"}, {"conflicts"}, {"resume"}, {"logout"},
	}
	for _, sock := range []struct{ name, path string }{{"refused", refusing}, {"no daemon", none}} {
		for _, args := range commands {
			t.Run(sock.name+"/"+strings.Join(args, " "), func(t *testing.T) {
				if sock.path == none && stutters(ipc.ErrNoDaemon.Error()) != "" {
					// ipc/errors.go, outside this change: ReportError's
					// "bm-agent: " comes before it.
					t.Skipf("ipc.ErrNoDaemon %q: its text must not begin with bm-agent", ipc.ErrNoDaemon)
				}
				_, errOut, code := runCLI(context.Background(), t, sock.path, nil, args...)
				if code == ExitOK {
					return // this command did not fail here
				}
				line, _, _ := strings.Cut(errOut, "\n")
				msg, ok := strings.CutPrefix(line, "bm-agent: ")
				if !ok {
					t.Fatalf("stderr %q does not start with \"bm-agent: \"", errOut)
				}
				if why := stutters(msg); why != "" {
					t.Errorf("%q %s", line, why)
				}
			})
		}
	}
}

// snakeCase is a JSON key as every --json output spells it.
var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// TestJSONKeysAreSnakeCase checks the types commands print under --json
// (the CLI's own and those of packaging): every exported field has a
// snake_case json name.
func TestJSONKeysAreSnakeCase(t *testing.T) {
	for _, v := range []any{SetupResult{}, SetupStep{}, PauseResult{}, DoctorOutput{}, ErrorJSON{}, packaging.Result{}, InstallResult{}, UninstallResult{}} {
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			f := typ.Field(i)
			if !f.IsExported() || f.Anonymous { // an embedded struct's fields are checked as its own
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if !snakeCase.MatchString(name) {
				t.Errorf("%s.%s prints as %q under --json, want a snake_case name", typ.Name(), f.Name, name)
			}
		}
	}
	for _, tt := range []struct {
		res  packaging.Result
		want string
	}{
		{packaging.Result{Manager: packaging.ManagerSystemd, Files: []string{"/u/bm-agent.service"}, Commands: []string{"systemctl --user daemon-reload"}, Started: true},
			`{"manager":"systemd","files":["/u/bm-agent.service"],"commands":["systemctl --user daemon-reload"],"started":true,"already_running":false,"daemon_running":true}`},
		{packaging.Result{}, `{"files":[],"commands":[],"started":false,"already_running":false,"daemon_running":false}`},
	} {
		if b, err := json.Marshal(installJSON(InstallResult{Result: tt.res, DaemonRunning: tt.res.Started})); err != nil || string(b) != tt.want {
			t.Errorf("install --json = %s, %v; want %s", b, err, tt.want)
		}
	}
}

// TestJSONHelpPointsToTheReadme: --json's help sends people to the README's
// "JSON output" section, which must exist and list every command.
func TestJSONHelpPointsToTheReadme(t *testing.T) {
	root := &cobra.Command{Use: "bm-agent"}
	AddCommands(root, &Options{})
	Finish(root)
	usage := root.PersistentFlags().Lookup("json").Usage
	if !strings.Contains(usage, "'JSON output' in the README") {
		t.Fatalf("--json's help %q no longer points to the README", usage)
	}
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## JSON output\n")
	if !ok {
		t.Fatal(`README.md has no "## JSON output" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	for _, c := range root.Commands() {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		if !strings.Contains(section, "`"+c.Name()) && !strings.Contains(section, " `"+c.Name()+"`") {
			t.Errorf("README's JSON output section does not say what `%s --json` prints", c.Name())
		}
	}
}

// TestSyncPrintsThePassItRan: sync prints the summary the daemon answered
// for its request, not the status's last pass (another one, that ran
// before or meanwhile).
func TestSyncPrintsThePassItRan(t *testing.T) {
	f := &fakeDaemon{
		status: ipc.Status{State: ipc.StateIdle, LoggedIn: true,
			LastSync: &ipc.PassSummary{Start: t0.Add(-time.Minute), DurationMS: 900, Trigger: "watch", Uploaded: 99}},
		sum: ipc.PassSummary{Start: t0, DurationMS: 1200, Trigger: "manual", Uploaded: 2, Downloaded: 1},
	}
	sock := startDaemon(t, f)
	out, errOut, code := runCLI(context.Background(), t, sock, nil, "sync")
	if code != 0 || out != "Synced in 1.2s: 2 up, 1 down, 0 deleted here, 0 deleted in the bucket, 0 conflicts.\n" {
		t.Errorf("sync: exit %d, %q (stderr %q)", code, out, errOut)
	}
	out, _, code = runCLI(context.Background(), t, sock, &Options{}, "sync", "--json")
	var sum ipc.PassSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil || code != 0 || sum.Trigger != "manual" || sum.Uploaded != 2 {
		t.Errorf("sync --json: exit %d, %+v, %v", code, sum, err)
	}
}
