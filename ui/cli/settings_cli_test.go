package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// configDaemon is a fake daemon whose settings answer like the real one's:
// with sources, a folder that must exist, a key a flag overrides.
type configDaemon struct {
	*fakeDaemon
	mu   sync.Mutex
	sets []string // "key=value", in order
	// refuse, if set, is the error of every ConfigSet.
	refuse error
	// overridden keys are set by a flag or a variable of the daemon.
	overridden map[string]map[string]any
}

func (c *configDaemon) ConfigGet(context.Context) (map[string]any, error) {
	m := map[string]any{}
	for k, v := range c.config {
		m[k] = v
	}
	m["sources"] = map[string]any{
		"cloud_host": map[string]any{"source": "env", "name": "BASIC_MEMORY_CLOUD_HOST"},
		"folder":     map[string]any{"source": "config", "name": "/h/config.json"},
		"interval":   map[string]any{"source": "flag", "name": "--interval"},
		"profile":    map[string]any{"source": "default"},
	}
	return m, nil
}

func (c *configDaemon) ConfigSet(ctx context.Context, key, value string) (map[string]any, error) {
	c.mu.Lock()
	c.sets = append(c.sets, key+"="+value)
	c.mu.Unlock()
	if c.refuse != nil {
		return nil, c.refuse
	}
	m, _ := c.ConfigGet(ctx)
	m[key] = value
	if o, ok := c.overridden[key]; ok {
		m["overridden_by"] = o
	}
	if key == "cloud_host" || key == "folder" {
		m[ipc.ConfigRestartRequired] = true
	}
	return m, nil
}

func (c *configDaemon) setCalls() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.sets, ",")
}

func TestConfigGetSaysWhereEachValueComesFrom(t *testing.T) {
	d := &configDaemon{fakeDaemon: &fakeDaemon{config: map[string]any{
		"cloud_host": "https://env.example", "folder": "/home/me/notes", "interval": "10s", "profile": "balanced", "home": "/h",
	}}}
	sock := socketPath(t)
	serve(t, sock, d)
	out, errOut, code := runCLI(context.Background(), t, sock, nil, "config", "get")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	checkGolden(t, "config_get_sources.golden", []byte(out))
	out, _, _ = runCLI(context.Background(), t, sock, &Options{}, "config", "get", "cloud_host", "--json")
	want := "{\n  \"cloud_host\": \"https://env.example\",\n  \"sources\": {\n    \"cloud_host\": {\n      \"source\": \"env\",\n      \"name\": \"BASIC_MEMORY_CLOUD_HOST\"\n    }\n  }\n}\n"
	if out != want {
		t.Errorf("config get cloud_host --json:\n%s\nwant:\n%s", out, want)
	}
	if _, errOut, code := runCLI(context.Background(), t, sock, nil, "config", "get", "sources"); code != ExitUsage {
		t.Errorf("config get sources: exit %d (%s), want %d: it is not a setting", code, errOut, ExitUsage)
	}
}

func TestConfigSet(t *testing.T) {
	missing := fmt.Errorf("config set folder: %w: /missing does not exist (create it first: mkdir -p /missing)", ipc.ErrInvalid)
	rel, err := filepath.Abs("notes")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		refuse     error
		overridden map[string]map[string]any
		code       int
		wantSet    string
		wantOut    string
		wantErr    string
	}{
		{name: "a missing folder is refused", args: []string{"folder", "/missing"}, refuse: missing, code: ExitError, wantSet: "folder=/missing",
			wantErr: "bm-agent: config set folder: invalid request: /missing does not exist (create it first: mkdir -p /missing)\n"},
		{name: "a relative folder is made absolute here", args: []string{"folder", "notes"}, wantSet: "folder=" + rel,
			wantOut: "folder = " + rel + "\nThis change applies after the daemon restarts"},
		{name: "a value under a flag is saved for later, and said so", args: []string{"interval", "5m"},
			overridden: map[string]map[string]any{"interval": {"source": "flag", "name": "--interval"}}, wantSet: "interval=5m",
			wantOut: "interval = 5m\nSaved in bm-agent's config, but the daemon takes interval from flag --interval of `bm-agent run`, which comes first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &configDaemon{fakeDaemon: &fakeDaemon{config: map[string]any{"folder": "/n"}}, refuse: tt.refuse, overridden: tt.overridden}
			sock := socketPath(t)
			serve(t, sock, d)
			out, errOut, code := runCLI(context.Background(), t, sock, nil, append([]string{"config", "set"}, tt.args...)...)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, errOut)
			}
			if got := d.setCalls(); got != tt.wantSet {
				t.Errorf("ConfigSet calls %q, want %q", got, tt.wantSet)
			}
			if !strings.Contains(out, tt.wantOut) || errOut != tt.wantErr {
				t.Errorf("stdout %q (want it to contain %q), stderr %q (want %q)", out, tt.wantOut, errOut, tt.wantErr)
			}
		})
	}
}

func TestServerFlag(t *testing.T) {
	loggedIn := ipc.Status{State: ipc.StateIdle, LoggedIn: true, Account: "me@example.com", Bucket: "b", Folder: "/n", Version: "v1"}
	type saved struct{ home, key, value string }
	tests := []struct {
		name       string
		daemon     bool
		running    string // the daemon's cloud_host
		overridden bool
		env        string // BASIC_MEMORY_CLOUD_HOST where the CLI runs
		args       []string
		code       int
		wantSet    string  // ConfigSet calls through the daemon
		wantSaved  []saved // settings saved without a daemon
		wantOut    string
		wantErr    string
		wantLogin  bool
	}{
		{name: "login: the server the daemon uses already", daemon: true, running: "https://bm.example",
			args:    []string{"login", "--server", "https://bm.example/", "--device", "--no-browser"},
			wantSet: "cloud_host=https://bm.example", wantOut: "Server: https://bm.example (saved in bm-agent's config).", wantLogin: true},
		{name: "login: a new server is saved, and the daemon must restart", daemon: true, running: "https://old.example",
			args: []string{"login", "--server", "https://bm.example"}, code: ExitError, wantSet: "cloud_host=https://bm.example",
			wantErr: "bm-agent: login: --server https://bm.example: saved in bm-agent's config; the running daemon uses it after a restart: restart it"},
		{name: "login: a variable of the daemon wins, and it says which", daemon: true, running: "https://env.example", overridden: true,
			args: []string{"login", "--server", "https://bm.example"}, code: ExitError, wantSet: "cloud_host=https://bm.example",
			wantErr: "takes cloud_host from env BASIC_MEMORY_CLOUD_HOST, which comes first"},
		{name: "login: no daemon: saved in the config file", args: []string{"login", "--server", "https://bm.example"}, code: ExitNoDaemon,
			wantSaved: []saved{{"", "cloud_host", "https://bm.example"}}},
		{name: "setup: no daemon: saved before the service is installed", args: []string{"setup", "--server", "https://bm.example", "--home", "/h", "--device", "--no-browser"},
			wantSaved: []saved{{"/h", "cloud_host", "https://bm.example"}}, wantOut: "[done] server: https://bm.example, saved in bm-agent's config"},
		{name: "setup: a server variable here would win in the service", env: "https://env.example",
			args: []string{"setup", "--server", "https://bm.example"}, code: ExitUsage,
			wantErr: "BASIC_MEMORY_CLOUD_HOST=https://env.example is set here"},
		{name: "setup: the server the daemon uses already", daemon: true, running: "https://bm.example",
			args: []string{"setup", "--server", "https://bm.example"}, wantSet: "cloud_host=https://bm.example", wantOut: "[ok  ] server: https://bm.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("BASIC_MEMORY_CLOUD_HOST", tt.env)
			after := loggedIn
			f := &fakeDaemon{status: ipc.Status{State: ipc.StateLoggedOut, Folder: "/n", Version: "v1"}, afterLogin: &after,
				config: map[string]any{"cloud_host": tt.running}}
			if strings.HasPrefix(tt.args[0], "setup") && tt.daemon {
				f.status = syncedStatus()
			}
			d := &configDaemon{fakeDaemon: f}
			if tt.overridden {
				d.overridden = map[string]map[string]any{"cloud_host": {"source": "env", "name": "BASIC_MEMORY_CLOUD_HOST"}}
			}
			sock := socketPath(t)
			inst := &fakeInstaller{installed: true}
			if tt.daemon {
				serve(t, sock, d)
			} else {
				inst = &fakeInstaller{onInstall: func() { serve(t, sock, d) }}
				f.status = syncedStatus()
			}
			var got []saved
			opts := &Options{Installer: inst, SaveSetting: func(home, key, value string) error {
				got = append(got, saved{home, key, value})
				return nil
			}}
			out, errOut, code := runCLI(context.Background(), t, sock, opts, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stdout %q, stderr %q)", code, tt.code, out, errOut)
			}
			if s := d.setCalls(); s != tt.wantSet {
				t.Errorf("ConfigSet calls %q, want %q", s, tt.wantSet)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.wantSaved) {
				t.Errorf("saved without a daemon %v, want %v", got, tt.wantSaved)
			}
			if !strings.Contains(out, tt.wantOut) || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stdout %q (want %q), stderr %q (want %q)", out, tt.wantOut, errOut, tt.wantErr)
			}
			if logins := strings.Contains(strings.Join(f.calls, ","), "login"); logins != tt.wantLogin && tt.args[0] == "login" {
				t.Errorf("login started: %v, want %v (calls %v)", logins, tt.wantLogin, f.calls)
			}
		})
	}
}
