package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// bmFile is a Basic Memory config.json as Basic Memory writes it: with its
// own cloud's defaults in it.
const bmFile = `{"env": "user", "cloud_host": "https://bm.example", "cloud_domain": "https://auth.bm.example", "cloud_client_id": "bm-client", "projects": {}}`

func TestResolveConfigPrecedence(t *testing.T) {
	type want struct {
		value  string
		source Source
	}
	tests := []struct {
		name      string
		flags     Config
		flagNames map[string]string
		env       map[string]string
		file      string            // bm-agent's config.json
		bm        map[string]string // Basic Memory's config.json by location: "home" (~/.basic-memory), "config_dir", "xdg"
		want      map[string]want
		warn      bool // a warning says a file was skipped
	}{
		{
			name: "nothing set: defaults, the Basic Memory cloud with its CLI's defaults",
			want: map[string]want{
				"cloud_host": {"https://api.basicmemory.cloud", SourceDefault}, "cloud_domain": {"https://eloquent-lotus-05.authkit.app", SourceDefault},
				"cloud_client_id": {"client_01K6KWQPW6J1M8VV7R3TZP5A6M", SourceDefault},
				"interval":        {"1m0s", SourceDefault}, "profile": {"balanced", SourceDefault}, "home": {"", SourceEnv},
			},
		},
		{
			name: "Basic Memory's config.json in ~/.basic-memory",
			bm:   map[string]string{"home": bmFile},
			want: map[string]want{
				"cloud_host": {"https://bm.example", SourceBasicMemory}, "cloud_domain": {"https://auth.bm.example", SourceBasicMemory},
				"cloud_client_id": {"bm-client", SourceBasicMemory},
			},
		},
		{
			name: "BASIC_MEMORY_CONFIG_DIR is the only place read when set",
			env:  map[string]string{"BASIC_MEMORY_CONFIG_DIR": "config_dir"},
			bm:   map[string]string{"config_dir": `{"cloud_host": "https://dir.example"}`, "home": bmFile},
			want: map[string]want{
				"cloud_host": {"https://dir.example", SourceBasicMemory}, "cloud_domain": {"https://dir.example", SourceDefault},
				"cloud_client_id": {tenantapi.DefaultClientID, SourceDefault},
			},
		},
		{
			name: "a self-hosted server in the environment is never paired with the default AuthKit",
			env:  map[string]string{"BASIC_MEMORY_CLOUD_HOST": "http://127.0.0.1:8787"},
			want: map[string]want{
				"cloud_host": {"http://127.0.0.1:8787", SourceEnv}, "cloud_domain": {"http://127.0.0.1:8787", SourceDefault},
				"cloud_client_id": {tenantapi.DefaultClientID, SourceDefault},
			},
		},
		{
			name: "the Basic Memory cloud's host, set by hand, keeps its own issuer",
			file: `{"cloud_host": "https://api.basicmemory.cloud/"}`,
			want: map[string]want{
				"cloud_host": {"https://api.basicmemory.cloud", SourceConfig}, "cloud_domain": {"https://eloquent-lotus-05.authkit.app", SourceDefault},
				"cloud_client_id": {"client_01K6KWQPW6J1M8VV7R3TZP5A6M", SourceDefault},
			},
		},
		{
			name: "$XDG_CONFIG_HOME/basic-memory when ~/.basic-memory has none",
			env:  map[string]string{"XDG_CONFIG_HOME": "xdg"},
			bm:   map[string]string{"xdg": `{"cloud_host": "https://xdg.example"}`},
			want: map[string]want{"cloud_host": {"https://xdg.example", SourceBasicMemory}},
		},
		{
			name: "bm-agent's config beats Basic Memory's, and takes no issuer from it",
			file: `{"cloud_host": "https://agent.example/"}`,
			bm:   map[string]string{"home": bmFile},
			want: map[string]want{
				"cloud_host": {"https://agent.example", SourceConfig}, "cloud_domain": {"https://agent.example", SourceDefault},
				"cloud_client_id": {tenantapi.DefaultClientID, SourceDefault},
			},
		},
		{
			name: "the environment beats bm-agent's config",
			env:  map[string]string{"BASIC_MEMORY_CLOUD_HOST": "https://env.example", "BASIC_MEMORY_CLOUD_CLIENT_ID": "env-client"},
			file: `{"cloud_host": "https://agent.example", "cloud_domain": "https://auth.agent.example", "interval": "5m"}`,
			bm:   map[string]string{"home": bmFile},
			want: map[string]want{
				"cloud_host": {"https://env.example", SourceEnv}, "cloud_domain": {"https://env.example", SourceDefault},
				"cloud_client_id": {"env-client", SourceEnv}, "interval": {"5m0s", SourceConfig},
			},
		},
		{
			name: "bm-agent's config names its own issuer",
			file: `{"cloud_host": "https://agent.example", "cloud_domain": "https://auth.agent.example", "cloud_client_id": "agent-client"}`,
			env:  map[string]string{"BASIC_MEMORY_CLOUD_DOMAIN": "https://auth.env.example"},
			bm:   map[string]string{"home": bmFile},
			want: map[string]want{
				"cloud_host": {"https://agent.example", SourceConfig}, "cloud_domain": {"https://auth.env.example", SourceEnv},
				"cloud_client_id": {"agent-client", SourceConfig},
			},
		},
		{
			name:      "a flag beats everything",
			flags:     Config{CloudHost: "http://127.0.0.1:8787", Folder: "/flag/notes", Interval: Duration(2 * time.Second)},
			flagNames: map[string]string{"cloud_host": "--host", "folder": "--folder", "interval": "--interval"},
			env:       map[string]string{"BASIC_MEMORY_CLOUD_HOST": "https://env.example", "BASIC_MEMORY_CLOUD_DOMAIN": "https://auth.env.example"},
			file:      `{"cloud_host": "https://agent.example", "folder": "/file/notes", "interval": "5m"}`,
			bm:        map[string]string{"home": bmFile},
			want: map[string]want{
				"cloud_host": {"http://127.0.0.1:8787", SourceFlag}, "cloud_domain": {"http://127.0.0.1:8787", SourceDefault},
				"folder": {"/flag/notes", SourceFlag}, "interval": {"2s", SourceFlag},
			},
		},
		{
			name:  "a flag not given is not a layer",
			flags: Config{CloudHost: "https://unused.example", Folder: "/unused"},
			file:  `{"folder": "/file/notes", "profile": "safe", "versions_days": 0}`,
			want: map[string]want{
				"cloud_host": {"https://api.basicmemory.cloud", SourceDefault}, "folder": {"/file/notes", SourceConfig}, "profile": {"safe", SourceConfig},
				"versions_days": {"0", SourceConfig}, "versions_max_mb": {"0", SourceDefault},
			},
		},
		{
			name:      "the home: a flag beats BM_AGENT_HOME",
			flags:     Config{Home: "flaghome"},
			flagNames: map[string]string{"home": "--home"},
			want:      map[string]want{"home": {"flaghome", SourceFlag}},
		},
		{
			name: "a Basic Memory config.json that does not parse is skipped",
			file: `{"cloud_host": "https://agent.example"}`,
			bm:   map[string]string{"home": `{not json`},
			want: map[string]want{"cloud_host": {"https://agent.example", SourceConfig}},
			warn: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			abs := func(p string) string { // the tests' relative paths live in dir
				if p == "" || filepath.IsAbs(p) {
					return p
				}
				return filepath.Join(dir, p)
			}
			env := map[string]string{"HOME": filepath.Join(dir, "userhome"), EnvHome: filepath.Join(dir, "agenthome")}
			for k, v := range tt.env {
				if k == "BASIC_MEMORY_CONFIG_DIR" || k == "XDG_CONFIG_HOME" {
					v = abs(v)
				}
				env[k] = v
			}
			flags := tt.flags
			flags.Home = abs(flags.Home)
			for loc, content := range tt.bm {
				p := map[string]string{
					"home":       filepath.Join(env["HOME"], ".basic-memory", "config.json"),
					"config_dir": filepath.Join(dir, "config_dir", "config.json"),
					"xdg":        filepath.Join(dir, "xdg", "basic-memory", "config.json"),
				}[loc]
				writeFile(t, p, content)
			}
			if tt.file != "" {
				home := env[EnvHome]
				if tt.flagNames["home"] != "" {
					home = flags.Home
				}
				writeFile(t, filepath.Join(home, "config.json"), tt.file)
			}
			cfg, err := ResolveConfig(Inputs{Flags: flags, FlagNames: tt.flagNames, Getenv: func(k string) string { return env[k] }})
			if err != nil {
				t.Fatal(err)
			}
			if (len(cfg.Warnings) > 0) != tt.warn {
				t.Errorf("warnings %q, want some: %v", cfg.Warnings, tt.warn)
			}
			for key, w := range tt.want {
				got, o := settingValue(cfg, key), cfg.Sources[key]
				if key == "home" && w.value == "" {
					w.value = env[EnvHome]
				} else if key == "home" {
					w.value = abs(w.value)
				}
				if got != w.value || o.Source != w.source {
					t.Errorf("%s = %q from %v, want %q from %s", key, got, o, w.value, w.source)
				}
				if o.Source == SourceBasicMemory && !strings.HasSuffix(o.Name, "config.json") {
					t.Errorf("%s: origin %v does not name the file", key, o)
				}
			}
		})
	}
}

// settingValue is cfg's value of key, as text.
func settingValue(cfg Config, key string) string {
	switch key {
	case "home":
		return cfg.Home
	case "folder":
		return cfg.Folder
	case "cloud_host":
		return cfg.CloudHost
	case "cloud_domain":
		return cfg.CloudDomain
	case "cloud_client_id":
		return cfg.ClientID
	case "interval":
		return time.Duration(cfg.Interval).String()
	case "profile":
		return cfg.Profile
	case "versions_days":
		if cfg.VersionsDays == nil {
			return "unset"
		}
		return strconv.Itoa(*cfg.VersionsDays)
	case "versions_max_mb":
		return strconv.Itoa(cfg.VersionsMaxMB)
	}
	panic("settingValue: " + key)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestConfigSetFolderRefusesWhatCannotBeSynced(t *testing.T) {
	home := t.TempDir()
	d := testDaemon(t, home)
	ctx := context.Background()
	folder := t.TempDir()
	note := filepath.Join(folder, "note.md")
	writeFile(t, note, "x")
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct{ value, wantErr string }{
		{missing, missing + " does not exist (create it first: mkdir -p " + missing + ")"},
		{"notes", `"notes" is not an absolute path`},
		{note, note + " is not a folder"},
		{"", "empty"},
		{folder, ""},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			m, err := d.ConfigSet(ctx, "folder", tt.value)
			if tt.wantErr == "" {
				if err != nil || m[ipc.ConfigRestartRequired] != true {
					t.Fatalf("ConfigSet(folder, %s) = %v, %v; want saved, for after a restart", tt.value, m, err)
				}
				return
			}
			want := "config set folder: " + ipc.ErrInvalid.Error() + ": " + tt.wantErr
			if !errors.Is(err, ipc.ErrInvalid) || err.Error() != want {
				t.Fatalf("ConfigSet(folder, %q) = %v, want %q (wrapping ipc.ErrInvalid)", tt.value, err, want)
			}
		})
	}
	if c, err := LoadConfig(home); err != nil || c.Folder != folder {
		t.Errorf("config file folder = %q, %v; want only the accepted %s", c.Folder, err, folder)
	}
}

func TestConfigSourcesAndOverrides(t *testing.T) {
	t.Setenv("BM_AGENT_KEYRING", "file")
	home := t.TempDir()
	env := map[string]string{"HOME": t.TempDir(), "BASIC_MEMORY_CLOUD_HOST": "https://env.example"}
	cfg, err := ResolveConfig(Inputs{
		Flags:     Config{Home: home, Folder: filepath.Join(home, "notes"), Interval: Duration(time.Hour)},
		FlagNames: map[string]string{"home": "--home", "folder": "--folder", "interval": "--interval"},
		Getenv:    func(k string) string { return env[k] },
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m, err := d.ConfigGet(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sources, _ := m[ipc.ConfigSources].(map[string]Origin)
	for key, want := range map[string]Origin{
		"interval":   {SourceFlag, "--interval"},
		"cloud_host": {SourceEnv, "BASIC_MEMORY_CLOUD_HOST"},
		"profile":    {Source: SourceDefault},
		"home":       {SourceFlag, "--home"},
	} {
		if sources[key] != want {
			t.Errorf("source of %s = %v, want %v", key, sources[key], want)
		}
	}

	// a saved value under a flag is kept for later, and said so
	m, err = d.ConfigSet(ctx, "interval", "2h")
	if err != nil {
		t.Fatal(err)
	}
	if m[ipc.ConfigOverriddenBy] != (Origin{SourceFlag, "--interval"}) || d.liveSettings().interval != time.Hour {
		t.Errorf("set under a flag: overridden_by %v, live interval %s; want the flag's, still 1h", m[ipc.ConfigOverriddenBy], d.liveSettings().interval)
	}
	if c, _ := LoadConfig(home); time.Duration(c.Interval) != 2*time.Hour {
		t.Errorf("the file's interval = %s, want 2h saved", time.Duration(c.Interval))
	}

	// a value nothing overrides applies, and comes from the file now
	if m, err = d.ConfigSet(ctx, "profile", "safe"); err != nil {
		t.Fatal(err)
	}
	if _, over := m[ipc.ConfigOverriddenBy]; over || d.liveSettings().profile != "safe" {
		t.Errorf("profile: %v, live %q", m, d.liveSettings().profile)
	}
	sources, _ = m[ipc.ConfigSources].(map[string]Origin)
	if o := sources["profile"]; o.Source != SourceConfig || o.Name != filepath.Join(home, "config.json") {
		t.Errorf("profile's source after config set = %v", o)
	}
}

// TestConfigSetEmptyCloudHostIsTheDefault: a saved server is removed with
// `config set cloud_host ""`, and the Basic Memory cloud applies again,
// said to be the default; its issuer comes back with it.
func TestConfigSetEmptyCloudHostIsTheDefault(t *testing.T) {
	home := t.TempDir()
	in := Inputs{Flags: Config{Home: home}, FlagNames: map[string]string{"home": "--home"}, Getenv: func(string) string { return "" }}
	for _, tt := range []struct{ value, host, domain string }{
		{"http://127.0.0.1:8787", "http://127.0.0.1:8787", "http://127.0.0.1:8787"},
		{"", "https://api.basicmemory.cloud", "https://eloquent-lotus-05.authkit.app"},
	} {
		if err := SaveSetting(home, "cloud_host", tt.value); err != nil {
			t.Fatal(err)
		}
		cfg, err := ResolveConfig(in)
		if err != nil {
			t.Fatal(err)
		}
		wantSource := SourceConfig
		if tt.value == "" {
			wantSource = SourceDefault
		}
		if cfg.CloudHost != tt.host || cfg.CloudDomain != tt.domain || cfg.Sources["cloud_host"].Source != wantSource {
			t.Errorf("after config set cloud_host %q: host %s, domain %s, from %v; want %s, %s, from %s",
				tt.value, cfg.CloudHost, cfg.CloudDomain, cfg.Sources["cloud_host"], tt.host, tt.domain, wantSource)
		}
	}
}
